package graphsim_test

import (
	"testing"

	"github.com/entraprov/entraprov/internal/graphsim"
)

// GraphRequests counts what went to Graph, a $batch as one request, and
// leaves out the token endpoint (sign-in is not Graph traffic).
func TestCountersGraphRequests(t *testing.T) {
	c := graphsim.Counters{Requests: map[string]int64{
		"POST /v1.0/$batch 200":                     3,
		"GET /v1.0/users 200":                       2,
		"GET /v1.0/users/delta 429":                 1,
		"POST /{tenant}/oauth2/v2.0/token 200":      4,
		"GET /{tenant}/v2.0/.well-known/openid 200": 1,
	}, Steps: map[string]int64{"POST /users 201": 20}}
	if got := c.GraphRequests(); got != 6 {
		t.Fatalf("GraphRequests = %d, want 6 (batch 3 + users 2 + delta 1; no token calls, no steps)", got)
	}
}
