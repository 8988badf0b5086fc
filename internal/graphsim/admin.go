package graphsim

import (
	"encoding/json"
	"io"
	"net/http"
	"sort"
)

// TenantInfo summarises a tenant for the admin state endpoint.
type TenantInfo struct {
	ID           string   `json:"id"`
	Domains      []string `json:"domains"`
	Users        int      `json:"users"`
	DeletedUsers int      `json:"deleted_users"`
	Groups       []string `json:"groups"`
	Apps         []string `json:"consented_apps"`
}

// Tenants summarises every tenant.
func (s *Sim) Tenants() []TenantInfo {
	s.mu.RLock()
	ts := make([]*tenant, 0, len(s.tenants))
	for _, t := range s.tenants {
		ts = append(ts, t)
	}
	s.mu.RUnlock()
	sort.Slice(ts, func(i, j int) bool { return ts[i].id < ts[j].id })
	out := make([]TenantInfo, 0, len(ts))
	for _, t := range ts {
		t.mu.RLock()
		ti := TenantInfo{ID: t.id, Domains: append([]string(nil), t.domains...), Users: t.active, Groups: t.groupIDs()}
		for _, u := range t.users {
			if u.deleted {
				ti.DeletedUsers++
			}
		}
		for cid := range t.sps {
			ti.Apps = append(ti.Apps, cid)
		}
		sort.Strings(ti.Apps)
		t.mu.RUnlock()
		out = append(out, ti)
	}
	return out
}

// serveAdmin answers /_sim/: state, users, counters, reset, faults. These
// paths are never under /v1.0 and need no token: the emulator listens on
// loopback only unless told otherwise.
func (s *Sim) serveAdmin(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/_sim/state":
		writeJSON(w, 200, map[string]any{"tenants": s.Tenants(), "faults": s.CurrentFaults()})
	case "/_sim/users":
		writeJSON(w, 200, s.Users(r.URL.Query().Get("tenant")))
	case "/_sim/counters":
		writeJSON(w, 200, s.Counters())
	case "/_sim/reset":
		if r.Method != http.MethodPost {
			writeJSON(w, 405, map[string]string{"error": "POST only"})
			return
		}
		s.ResetCounters()
		s.ResetThrottling()
		writeJSON(w, 200, map[string]string{"status": "reset"})
	case "/_sim/faults":
		if r.Method == http.MethodGet {
			writeJSON(w, 200, s.CurrentFaults())
			return
		}
		var f Faults
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		if err := json.Unmarshal(b, &f); err != nil {
			writeJSON(w, 400, map[string]string{"error": "body must be {\"rate_5xx\":0.01,\"drop_rate\":0,\"commit_before_fault\":0.5}: " + err.Error()})
			return
		}
		s.SetFaults(f)
		writeJSON(w, 200, f)
	case "/_sim/expire-delta":
		s.ExpireDeltaTokens(r.URL.Query().Get("tenant"))
		writeJSON(w, 200, map[string]string{"status": "expired"})
	default:
		writeJSON(w, 404, map[string]string{"error": "unknown admin endpoint; try /_sim/state, /_sim/users?tenant=ID, /_sim/counters, POST /_sim/reset, GET|POST /_sim/faults, POST /_sim/expire-delta?tenant=ID"})
	}
}
