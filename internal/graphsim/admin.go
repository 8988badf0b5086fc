package graphsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"
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

// Quota is the state of the throttle-quota knob (GET /_sim/quota).
type Quota struct {
	// Factor multiplies every throttle budget (capacity and refill rate);
	// 1 is the documented quota.
	Factor float64 `json:"factor"`
	// Left is how long the factor still holds (0 at factor 1).
	Left time.Duration `json:"-"`
	// Throttling says whether throttling is on at all (without it the
	// factor changes nothing).
	Throttling bool `json:"throttling"`
}

// MarshalJSON writes Left as a Go duration string and in seconds.
func (q Quota) MarshalJSON() ([]byte, error) {
	type plain Quota
	return json.Marshal(struct {
		plain
		Left        string  `json:"left"`
		LeftSeconds float64 `json:"left_seconds"`
	}{plain(q), q.Left.Round(time.Millisecond).String(), q.Left.Seconds()})
}

// SetQuota multiplies every throttle budget — writes, resource units and
// requests, capacity and refill rate — by factor for d (real time, not
// scaled by TimeScale), after which the budgets return to normal by
// themselves. A cut takes effect at once (tokens above the new capacity
// are lost); when it ends, the buckets refill from where they are.
// factor 1 or d = 0 ends a cut now.
func (s *Sim) SetQuota(factor float64, d time.Duration) error {
	if !(factor > 0) || factor > 1000 {
		return fmt.Errorf("quota factor %g: want a number above 0 (0.1 = a tenth of the quota) and at most 1000", factor)
	}
	if d < 0 {
		return fmt.Errorf("quota duration %s: want a positive duration", d)
	}
	s.thr.setQuota(factor, d, s.now())
	if factor == 1 || d == 0 {
		s.log.Info("quota back to normal")
	} else {
		s.log.Info("quota changed", "factor", factor, "for", d)
	}
	return nil
}

// Quota returns the quota factor in force and how long it still holds.
func (s *Sim) Quota() Quota {
	f, left := s.thr.quota(s.now())
	return Quota{Factor: f, Left: left, Throttling: s.opts.Throttling}
}

// SecretRotation says what RotateSecret did; it never holds a secret.
type SecretRotation struct {
	ClientID string `json:"client_id"`
	Added    bool   `json:"added"`   // false when add was empty or already a secret of the app
	Revoked  bool   `json:"revoked"` // false when revoke was empty
	Secrets  int    `json:"secrets"` // client secrets the app now has
}

// Errors of RotateSecret.
var (
	ErrUnknownApp    = errors.New("no app registration with this client id")
	ErrUnknownSecret = errors.New("the app has no such client secret to revoke")
)

