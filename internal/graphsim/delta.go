package graphsim

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
)

// deltaState is carried by $skiptoken/$deltatoken: the query parameters
// of the first call and where the walk is. It is HMAC-signed and bound to
// this Sim instance and tenant.
type deltaState struct {
	T string   `json:"t"`
	E string   `json:"e"`
	M string   `json:"m"` // "f" initial full read, "c" changes since F
	F int64    `json:"f"` // changes after this sequence number
	U int64    `json:"u"` // round ends at this sequence number
	P int64    `json:"p"` // "f": last user seq returned; "c": next index in t.changes
	S []string `json:"s,omitempty"`
	N bool     `json:"n,omitempty"` // manager selected
	// Min is Prefer: return=minimal: changed users carry only the
	// properties that changed in this round.
	Min bool `json:"min,omitempty"`
}

func (s *Sim) encodeDelta(st deltaState) string {
	b, _ := json.Marshal(st)
	m := hmac.New(sha256.New, s.hmacKey)
	m.Write(b)
	return base64.RawURLEncoding.EncodeToString(b) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:12])
}

func (s *Sim) decodeDelta(tok string) (deltaState, bool) {
	var st deltaState
	p, sig, ok := strings.Cut(tok, ".")
	if !ok {
		return st, false
	}
	b, err1 := base64.RawURLEncoding.DecodeString(p)
	want, err2 := base64.RawURLEncoding.DecodeString(sig)
	if err1 != nil || err2 != nil {
		return st, false
	}
	m := hmac.New(sha256.New, s.hmacKey)
	m.Write(b)
	if !hmac.Equal(m.Sum(nil)[:12], want) || json.Unmarshal(b, &st) != nil || st.E != s.epoch {
		return st, false
	}
	return st, true
}

func syncStateGone() *response {
	// Delta tokens of identity resources live 7 days; an expired one is
	// answered 400 BadRequest, code syncStateNotFound (Microsoft 365
	// Developer Blog, "Duration of change tracking tokens for identity and
	// education resources"). Outlook resources answer 410 Gone instead.
	return gErr(400, "syncStateNotFound", "The sync state generation is not found. The delta token is expired and data must be synchronized again.")
}

// deltaUsers serves GET /users/delta: an initial full read in pages, then
// a deltaLink whose use returns only users changed since, removed ones as
// @removed (changed = soft-deleted, deleted = gone for good).
func (s *Sim) deltaUsers(t *tenant, c *call) *response {
	pageSize := deltaPageSize(c.header.Get("Prefer"))
	minimal := strings.Contains(strings.ToLower(c.header.Get("Prefer")), "return=minimal")
	// $select is resolved before t.mu is taken: directory extensions are
	// looked up under it.
	sel, manager, r := deltaSelect(c.query.Get("$select"), s.extensions(t))
	if r != nil {
		return r
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	st, r := s.deltaRound(t, c, minimal, sel, manager)
	if r != nil {
		return r
	}
	// The token carries the first call's $select.
	if r := lifecycleRead(c, st.S); r != nil {
		return r
	}
	var vals []any
	var more bool
	if st.M == "f" {
		vals, more = t.deltaFullPage(&st, pageSize)
	} else {
		vals, more = t.deltaChangesPage(&st, pageSize)
	}
	out := map[string]any{"@odata.context": c.base + "/$metadata#users", "value": vals}
	if more {
		out["@odata.nextLink"] = c.base + "/users/delta?$skiptoken=" + s.encodeDelta(st)
	} else {
		next := deltaState{T: t.id, E: s.epoch, M: "c", F: st.U, S: st.S, N: st.N}
		out["@odata.deltaLink"] = c.base + "/users/delta?$deltatoken=" + s.encodeDelta(next)
	}
	return &response{status: 200, body: out}
}

// deltaPageSize reads Prefer: odata.maxpagesize (default 200, at most 999).
func deltaPageSize(prefer string) int {
	pageSize := 200
	if prefer == "" {
		return pageSize
	}
	for _, part := range strings.Split(prefer, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "odata.maxpagesize="); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				pageSize = min(n, 999)
			}
		}
	}
	return pageSize
}

