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
	srv     *http.Server
	ln      net.Listener
	ownFile bool
	done    chan struct{}
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
		CAPEM: caPEM, CAFile: f.Name(), pool: pool, ln: ln, ownFile: true, done: make(chan struct{}),
	}
	s.srv = &http.Server{
		Handler:           h,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		// Aborted handlers (dropped-connection faults) are expected noise.
		ErrorLog: log.New(discard{}, "", 0),
	}
	go func() {
		defer close(s.done)
		_ = s.srv.ServeTLS(ln, "", "")
	}()
	return s, nil
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

// Addr is the listening address (host:port).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server at once and removes the CA file.
func (s *Server) Close() {
	_ = s.srv.Close()
	<-s.done
	if s.ownFile {
		_ = os.Remove(s.CAFile)
	}
}

// Shutdown stops accepting and waits for in-flight requests.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	<-s.done
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
	srv, err := StartTLS(sim, "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("graphsim: %v", err)
	}
	tb.Cleanup(srv.Close)
	return sim, srv, seeded
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
