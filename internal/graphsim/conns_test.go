package graphsim_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/graphsim"
)

// TestConnsCounts: Conns counts the connections a client opens (one for
// requests in sequence on a kept-alive connection, one more per client)
// and sees them closed, across an outage too.
func TestConnsCounts(t *testing.T) {
	_, srv, _ := graphsim.NewTestServer(t, graphsim.Options{})
	get := func(c *http.Client) {
		t.Helper()
		resp, err := c.Get(srv.URL + "/common/discovery/instance")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	waitConns := func(want graphsim.ConnStats) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for srv.Conns() != want && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := srv.Conns(); got != want {
			t.Errorf("Conns() = %+v; want %+v", got, want)
		}
	}
	a, b := srv.Client(), srv.Client()
	for range 3 {
		get(a)
	}
	waitConns(graphsim.ConnStats{Accepted: 1, Open: 1})
	get(b)
	waitConns(graphsim.ConnStats{Accepted: 2, Open: 2})
	a.CloseIdleConnections()
	waitConns(graphsim.ConnStats{Accepted: 2, Open: 1})
	if err := srv.Outage(50 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitConns(graphsim.ConnStats{Accepted: 2, Open: 0})
	for deadline := time.Now().Add(10 * time.Second); srv.Down() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	get(a)
	waitConns(graphsim.ConnStats{Accepted: 3, Open: 1})
}