// deltaRound returns where this page of the round starts: a $skiptoken
// carries on, a $deltatoken starts a round of changes, no token starts a
// full round. $deltatoken=latest (and any refused token or option) is
// answered at once with the returned response. Call with t.mu held.
func (s *Sim) deltaRound(t *tenant, c *call, minimal bool, sel []string, manager bool) (deltaState, *response) {
	var st deltaState
	switch {
	case c.query.Get("$skiptoken") != "":
		var ok bool
		if st, ok = s.decodeDelta(c.query.Get("$skiptoken")); !ok || st.T != t.id {
			return st, syncStateGone()
		}
	case c.query.Get("$deltatoken") == "latest":
		if r := lifecycleRead(c, sel); r != nil {
			return st, r
		}
		link := c.base + "/users/delta?$deltatoken=" + s.encodeDelta(deltaState{T: t.id, E: s.epoch, M: "c", F: t.seq, S: sel, N: manager})
		return st, &response{status: 200, body: map[string]any{"@odata.context": c.base + "/$metadata#users", "@odata.deltaLink": link, "value": []any{}}}
	case c.query.Get("$deltatoken") != "":
		var ok bool
		if st, ok = s.decodeDelta(c.query.Get("$deltatoken")); !ok || st.T != t.id || st.F < t.minDelta {
			return st, syncStateGone()
		}
		st.M, st.U, st.Min = "c", t.seq, minimal
		st.P = int64(sort.Search(len(t.changes), func(i int) bool { return t.changes[i].seq > st.F }))
	default:
		if c.query.Has("$top") || c.query.Has("$expand") || c.query.Has("$orderby") {
			return st, badRequest("The delta query does not support $top, $expand or $orderby.")
		}
		st = deltaState{T: t.id, E: s.epoch, M: "f", U: t.seq, S: sel, N: manager}
	}
	return st, nil
}

// deltaFullPage is a page of a full round: live users in creation order
// after st.P, which it advances. Call with t.mu held.
func (t *tenant) deltaFullPage(st *deltaState, pageSize int) (vals []any, more bool) {
	vals = make([]any, 0, min(pageSize, 256))
	for i := t.posAfter(st.P); i < len(t.order); i++ {
		u := t.order[i]
		if u.deleted || u.purged {
			continue
		}
		if len(vals) == pageSize {
			return vals, true
		}
		vals = append(vals, deltaItem(u, *st, t))
		st.P = u.seq
	}
	return vals, false
}

// deltaChangesPage is a page of a round of changes: each user changed up
// to st.U once, from change index st.P, which it advances. Call with t.mu
// held.
func (t *tenant) deltaChangesPage(st *deltaState, pageSize int) (vals []any, more bool) {
	vals = make([]any, 0, min(pageSize, 256))
	seen := map[*user]bool{}
	i := int(st.P)
	for ; i < len(t.changes) && t.changes[i].seq <= st.U; i++ {
		ch := t.changes[i]
		u := ch.u
		// A later change of the same user in this round emits it then.
		if seen[u] || (u.changeSeq != ch.seq && u.changeSeq <= st.U) {
			continue
		}
		if len(vals) == pageSize {
			more = true
			break
		}
		seen[u] = true
		switch {
		case u.purged:
			vals = append(vals, map[string]any{"@odata.type": userType, "id": u.id, "@removed": map[string]any{"reason": "deleted"}})
		case u.deleted:
			vals = append(vals, map[string]any{"@odata.type": userType, "id": u.id, "@removed": map[string]any{"reason": "changed"}})
		default:
			vals = append(vals, deltaItem(u, *st, t))
		}
	}
	st.P = int64(i)
	return vals, more
}

// deltaSelect parses $select for delta, where the manager navigation
// property is allowed.
func deltaSelect(q string, ext extLookup) ([]string, bool, *response) {
	manager := false
	var rest []string
	for _, p := range strings.Split(q, ",") {
		p = strings.TrimSpace(p)
		if strings.EqualFold(p, "manager") {
			manager = true
			continue
		}
		if p != "" {
			rest = append(rest, p)
		}
	}
	sel, r := parseSelect(strings.Join(rest, ","), ext)
	return sel, manager, r
}

func deltaItem(u *user, st deltaState, t *tenant) map[string]any {
	o := project(u, st.S)
	if st.Min && st.M == "c" {
		for k := range o {
			if u.propSeq[k] <= st.F {
				delete(o, k)
			}
		}
	}
	o["id"] = u.id
	if st.N && (!st.Min || st.M != "c" || u.propSeq["manager"] > st.F) {
		// A soft-deleted or purged manager is no manager, as for $expand
		// and GET manager.
		mid := u.managerID
		if m := t.users[mid]; mid != "" && (m == nil || m.deleted || m.purged) {
			mid = ""
		}
		gone := u.removedManager
		if gone == "" {
			gone = u.managerID
		}
		switch {
		case mid != "":
			o["manager@delta"] = []any{map[string]any{"@odata.type": userType, "id": mid}}
		case gone != "" && st.M == "c":
			// The shape of a removed link: the old target with @removed
			// (microsoft/api-guidelines graph/patterns/change-tracking.md).
			o["manager@delta"] = []any{map[string]any{"@odata.type": userType, "id": gone, "@removed": map[string]any{"reason": "deleted"}}}
		}
	}
	return o
}
