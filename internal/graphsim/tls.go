package graphsim

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Server is a TLS listener serving a handler (usually a *Sim) with its own
// in-memory CA.
type Server struct {
	URL           string // https://127.0.0.1:PORT
	AuthorityHost string // https://127.0.0.1:PORT/ (azidentity Cloud.ActiveDirectoryAuthorityHost)
	GraphURL      string // https://127.0.0.1:PORT/v1.0
	CAPEM         []byte
	CAFile        string // CA certificate written to a temp file (removed by Close)

	pool    *x509.CertPool
	handler http.Handler
	tlsCfg  *tls.Config
	addr    string // bound address, kept across outages
	ownFile bool

	// accepted and open count the TCP connections of every http.Server
	// the Server has run (see Conns).
	accepted, open atomic.Int64

	mu      sync.Mutex
	srv     *http.Server  // the current one: an outage ends it, the return makes a new one
	done    chan struct{} // closed when srv stops serving
	closed  bool
	down    bool
	upTimer *time.Timer
}

// StartTLS serves h over TLS on addr ("127.0.0.1:0" for a free port). The
// server certificate names 127.0.0.1, ::1, localhost, and also
// login.microsoftonline.com and graph.microsoft.com so a client can keep
// the public URLs and send them here with a custom dialer.
func StartTLS(h http.Handler, addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	caPEM, cert, err := newServerCert(ln.Addr().(*net.TCPAddr).IP)
	if err != nil {
		ln.Close()
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	f, err := os.CreateTemp("", "graphsim-ca-*.pem")
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("write CA file: %w", err)
	}
	_, _ = f.Write(caPEM)
	f.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	host := ln.Addr().(*net.TCPAddr).IP.String()
	if ip := ln.Addr().(*net.TCPAddr).IP; ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	hp := net.JoinHostPort(host, strconv.Itoa(port))
	s := &Server{
		URL: "https://" + hp, AuthorityHost: "https://" + hp + "/", GraphURL: "https://" + hp + "/v1.0",
		CAPEM: caPEM, CAFile: f.Name(), pool: pool, ownFile: true, handler: h, addr: ln.Addr().String(),
		tlsCfg: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	}
	s.serve(ln)
	if sim, ok := h.(*Sim); ok {
		sim.srv.Store(s)
	}
	return s, nil
}

// serve starts a fresh http.Server on ln (one cannot be restarted after
// Close). Called with s.mu held, or before s is shared.
func (s *Server) serve(ln net.Listener) {
	srv := &http.Server{
		Handler:           s.handler,
		TLSConfig:         s.tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		// Aborted handlers (dropped-connection faults) are expected noise.
		ErrorLog:  log.New(discard{}, "", 0),
		ConnState: s.countConn,
	}
	done := make(chan struct{})
	s.srv, s.done = srv, done
	go func() {
		defer close(done)
		_ = srv.ServeTLS(ln, "", "")
	}()
}

// ConnStats counts the TCP connections clients opened to a Server. Each one
// costs the client a TLS handshake, so a client reusing its connections
// keeps Accepted near the number of requests it had in flight at once.
type ConnStats struct {
	Accepted int64 // connections accepted since StartTLS
	Open     int64 // connections not closed yet (idle ones included)
}

// Conns returns the connection counts, across outages.
func (s *Server) Conns() ConnStats {
	return ConnStats{Accepted: s.accepted.Load(), Open: s.open.Load()}
}

// countConn is the http.Server's ConnState hook. net/http reports
// StateClosed for HTTP/2 connections too, once their handler returns.
func (s *Server) countConn(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		s.accepted.Add(1)
		s.open.Add(1)
	case http.StateClosed, http.StateHijacked:
		s.open.Add(-1)
	}
}

// ErrAlreadyDown is Outage's answer while an outage is in progress.
var ErrAlreadyDown = errors.New("graphsim: already in an outage")

