package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one health probe (scheduler alive, database reachable). It must
// honour ctx: /healthz gives every check the same short deadline.
type Check func(ctx context.Context) error

// Server serves /metrics and /healthz on one listener.
type Server struct {
	srv    *http.Server
	ln     net.Listener
	log    *slog.Logger
	checks map[string]Check
	// checkTimeout bounds each /healthz check.
	checkTimeout time.Duration

	wg sync.WaitGroup
}

// Listen binds addr (host:port; port 0 picks a free one) and prepares the
// handlers. Call Serve to start answering. The address is meant to be a
// loopback one: metrics reveal job names and volumes, and /healthz is for
// the local supervisor.
func Listen(addr string, m *Metrics, checks map[string]Check, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	s := &Server{ln: ln, log: log, checks: checks, checkTimeout: 3 * time.Second}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry(), promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError),
		Registry: m.Registry(),
	}))
	mux.HandleFunc("GET /healthz", s.healthz)
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve answers requests in the background until Shutdown.
func (s *Server) Serve() {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics server stopped", "addr", s.Addr(), "err", err)
		}
	}()
}

// Shutdown stops the server, waiting for in-flight scrapes until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	s.wg.Wait()
	if err != nil {
		return fmt.Errorf("metrics: shutdown: %w", err)
	}
	return nil
}

// Health is the /healthz answer.
type Health struct {
	Status string            `json:"status"` // ok | failing
	Checks map[string]string `json:"checks"` // name -> "ok" or the error
}

// RunChecks runs every check concurrently with the server's deadline.
func (s *Server) RunChecks(ctx context.Context) Health {
	ctx, cancel := context.WithTimeout(ctx, s.checkTimeout)
	defer cancel()
	names := make([]string, 0, len(s.checks))
	for name := range s.checks {
		names = append(names, name)
	}
	sort.Strings(names)
	results := make([]string, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.checks[name](ctx); err != nil {
				results[i] = err.Error()
				return
			}
			results[i] = "ok"
		}()
	}
	wg.Wait()
	h := Health{Status: "ok", Checks: make(map[string]string, len(names))}
	for i, name := range names {
		h.Checks[name] = results[i]
		if results[i] != "ok" {
			h.Status = "failing"
		}
	}
	return h
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	h := s.RunChecks(r.Context())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if h.Status != "ok" {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(h)
}
