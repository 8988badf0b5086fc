package directory

import (
	"net/http"
	"testing"
	"time"
)

// TestTransportsLifecycle: a trust configuration is built once and reused,
// bounded in idle connections, and forgotten once no client has asked for
// it for transportUnused (a ca_file dropped from the configuration).
func TestTransportsLifecycle(t *testing.T) {
	now := time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC)
	ts := NewTransports()
	ts.now = func() time.Time { return now }
	get := func() *http.Client {
		t.Helper()
		c, err := ts.client("")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	first := get()
	tr := first.Transport.(*http.Transport)
	if tr.MaxIdleConnsPerHost != maxIdlePerHost || tr.MaxIdleConns != maxIdleTotal || tr.IdleConnTimeout != transportIdleTimeout {
		t.Errorf("idle bounds %d/%d/%s; want %d/%d/%s", tr.MaxIdleConnsPerHost, tr.MaxIdleConns, tr.IdleConnTimeout,
			maxIdlePerHost, maxIdleTotal, transportIdleTimeout)
	}
	if tr.TLSClientConfig != nil && (tr.TLSClientConfig.InsecureSkipVerify || tr.TLSClientConfig.RootCAs != nil) {
		t.Errorf("system roots expected, got TLS config %+v", tr.TLSClientConfig)
	}
	now = now.Add(transportUnused)
	if get() != first {
		t.Error("a transport used within transportUnused was rebuilt")
	}
	now = now.Add(transportUnused + time.Second)
	if get() == first {
		t.Error("a transport unused for longer than transportUnused was kept")
	}
	if n := len(ts.byFile); n != 1 {
		t.Errorf("%d transports kept; want 1", n)
	}
}
