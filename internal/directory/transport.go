package directory

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"
)

// Bounds of the shared transports. A daemon runs its jobs for years: a
// transport per run kept each run's connections (and their goroutines and
// buffers) open until IdleConnTimeout, and paid a TLS handshake per run.
const (
	// transportIdleTimeout closes a connection idle this long: the runs of
	// one night reuse the connections, the day between nights holds none.
	transportIdleTimeout = 90 * time.Second
	// maxIdlePerHost bounds the idle HTTP/1.1 connections kept per host
	// (Graph and the authority speak HTTP/2, where one connection carries
	// every run's requests); net/http's default of 2 would close and
	// reopen connections under a proxy that speaks only HTTP/1.1.
	maxIdlePerHost = 32
	maxIdleTotal   = 64
	// transportUnused drops a trust configuration no job has used for this
	// long (a ca_file removed from the configuration, or replaced).
	transportUnused = 30 * time.Minute
	// requestTimeout bounds one request, token requests included.
	requestTimeout = 100 * time.Second
)

// Transports are a process's HTTP transports to Graph and the token
// authority, one per trust configuration: the system roots, or the system
// roots plus a job's ca_file. Every job's Graph client and credential use
// them, so a run reuses the connections of the runs before it, and nothing
// of a run (connection, goroutine, TLS state) outlives it but what the
// next run will use. Only the transport is shared: each client has its own
// credential and token cache.
//
// The zero value is not usable; NewTransports makes one. Options.Transports
// nil means the process's (ProcessTransports).
type Transports struct {
	mu     sync.Mutex
	byFile map[string]*sharedTransport // by ca_file path, "" for the system roots
	now    func() time.Time
}

// sharedTransport is one trust configuration's client.
type sharedTransport struct {
	caSum    [sha256.Size]byte // of the ca_file's contents when it was built
	client   *http.Client
	lastUsed time.Time
}

// NewTransports returns an empty set of transports.
func NewTransports() *Transports {
	return &Transports{byFile: map[string]*sharedTransport{}, now: time.Now}
}

var processTransports = NewTransports()

// ProcessTransports are the transports of every client built with
// Options.Transports nil.
func ProcessTransports() *Transports { return processTransports }

// CloseIdleConnections closes the idle connections of every transport;
// requests in flight are not affected. The next request opens a new one.
func (t *Transports) CloseIdleConnections() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.byFile {
		s.client.CloseIdleConnections()
	}
}

// client returns the shared client trusting caFile ("" for the system roots
// alone). The file is read on every call, so a CA bundle replaced on disk
// (and a reload) takes effect at the next run; the replaced transport's idle
// connections are closed, its requests in flight finish.
func (t *Transports) client(caFile string) (*http.Client, error) {
	var pem []byte
	var sum [sha256.Size]byte
	if caFile != "" {
		var err error
		if pem, err = os.ReadFile(caFile); err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		sum = sha256.Sum256(pem)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	t.dropUnused(now)
	old, ok := t.byFile[caFile]
	if ok && bytes.Equal(old.caSum[:], sum[:]) {
		old.lastUsed = now
		return old.client, nil
	}
	// Only here: SystemCertPool returns a copy of the system roots (tens
	// of kilobytes), which a pool per run would allocate again each time.
	var pool *x509.CertPool
	if caFile != "" {
		var err error
		if pool, err = caPool(caFile, pem); err != nil {
			return nil, err
		}
	}
	if ok {
		old.client.CloseIdleConnections()
	}
	c := &http.Client{Timeout: requestTimeout, Transport: newTransport(pool)}
	t.byFile[caFile] = &sharedTransport{caSum: sum, client: c, lastUsed: now}
	return c, nil
}

// dropUnused forgets the configurations unused for transportUnused; their
// connections have idled out by then, closing them is belt and braces.
func (t *Transports) dropUnused(now time.Time) {
	for f, s := range t.byFile {
		if now.Sub(s.lastUsed) > transportUnused {
			s.client.CloseIdleConnections()
			delete(t.byFile, f)
		}
	}
}

// newTransport is net/http's default transport (proxy from the
// environment, HTTP/2, dial and handshake timeouts) with bounded idle
// connections, trusting pool in place of the system roots when set.
func newTransport(pool *x509.CertPool) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = maxIdleTotal
	tr.MaxIdleConnsPerHost = maxIdlePerHost
	tr.IdleConnTimeout = transportIdleTimeout
	if pool != nil {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	}
	return tr
}

// caPool is the system roots plus the certificates of a ca_file.
func caPool(caFile string, pem []byte) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %s: no PEM certificate found", caFile)
	}
	return pool, nil
}

// transportClient returns the HTTP client of a job's requests. With base
// nil (the worker), the shared client of ts trusting caFile; with base set
// (tests, a caller's own transport), base itself, or a copy of its
// transport trusting caFile too, made per call and owned by the caller.
func transportClient(ts *Transports, caFile string, base *http.Client) (*http.Client, error) {
	if base == nil {
		return ts.client(caFile)
	}
	if caFile == "" {
		return base, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	pool, err := caPool(caFile, pem)
	if err != nil {
		return nil, err
	}
	var tr *http.Transport
	t, ok := base.Transport.(*http.Transport)
	if !ok && base.Transport != nil {
		return nil, errors.New("ca_file: the given HTTP client's transport is not an *http.Transport")
	}
	if t != nil {
		tr = t.Clone()
	} else {
		tr = http.DefaultTransport.(*http.Transport).Clone()
	}
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tr.TLSClientConfig.RootCAs = pool
	return &http.Client{Timeout: base.Timeout, Transport: tr}, nil
}