// Outage makes the server unreachable for d: the listener and every open
// connection are closed at once (clients see connection refused or reset,
// token endpoint included), then it listens again on the same address by
// itself, serving the same handler and state with the same certificate.
// Requests being handled when it goes down may still take effect; their
// answers are lost, as in a real outage. It returns when the server is down.
func (s *Server) Outage(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("graphsim: outage of %s: want a positive duration", d)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	if s.down {
		s.mu.Unlock()
		return ErrAlreadyDown
	}
	s.down = true
	srv, done := s.srv, s.done
	s.mu.Unlock()
	_ = srv.Close()
	<-done
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		// The timer starts once the old listener is closed, so the new
		// one can bind the same port.
		s.upTimer = time.AfterFunc(d, s.comeBack)
	}
	return nil
}

// comeBack listens again on the server's address, retrying while the port
// is not free yet, until it succeeds or the server is closed.
func (s *Server) comeBack() {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return
		}
		ln, err := net.Listen("tcp", s.addr)
		if err == nil {
			s.serve(ln)
			s.down = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
}

// Down says whether the server is in an outage.
func (s *Server) Down() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Client returns an HTTP client that trusts the server's CA.
func (s *Server) Client() *http.Client {
	return &http.Client{Transport: s.Transport(), Timeout: 60 * time.Second}
}

// Transport returns an HTTP transport that trusts the server's CA.
func (s *Server) Transport() *http.Transport {
	return &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: s.pool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     90 * time.Second,
	}
}

// CertPool holds the server's CA.
func (s *Server) CertPool() *x509.CertPool { return s.pool }

// Addr is the listening address (host:port), the same across outages.
func (s *Server) Addr() string { return s.addr }

// stop marks the server closed (an outage in progress then never ends)
// and returns the current http.Server.
func (s *Server) stop() (*http.Server, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.upTimer != nil {
		s.upTimer.Stop()
	}
	if sim, ok := s.handler.(*Sim); ok {
		sim.srv.CompareAndSwap(s, nil)
	}
	return s.srv, s.done
}

// Close stops the server at once and removes the CA file.
func (s *Server) Close() {
	srv, done := s.stop()
	_ = srv.Close()
	<-done
	if s.ownFile {
		_ = os.Remove(s.CAFile)
	}
}

// Shutdown stops accepting and waits for in-flight requests.
func (s *Server) Shutdown(ctx context.Context) error {
	srv, done := s.stop()
	err := srv.Shutdown(ctx)
	<-done
	if s.ownFile {
		_ = os.Remove(s.CAFile)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// NewTestServer starts a Sim over TLS on 127.0.0.1:0 with the default seed
// and stops it when the test ends.
func NewTestServer(tb testing.TB, opts Options) (*Sim, *Server, Seeded) {
	tb.Helper()
	sim := New(opts)
	seeded := sim.SeedDefault()
	return sim, StartTestTLS(tb, sim), seeded
}

// TB is the part of testing.TB StartTestTLS uses (a runnable Example's
// stand-in, internal/synctest.ForExample, has it too).
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// StartTestTLS serves h (a Sim, or a proxy in front of one) over TLS on
// 127.0.0.1:0 and stops it when the test ends.
func StartTestTLS(tb TB, h http.Handler) *Server {
	tb.Helper()
	srv, err := StartTLS(h, "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("graphsim: %v", err)
	}
	tb.Cleanup(srv.Close)
	return srv
}

func newServerCert(listenIP net.IP) (caPEM []byte, cert tls.Certificate, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, cert, fmt.Errorf("CA key: %w", err)
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "graphsim test CA", Organization: []string{"entraprov graphsim"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(30 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, cert, fmt.Errorf("CA certificate: %w", err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, cert, fmt.Errorf("server key: %w", err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano() + 1),
		Subject:      pkix.Name{CommonName: "graphsim"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback},
		DNSNames:     []string{"localhost", "login.microsoftonline.com", "graph.microsoft.com"},
	}
	if !listenIP.IsLoopback() && !listenIP.IsUnspecified() {
		leaf.IPAddresses = append(leaf.IPAddresses, listenIP)
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, cert, fmt.Errorf("server certificate: %w", err)
	}
	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	cert = tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: key}
	return caPEM, cert, nil
}