// RotateSecret adds the client secret add and revokes the secret revoke
// (either may be empty) of an app registration, keeping everything else —
// the directory included. A revoked secret then meets AADSTS7000215 at the
// token endpoint; tokens already issued stay valid until they expire, as
// in Entra ID. Nothing changes when the app is unknown or revoke is not
// one of its secrets. Neither value is ever logged or returned.
func (s *Sim) RotateSecret(clientID, add, revoke string) (SecretRotation, error) {
	cid := strings.ToLower(strings.TrimSpace(clientID))
	out := SecretRotation{ClientID: cid}
	if add == "" && revoke == "" {
		return out, errors.New("nothing to do: give add, revoke or both")
	}
	if add != "" && add == revoke {
		return out, errors.New("add and revoke are the same secret")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[cid]
	if a == nil {
		return out, ErrUnknownApp
	}
	// A fresh slice: the token endpoint copies the old one under RLock
	// and must never see it change under it.
	kept := make([]Secret, 0, len(a.app.Secrets)+1)
	for _, sec := range a.app.Secrets {
		switch {
		case revoke != "" && sec.Value == revoke:
			out.Revoked = true
		default:
			kept = append(kept, sec)
		}
		if sec.Value == add {
			add = "" // already there: adding it again changes nothing
		}
	}
	if revoke != "" && !out.Revoked {
		return out, ErrUnknownSecret
	}
	if add != "" {
		kept = append(kept, Secret{Value: add})
		out.Added = true
	}
	a.app.Secrets = kept
	out.Secrets = len(kept)
	s.log.Info("client secret rotated", "client_id", cid, "added", out.Added, "revoked", out.Revoked, "secrets", out.Secrets)
	return out, nil
}

// ErrNotServed is Outage's answer for a Sim not served by StartTLS (an
// httptest server, or in-process calls): there is no listener to close.
var ErrNotServed = errors.New("graphsim: this Sim is not served by StartTLS; there is no listener to take down")

// Outage makes the Sim's TLS server unreachable for d — listener and open
// connections closed, token endpoint and admin API included — after which
// it listens again on the same address with the same state (see
// Server.Outage). It returns once the server is down.
func (s *Sim) Outage(d time.Duration) error {
	srv := s.srv.Load()
	if srv == nil {
		return ErrNotServed
	}
	if err := srv.Outage(d); err != nil {
		return err
	}
	s.log.Info("outage: not listening", "addr", srv.Addr(), "for", d)
	go func() {
		// Log the return (the server comes back by itself).
		for srv.Down() {
			time.Sleep(50 * time.Millisecond)
		}
		s.log.Info("outage over: listening again", "addr", srv.Addr())
	}()
	return nil
}

// adminBody decodes a small JSON admin request body into v.
func adminBody(r *http.Request, v any) error {
	if r.Method != http.MethodPost {
		return errors.New("POST only")
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// parseFor reads a "for" duration: a Go duration string ("60s", "1m30s").
func parseFor(v string) (time.Duration, error) {
	if v == "" {
		return 0, errors.New(`"for" is missing`)
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf(`"for": %w`, err)
	}
	return d, nil
}

func (s *Sim) adminQuota(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		writeJSON(w, 200, s.Quota())
		return
	}
	const shape = `body must be {"factor":0.1,"for":"60s"} (factor 1 ends a cut): `
	var req struct {
		Factor *float64 `json:"factor"`
		For    string   `json:"for"`
	}
	if err := adminBody(r, &req); err != nil {
		writeJSON(w, 400, map[string]string{"error": shape + err.Error()})
		return
	}
	if req.Factor == nil {
		writeJSON(w, 400, map[string]string{"error": shape + `"factor" is missing`})
		return
	}
	var d time.Duration
	if *req.Factor != 1 {
		var err error
		if d, err = parseFor(req.For); err != nil || d <= 0 {
			if err == nil {
				err = errors.New(`"for" must be positive`)
			}
			writeJSON(w, 400, map[string]string{"error": shape + err.Error()})
			return
		}
	}
	if err := s.SetQuota(*req.Factor, d); err != nil {
		writeJSON(w, 400, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, 200, s.Quota())
}

func (s *Sim) adminSecrets(w http.ResponseWriter, r *http.Request) {
	const shape = `body must be {"client_id":"…","add":"new secret","revoke":"old secret"} (add, revoke or both): `
	var req struct {
		ClientID string `json:"client_id"`
		Add      string `json:"add"`
		Revoke   string `json:"revoke"`
	}
	if err := adminBody(r, &req); err != nil {
		// The decoder's errors name fields and types, never values.
		writeJSON(w, 400, map[string]string{"error": shape + err.Error()})
		return
	}
	if req.ClientID == "" {
		writeJSON(w, 400, map[string]string{"error": shape + `"client_id" is missing`})
		return
	}
	out, err := s.RotateSecret(req.ClientID, req.Add, req.Revoke)
	switch {
	case errors.Is(err, ErrUnknownApp):
		writeJSON(w, 404, map[string]string{"error": err.Error() + ": " + out.ClientID})
	case err != nil:
		writeJSON(w, 400, map[string]string{"error": err.Error()})
	default:
		writeJSON(w, 200, out)
	}
}

func (s *Sim) adminOutage(w http.ResponseWriter, r *http.Request) {
	srv := s.srv.Load()
	if r.Method == http.MethodGet {
		// Only ever answered while up.
		writeJSON(w, 200, map[string]any{"down": false, "served": srv != nil})
		return
	}
	var req struct {
		For string `json:"for"`
	}
	err := adminBody(r, &req)
	var d time.Duration
	if err == nil {
		d, err = parseFor(req.For)
	}
	if err == nil && d <= 0 {
		err = errors.New(`"for" must be positive`)
	}
	if err != nil {
		writeJSON(w, 400, map[string]string{"error": `body must be {"for":"20s"}: ` + err.Error()})
		return
	}
	if srv == nil {
		writeJSON(w, 409, map[string]string{"error": ErrNotServed.Error()})
		return
	}
	writeJSON(w, 202, map[string]any{"status": "going down", "for": d.String(), "addr": srv.Addr(),
		"back_at": time.Now().Add(d).UTC().Format(time.RFC3339Nano)})
	// Go down once this answer is out: the handler's context ends when it
	// returns, and the response is flushed just after.
	go func(ctx context.Context) {
		<-ctx.Done()
		time.Sleep(100 * time.Millisecond)
		if err := s.Outage(d); err != nil {
			s.log.Warn("outage not started", "err", err)
		}
	}(r.Context())
}

// serveAdmin answers /_sim/: state, users, counters, reset, faults, quota,
// secrets, outage. These paths are never under /v1.0 and need no token:
// the emulator listens on loopback only unless told otherwise.
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
	case "/_sim/quota":
		s.adminQuota(w, r)
	case "/_sim/secrets":
		s.adminSecrets(w, r)
	case "/_sim/outage":
		s.adminOutage(w, r)
	case "/_sim/expire-delta":
		s.ExpireDeltaTokens(r.URL.Query().Get("tenant"))
		writeJSON(w, 200, map[string]string{"status": "expired"})
	default:
		writeJSON(w, 404, map[string]string{"error": "unknown admin endpoint; try /_sim/state, /_sim/users?tenant=ID, /_sim/counters, POST /_sim/reset, GET|POST /_sim/faults, POST /_sim/expire-delta?tenant=ID, GET|POST /_sim/quota {\"factor\":0.1,\"for\":\"60s\"}, POST /_sim/secrets {\"client_id\":\"…\",\"add\":\"…\",\"revoke\":\"…\"}, POST /_sim/outage {\"for\":\"20s\"}"})
	}
}
