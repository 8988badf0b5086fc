package graphsim

import (
	"crypto/x509"
	"sort"
	"strings"
	"sync"
	"time"
)

// tenant holds one directory. Its mutex guards everything below it; calls
// on different tenants never contend.
type tenant struct {
	mu      sync.RWMutex
	id      string
	name    string
	domains []string // lower case, verified; the first is the default

	users  map[string]*user // by id, including soft-deleted
	order  []*user          // creation order (seq ascending), for paging
	byUPN  map[string]*user // lower(UPN) → active user
	byNick map[string]*user // lower(mailNickname) → active user
	byEmp  map[string]map[*user]struct{}
	active int

	groups map[string]*group
	gorder []*group

	seq      int64 // change sequence of this tenant
	changes  []change
	minDelta int64 // delta tokens older than this are gone
	nextUser int64

	sps map[string]*servicePrincipal // by client id
}

type change struct {
	seq int64
	u   *user
}

type user struct {
	id        string
	seq       int64 // creation order
	props     map[string]any
	created   time.Time
	visibleAt time.Time
	deleted   bool
	deletedAt time.Time
	purged    bool
	managerID string
	// removedManager is the manager last removed, for manager@delta.
	removedManager string
	groups         map[string]struct{}
	changeSeq      int64
	// propSeq is the change sequence at which each property last changed,
	// for delta with Prefer: return=minimal.
	propSeq map[string]int64
}

func (u *user) str(k string) string {
	v, _ := u.props[k].(string)
	return v
}

type group struct {
	id      string
	name    string
	created time.Time
	members map[string]struct{}
	morder  []string
}

type servicePrincipal struct {
	id    string
	roles []string
}

// appReg is an app registration in its home tenant.
type appReg struct {
	app   App
	certs []*x509.Certificate
	exts  []*extDef // its directory extensions, in creation order
}

func newTenant(id string, domains []string) *tenant {
	t := &tenant{
		id: id, users: map[string]*user{}, byUPN: map[string]*user{}, byNick: map[string]*user{},
		byEmp: map[string]map[*user]struct{}{}, groups: map[string]*group{}, sps: map[string]*servicePrincipal{},
	}
	for _, d := range domains {
		t.domains = append(t.domains, strings.ToLower(d))
	}
	if len(domains) > 0 {
		t.name = strings.SplitN(domains[0], ".", 2)[0]
	}
	return t
}

// size is the identity-service tenant size class by user count.
func (t *tenant) size() string {
	t.mu.RLock()
	n := t.active
	t.mu.RUnlock()
	switch {
	case n < 50:
		return "S"
	case n <= 500:
		return "M"
	default:
		return "L"
	}
}

func (t *tenant) verified(domain string) bool {
	domain = strings.ToLower(domain)
	for _, d := range t.domains {
		if d == domain {
			return true
		}
	}
	return false
}

// index adds an active user to the lookup maps; caller holds t.mu.
func (t *tenant) index(u *user) {
	t.byUPN[strings.ToLower(u.str("userPrincipalName"))] = u
	if n := u.str("mailNickname"); n != "" {
		t.byNick[strings.ToLower(n)] = u
	}
	if e := u.str("employeeId"); e != "" {
		m := t.byEmp[e]
		if m == nil {
			m = map[*user]struct{}{}
			t.byEmp[e] = m
		}
		m[u] = struct{}{}
	}
	t.active++
}

func (t *tenant) unindex(u *user) {
	if t.byUPN[strings.ToLower(u.str("userPrincipalName"))] == u {
		delete(t.byUPN, strings.ToLower(u.str("userPrincipalName")))
	}
	if n := u.str("mailNickname"); n != "" && t.byNick[strings.ToLower(n)] == u {
		delete(t.byNick, strings.ToLower(n))
	}
	if e := u.str("employeeId"); e != "" {
		delete(t.byEmp[e], u)
		if len(t.byEmp[e]) == 0 {
			delete(t.byEmp, e)
		}
	}
	t.active--
}

// touch records a change of u for delta, naming the properties that
// changed (none: every property); caller holds t.mu.
func (t *tenant) touch(u *user, props ...string) {
	t.seq++
	u.changeSeq = t.seq
	t.changes = append(t.changes, change{seq: t.seq, u: u})
	if u.propSeq == nil {
		u.propSeq = map[string]int64{}
	}
	if len(props) == 0 {
		for k := range u.props {
			u.propSeq[k] = t.seq
		}
		u.propSeq["manager"] = t.seq
		return
	}
	for _, k := range props {
		u.propSeq[k] = t.seq
	}
}

// lookup finds an active user by id or UPN, honouring the consistency
// delay; caller holds t.mu.
func (t *tenant) lookup(ref string, now time.Time) *user {
	u := t.users[ref]
	if u == nil && strings.Contains(ref, "@") {
		u = t.byUPN[strings.ToLower(ref)]
	}
	if u == nil {
		u = t.users[strings.ToLower(ref)]
	}
	if u == nil || u.deleted || u.purged || now.Before(u.visibleAt) {
		return nil
	}
	return u
}

// posAfter is the index in t.order of the first user created after seq.
func (t *tenant) posAfter(seq int64) int {
	return sort.Search(len(t.order), func(i int) bool { return t.order[i].seq > seq })
}

func (t *tenant) dropPurged() {
	kept := t.order[:0]
	for _, u := range t.order {
		if !u.purged {
			kept = append(kept, u)
		}
	}
	for i := len(kept); i < len(t.order); i++ {
		t.order[i] = nil
	}
	t.order = kept
}
