package graphsim

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

const userType = "#microsoft.graph.user"

// parseSelect turns $select into canonical property names; nil means the
// default set. ext resolves the tenant's directory extensions (nil: none).
func parseSelect(q string, ext extLookup) ([]string, *response) {
	if q == "" {
		return nil, nil
	}
	var out []string
	for _, p := range strings.Split(q, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		name, ok := resolveProp(p, ext)
		if !ok && isExtensionName(p) {
			// As observed for an extension the tenant does not have
			// (instructure/canvas-lms microsoft_sync specs).
			return nil, gErr(400, "Request_UnsupportedQuery", fmt.Sprintf("Property '%s' does not exist as a declared property or extension property.", p))
		}
		if !ok || strings.Contains(name, "/") {
			return nil, badRequest(fmt.Sprintf("Could not find a property named '%s' on type 'microsoft.graph.user'.", p))
		}
		out = append(out, name)
	}
	return out, nil
}

// parseExpand accepts the one expansion users support here:
// manager, optionally manager($select=a,b).
func parseExpand(q string, ext extLookup) (bool, []string, *response) {
	if q == "" {
		return false, nil, nil
	}
	name, inner, _ := strings.Cut(q, "(")
	if !strings.EqualFold(strings.TrimSpace(name), "manager") {
		return false, nil, badRequest(fmt.Sprintf("Could not find a navigation property named '%s' on type 'microsoft.graph.user'.", name))
	}
	if inner == "" {
		return true, []string{"id", "displayName", "userPrincipalName"}, nil
	}
	inner = strings.TrimSuffix(inner, ")")
	v, ok := strings.CutPrefix(inner, "$select=")
	if !ok {
		return false, nil, badRequest("Only $select is supported inside $expand=manager(...).")
	}
	sel, r := parseSelect(v, ext)
	return true, sel, r
}

// withManager adds the expanded manager; caller holds t.mu.
func (t *tenant) withManager(o map[string]any, u *user, sel []string) {
	if m := t.users[u.managerID]; u.managerID != "" && m != nil && !m.deleted && !m.purged {
		mo := project(m, sel)
		mo["@odata.type"] = userType
		mo["id"] = m.id
		o["manager"] = mo
	}
}

// project renders a user with the selected properties (default set when
// sel is nil). passwordProfile is never returned.
func project(u *user, sel []string) map[string]any {
	if sel == nil {
		sel = defaultUserSelect
	}
	out := make(map[string]any, len(sel)+1)
	for _, k := range sel {
		switch k {
		case "id":
			out["id"] = u.id
		case "passwordProfile":
			out[k] = nil
		default:
			v := u.props[k]
			if v == nil && isExtensionName(k) {
				// A directory extension without a value is left out
				// (docs silent; emulator choice).
				continue
			}
			if v == nil {
				// A collection is never null: an unset one is [] (the
				// create-user response example: "businessPhones": []).
				if d := userProps[strings.ToLower(k)]; d.kind == kStringList || d.kind == kObjectList {
					v = []any{}
				}
			}
			out[k] = v
		}
	}
	return out
}

// full renders every stored property (the restore answer).
func full(u *user) map[string]any {
	out := maps.Clone(u.props)
	out["id"] = u.id
	return out
}

func decodeObject(body []byte) (map[string]any, *response) {
	var m map[string]any
	if len(body) == 0 {
		return nil, gErr(400, "BadRequest", "Empty Payload. JSON content expected.")
	}
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return nil, gErr(400, "BadRequest", "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.")
	}
	return m, nil
}

// normalizeUserBody maps body keys to canonical property names and checks
// that each is a known, writable property (or a directory extension
// registered for the tenant's users) with a valid value, returned as
// stored.
func normalizeUserBody(m map[string]any, ext extLookup) (map[string]any, *response) {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if strings.Contains(k, "@") {
			continue // @odata.type and annotations are accepted and ignored
		}
		if e := ext.find(k); e != nil {
			nv, r := checkExtValue(e, v)
			if r != nil {
				return nil, r
			}
			out[e.name] = nv
			continue
		}
		d, ok := userProps[strings.ToLower(k)]
		if !ok {
			return nil, badRequest(fmt.Sprintf("Property '%s' does not exist as a declared property or extension property.", k))
		}
		if d.readOnly {
			return nil, badRequest(fmt.Sprintf("Property '%s' is read-only and cannot be set.", d.name))
		}
		nv, r := checkPropValue(d, v)
		if r != nil {
			return nil, r
		}
		out[d.name] = nv
	}
	return out, nil
}

// syncedReadOnly is the answer to writing a property the on-premises
// directory owns on a synced user (observed: microsoft-graph-docs-contrib
// issue 1900; microsoft-graph-docs issue 18038).
func syncedReadOnly() *response {
	return badRequest("Unable to update the specified properties for on-premises mastered Directory Sync objects or objects currently undergoing migration.")
}

// setProps applies written properties to a user's stored ones: null
// clears; a complex value is merged field by field (OData 4.01 PATCH
// semantics for complex properties; Graph's docs are silent), a null field
// clearing that field. Caller holds t.mu.
func setProps(props map[string]any, written map[string]any) {
	for k, v := range written {
		if k == "passwordProfile" {
			continue
		}
		nm, isMap := v.(map[string]any)
		if d := userProps[strings.ToLower(k)]; isMap && d.fields != nil {
			merged := map[string]any{}
			if old, ok := props[k].(map[string]any); ok {
				maps.Copy(merged, old)
			}
			for f, x := range nm {
				if x == nil {
					delete(merged, f)
				} else {
					merged[f] = x
				}
			}
			if len(merged) == 0 {
				delete(props, k)
			} else {
				props[k] = merged
			}
			continue
		}
		if v == nil {
			delete(props, k)
		} else {
			props[k] = v
		}
	}
}

func (s *Sim) checkUPN(t *tenant, upn string) *response {
	at := strings.LastIndexByte(upn, '@')
	if at <= 0 || at == len(upn)-1 || len(upn) > 113 || len(upn)-at-1 > 48 || !upnAliasOK(upn[:at]) {
		return badRequest("Property userPrincipalName is invalid.", errDetail{Target: "userPrincipalName", Code: "InvalidValue"})
	}
	if !t.verified(upn[at+1:]) {
		return badRequest("The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization.", errDetail{Target: "userPrincipalName", Code: "InvalidValue"})
	}
	return nil
}

func conflict(prop string) *response {
	return badRequest(fmt.Sprintf("Another object with the same value for property %s already exists.", prop), errDetail{Target: prop, Code: "ObjectConflict"})
}

func invalidValue(prop string) *response {
	return badRequest(fmt.Sprintf("Invalid value specified for property '%s' of resource 'User'.", prop))
}

func (s *Sim) createUser(t *tenant, c *call) *response {
	_, props, r := s.userWrite(t, c)
	if r != nil {
		return r
	}
	if _, ok := props["accountEnabled"].(bool); !ok {
		return invalidValue("accountEnabled")
	}
	for _, k := range []string{"displayName", "mailNickname", "userPrincipalName"} {
		if v, _ := props[k].(string); strings.TrimSpace(v) == "" {
			return invalidValue(k)
		}
	}
	pp, _ := props["passwordProfile"].(map[string]any)
	pw, _ := pp["password"].(string)
	if pw == "" {
		return badRequest("A password must be specified to create a new user.")
	}
	upn := props["userPrincipalName"].(string)
	if r := s.checkUPN(t, upn); r != nil {
		return r
	}
	nick := props["mailNickname"].(string)
	if !mailNicknameOK(nick) {
		return invalidValue("mailNickname")
	}
	if ul, ok := props["usageLocation"].(string); ok && len(ul) != 2 {
		return invalidValue("usageLocation")
	}
	if !passwordOK(pw) {
		return badRequest("The specified password does not comply with password complexity requirements. Please provide a different password.")
	}
	delete(props, "passwordProfile") // the password is checked, never kept
	stored := map[string]any{}
	setProps(stored, props)
	props = stored
	now := s.now()
	t.mu.Lock()
	if t.byUPN[strings.ToLower(upn)] != nil {
		t.mu.Unlock()
		return conflict("userPrincipalName")
	}
	if s.opts.UniqueMailNickname && t.byNick[strings.ToLower(nick)] != nil {
		t.mu.Unlock()
		return conflict("mailNickname")
	}
	u := t.newUser(uuid.NewString(), props, now)
	u.visibleAt = now.Add(s.opts.ConsistencyDelay)
	// The 201 body is the default property set, unset ones null, like a GET
	// without $select (user-post-users, example 1 response), not every
	// property written.
	out := project(u, nil)
	t.mu.Unlock()
	s.ctr.addCreated(upn)
	out["@odata.context"] = c.base + "/$metadata#users/$entity"
	resp := &response{status: 201, body: out}
	resp.setHeader("Location", c.base+"/users/"+u.id)
	return resp
}

func (s *Sim) getUser(t *tenant, c *call) *response {
	ext := s.extensions(t)
	sel, r := parseSelect(c.query.Get("$select"), ext)
	if r != nil {
		return r
	}
	expand, msel, r := parseExpand(c.query.Get("$expand"), ext)
	if r != nil {
		return r
	}
	if r := lifecycleRead(c, sel, msel); r != nil {
		return r
	}
	t.mu.RLock()
	u := t.lookup(c.params[0], s.now())
	var out map[string]any
	if u != nil {
		out = project(u, sel)
		if expand {
			t.withManager(out, u, msel)
		}
	}
	t.mu.RUnlock()
	if u == nil {
		return notFound(c.params[0])
	}
	out["@odata.context"] = c.base + "/$metadata#users/$entity"
	return &response{status: 200, body: out}
}

func (s *Sim) patchUser(t *tenant, c *call) *response {
	m, props, r := s.userWrite(t, c)
	if r != nil {
		return r
	}
	for _, k := range []string{"accountEnabled", "displayName", "mailNickname", "userPrincipalName"} {
		if v, ok := props[k]; ok && (v == nil || v == "") {
			return invalidValue(k)
		}
	}
	if pp, ok := props["passwordProfile"].(map[string]any); ok {
		if pw, _ := pp["password"].(string); pw != "" && !passwordOK(pw) {
			return badRequest("The specified password does not comply with password complexity requirements. Please provide a different password.")
		}
	}
	upn, upnSet := props["userPrincipalName"].(string)
	if upnSet {
		if r := s.checkUPN(t, upn); r != nil {
			return r
		}
	}
	if n, ok := props["mailNickname"].(string); ok && !mailNicknameOK(n) {
		return invalidValue("mailNickname")
	}
	t.mu.Lock()
	u := t.lookup(c.params[0], s.now())
	if u == nil {
		t.mu.Unlock()
		return notFound(c.params[0])
	}
	if upnSet {
		if o := t.byUPN[strings.ToLower(upn)]; o != nil && o != u {
			t.mu.Unlock()
			return conflict("userPrincipalName")
		}
	}
	if n, ok := props["mailNickname"].(string); ok && s.opts.UniqueMailNickname {
		if o := t.byNick[strings.ToLower(n)]; o != nil && o != u {
			t.mu.Unlock()
			return conflict("mailNickname")
		}
	}
	if synced, _ := u.props["onPremisesSyncEnabled"].(bool); synced {
		for k := range props {
			if userProps[strings.ToLower(k)].syncedRO {
				t.mu.Unlock()
				return syncedReadOnly()
			}
		}
	}
	t.unindex(u)
	changed := make([]string, 0, len(props))
	for k := range props {
		changed = append(changed, k)
	}
	setProps(u.props, props)
	t.index(u)
	t.touch(u, changed...)
	id := u.id
	t.mu.Unlock()
	s.ctr.addPatch(id, redact(m))
	return &response{status: 204}
}

// redact copies a PATCH body for the counters without any password.
func redact(m map[string]any) map[string]any {
	out := maps.Clone(m)
	for k, v := range out {
		if strings.EqualFold(k, "passwordProfile") {
			if pp, ok := v.(map[string]any); ok {
				pp = maps.Clone(pp)
				if _, ok := pp["password"]; ok {
					pp["password"] = "[redacted]"
				}
				out[k] = pp
			}
		}
	}
	return out
}

func (s *Sim) deleteUser(t *tenant, c *call) *response {
	now := s.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.lookup(c.params[0], now)
	if u == nil {
		return notFound(c.params[0])
	}
	t.unindex(u)
	u.deleted, u.deletedAt = true, now
	u.props["deletedDateTime"] = now.UTC().Format(time.RFC3339)
	t.touch(u)
	return &response{status: 204}
}

// pageToken is the opaque $skiptoken of user and group lists: the
// creation sequence number of the last item returned.
func pageToken(seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("X" + strconv.FormatInt(seq, 10)))
}

// pageStart is where a list resumes: 0, or the position its $skiptoken
// carries (400 for a token the emulator did not issue).
func pageStart(c *call) (int, *response) {
	tok := c.query.Get("$skiptoken")
	if tok == "" {
		return 0, nil
	}
	n, ok := parsePageToken(tok)
	if !ok {
		return 0, badRequest("Invalid skip token.")
	}
	return int(n), nil
}

func parsePageToken(tok string) (int64, bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) < 2 || b[0] != 'X' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(b[1:]), 10, 64)
	return n, err == nil
}

func parseTop(c *call, def int) (int, *response) {
	v := c.query.Get("$top")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 999 {
		return 0, badRequest(fmt.Sprintf("Invalid page size specified: '%s'. Must be between 1 and 999 inclusive.", v))
	}
	return n, nil
}

// nextLink repeats the request's query with a new $skiptoken.
func nextLink(c *call, path, tok string) string {
	keys := make([]string, 0, len(c.query))
	for k := range c.query {
		if k != "$skiptoken" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(c.base + path + "?")
	for _, k := range keys {
		b.WriteString(k + "=" + url.QueryEscape(c.query.Get(k)) + "&")
	}
	b.WriteString("$skiptoken=" + tok)
	return b.String()
}

func (s *Sim) listUsers(t *tenant, c *call) *response {
	return s.pageUsers(t, c, "/users", false)
}

func (s *Sim) listDeleted(t *tenant, c *call) *response {
	return s.pageUsers(t, c, c.path, true)
}

// pageUsers serves GET /users and the deleted-items list: $top, $select,
// $filter, $count, $skiptoken paging in creation order.
func (s *Sim) pageUsers(t *tenant, c *call, path string, deleted bool) *response {
	q, r := parseUsersQuery(c, s.extensions(t))
	if r != nil {
		return r
	}
	if r := lifecycleRead(c, q.sel, q.msel, q.f.uses()); r != nil {
		return r
	}
	now := s.now()
	match := func(u *user) bool {
		if u.purged || u.deleted != deleted || (!deleted && now.Before(u.visibleAt)) {
			return false
		}
		return q.f == nil || q.f.eval(u)
	}
	vals, last, more, count := t.usersPage(q, match, deleted)
	out := map[string]any{"@odata.context": c.base + "/$metadata#users", "value": vals}
	if count >= 0 {
		out["@odata.count"] = count
	}
	if more {
		out["@odata.nextLink"] = nextLink(c, path, pageToken(last))
	}
	return &response{status: 200, body: out}
}

// usersQuery is a list request's OData options, checked.
type usersQuery struct {
	top       int
	sel       []string
	wantCount bool    // $count=true with ConsistencyLevel: eventual
	f         *filter // nil without $filter
	expand    bool    // $expand=manager
	msel      []string
	after     int64 // the $skiptoken's position
}

// parseUsersQuery reads a list request's options in the order Graph
// checks them, answering the first one it refuses.
func parseUsersQuery(c *call, ext extLookup) (usersQuery, *response) {
	var q usersQuery
	if c.query.Has("$skip") {
		return q, badRequest("'$skip' is not supported by the service.")
	}
	var r *response
	if q.top, r = parseTop(c, 100); r != nil {
		return q, r
	}
	if q.sel, r = parseSelect(c.query.Get("$select"), ext); r != nil {
		return q, r
	}
	eventual := strings.EqualFold(c.header.Get("ConsistencyLevel"), "eventual")
	// ?$count=true without ConsistencyLevel is silently ignored: 200 and no
	// @odata.count (aad-advanced-queries, "Error handling"); only the
	// /$count segment is refused.
	q.wantCount = strings.EqualFold(c.query.Get("$count"), "true") && eventual
	if q.f, r = parseUsersFilter(c.query.Get("$filter"), q.wantCount, ext); r != nil {
		return q, r
	}
	if q.expand, q.msel, r = parseExpand(c.query.Get("$expand"), ext); r != nil {
		return q, r
	}
	if q.expand && q.top > maxExpandPage {
		// With $expand a page of directory objects holds at most 100,
		// whatever $top asks (known issue 13635 as observed; the nextLink
		// carries on from there).
		q.top = maxExpandPage
	}
	if tok := c.query.Get("$skiptoken"); tok != "" {
		var ok bool
		if q.after, ok = parsePageToken(tok); !ok {
			return q, badRequest("Invalid skip token.")
		}
	}
	return q, nil
}

// parseUsersFilter parses $filter (nil when absent) and refuses what Graph
// serves only as an advanced query when the request is not one.
func parseUsersFilter(fq string, advancedParams bool, ext extLookup) (*filter, *response) {
	if fq == "" {
		return nil, nil
	}
	f, err := parseFilter(fq, ext)
	if err != nil {
		var fe filterErr
		if errors.As(err, &fe) {
			return nil, gErr(400, fe.code, fe.msg)
		}
		return nil, badRequest("Invalid filter clause: " + err.Error())
	}
	if f.unsupported != "" {
		return nil, unsupportedFilter(f.unsupported)
	}
	if f.advanced && !advancedParams {
		if op := f.advWhy; op == "ne" || op == "not" || op == "endsWith" {
			return nil, gErr(400, "Request_UnsupportedQuery", "Operator '"+op+"' is not supported because the required parameters might be missing. Try adding $count=true query parameter and ConsistencyLevel:eventual header. Refer to https://aka.ms/graph-docs/advanced-queries for more information")
		}
		return nil, unsupportedFilter(f.advWhy)
	}
	return f, nil
}

// usersPage collects, under the tenant's read lock, the page of users
// matching after q.after: the rendered objects, the last one's position,
// whether more follow, and the total count (-1 unless q.wantCount).
func (t *tenant) usersPage(q usersQuery, match func(*user) bool, deleted bool) (vals []any, last int64, more bool, count int) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	cands := t.order
	if q.f != nil && q.f.eqProp != "" && !deleted {
		cands = t.indexed(q.f.eqProp, q.f.eqVals)
	}
	start := sort.Search(len(cands), func(i int) bool { return cands[i].seq > q.after })
	vals = make([]any, 0, min(q.top, 64))
	for _, u := range cands[start:] {
		if !match(u) {
			continue
		}
		if len(vals) == q.top {
			more = true
			break
		}
		o := project(u, q.sel)
		if deleted {
			o["deletedDateTime"] = u.props["deletedDateTime"]
		} else if q.expand {
			t.withManager(o, u, q.msel)
		}
		vals = append(vals, o)
		last = u.seq
	}
	count = -1
	if q.wantCount {
		count = 0
		for _, u := range cands {
			if match(u) {
				count++
			}
		}
	}
	return vals, last, more, count
}

// maxExpandPage caps a user list page that carries $expand.
const maxExpandPage = 100

// unsupportedFilter is the documented refusal of a filter clause on a
// property (aad-advanced-queries, "Error handling for advanced queries").
func unsupportedFilter(prop string) *response {
	return gErr(400, "Request_UnsupportedQuery", "Unsupported or invalid query filter clause specified for property '"+prop+"' of resource 'User'.")
}

// indexed returns, in creation order, the only users a filter of one
// equality (or "in") on an indexed property can match; other properties
// get the full scan. Caller holds t.mu.
func (t *tenant) indexed(prop string, vals []string) []*user {
	set := map[*user]struct{}{}
	for _, val := range vals {
		switch prop {
		case "id":
			if u := t.users[strings.ToLower(val)]; u != nil {
				set[u] = struct{}{}
			}
		case "userPrincipalName":
			if u := t.byUPN[strings.ToLower(val)]; u != nil {
				set[u] = struct{}{}
			}
		case "employeeId":
			for u := range t.byEmp[val] {
				set[u] = struct{}{}
			}
		default:
			// mailNickname is not unique unless UniqueMailNickname, and
			// the other properties have no index: scan.
			return t.order
		}
	}
	out := make([]*user, 0, len(set))
	for u := range set {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

func (s *Sim) countUsers(t *tenant, c *call) *response {
	if !strings.EqualFold(c.header.Get("ConsistencyLevel"), "eventual") {
		return badRequest("$count is not currently supported.") // aad-advanced-queries, "Error handling"
	}
	t.mu.RLock()
	n := t.active
	t.mu.RUnlock()
	return &response{status: 200, text: strconv.Itoa(n)}
}

func (s *Sim) getManager(t *tenant, c *call) *response {
	now := s.now()
	t.mu.RLock()
	defer t.mu.RUnlock()
	u := t.lookup(c.params[0], now)
	if u == nil {
		return notFound(c.params[0])
	}
	m := t.users[u.managerID]
	if u.managerID == "" || m == nil || m.deleted || m.purged {
		return notFound("manager")
	}
	if strings.HasSuffix(c.route.pattern, "$ref") {
		return &response{status: 200, body: map[string]any{"@odata.context": c.base + "/$metadata#directoryObjects/$entity", "@odata.id": c.base + "/directoryObjects/" + m.id}}
	}
	out := project(m, nil)
	out["@odata.type"] = userType
	out["@odata.context"] = c.base + "/$metadata#directoryObjects/$entity"
	return &response{status: 200, body: out}
}

// refTarget reads {"@odata.id": ".../users/{id}"} (or directoryObjects).
func refTarget(body []byte) (string, *response) {
	m, r := decodeObject(body)
	if r != nil {
		return "", r
	}
	ref, _ := m["@odata.id"].(string)
	if ref == "" {
		return "", badRequest("Invalid object identifier '" + ref + "'.")
	}
	ref = strings.TrimRight(ref, "/")
	id := ref[strings.LastIndexByte(ref, '/')+1:]
	if _, err := uuid.Parse(id); err != nil {
		return "", badRequest("Invalid object identifier '" + id + "'.")
	}
	return strings.ToLower(id), nil
}

func (s *Sim) setManager(t *tenant, c *call) *response {
	mid, r := refTarget(c.body)
	if r != nil {
		return r
	}
	now := s.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.lookup(c.params[0], now)
	if u == nil {
		return notFound(c.params[0])
	}
	if t.lookup(mid, now) == nil {
		return notFound(mid)
	}
	if u.managerID != mid {
		u.managerID, u.removedManager = mid, ""
		t.touch(u, "manager")
	}
	return &response{status: 204}
}

func (s *Sim) removeManager(t *tenant, c *call) *response {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.lookup(c.params[0], s.now())
	if u == nil {
		return notFound(c.params[0])
	}
	if u.managerID == "" {
		return notFound("manager")
	}
	u.managerID, u.removedManager = "", u.managerID
	t.touch(u, "manager")
	return &response{status: 204}
}

func (s *Sim) memberOf(t *tenant, c *call) *response {
	t.mu.RLock()
	defer t.mu.RUnlock()
	u := t.lookup(c.params[0], s.now())
	if u == nil {
		return notFound(c.params[0])
	}
	vals := []any{}
	for _, g := range t.gorder {
		if _, ok := u.groups[g.id]; ok {
			vals = append(vals, groupJSON(g))
		}
	}
	return &response{status: 200, body: map[string]any{"@odata.context": c.base + "/$metadata#directoryObjects", "value": vals}}
}

func (s *Sim) getDeleted(t *tenant, c *call) *response {
	sel, r := s.readSelect(t, c)
	if r != nil {
		return r
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	u := t.users[strings.ToLower(c.params[0])]
	if u == nil || !u.deleted || u.purged {
		return notFound(c.params[0])
	}
	out := project(u, sel)
	out["@odata.type"] = userType
	out["deletedDateTime"] = u.props["deletedDateTime"]
	out["@odata.context"] = c.base + "/$metadata#directoryObjects/$entity"
	return &response{status: 200, body: out}
}

func (s *Sim) restoreUser(t *tenant, c *call) *response {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.users[strings.ToLower(c.params[0])]
	if u == nil || !u.deleted || u.purged {
		return notFound(c.params[0])
	}
	if t.byUPN[strings.ToLower(u.str("userPrincipalName"))] != nil {
		return conflict("userPrincipalName")
	}
	u.deleted, u.deletedAt = false, time.Time{}
	// A restored user replicates like a new one.
	u.visibleAt = s.now().Add(s.opts.ConsistencyDelay)
	delete(u.props, "deletedDateTime")
	t.index(u)
	t.touch(u)
	out := full(u)
	out["@odata.type"] = userType
	out["@odata.context"] = c.base + "/$metadata#directoryObjects/$entity"
	return &response{status: 200, body: out}
}

func (s *Sim) purgeUser(t *tenant, c *call) *response {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.users[strings.ToLower(c.params[0])]
	if u == nil || !u.deleted || u.purged {
		return notFound(c.params[0])
	}
	u.purged = true
	delete(t.users, u.id)
	for gid := range u.groups {
		if g := t.groups[gid]; g != nil {
			g.remove(u.id)
		}
	}
	t.touch(u)
	t.dropPurged()
	return &response{status: 204}
}

func (s *Sim) organization(t *tenant, c *call) *response {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var doms []any
	for i, d := range t.domains {
		doms = append(doms, map[string]any{"name": d, "isDefault": i == 0, "isInitial": strings.HasSuffix(d, ".onmicrosoft.com"), "type": "Managed", "capabilities": "Email, OfficeCommunicationsOnline"})
	}
	org := map[string]any{"id": t.id, "displayName": t.name, "verifiedDomains": doms, "tenantType": "AAD"}
	return &response{status: 200, body: map[string]any{"@odata.context": c.base + "/$metadata#organization", "value": []any{org}}}
}

// Lifecycle permissions: "To read this property [employeeLeaveDateTime],
// the calling app must be assigned the User-LifeCycleInfo.Read.All
// permission. To write this property, the calling app must be assigned the
// User.Read.All and User-LifeCycleInfo.ReadWrite.All permissions" (user
// resource type, v1.0; tutorial-lifecycle-workflows-set-employeeleavedatetime).
const (
	roleLifeCycleRead  = "User-LifeCycleInfo.Read.All"
	roleLifeCycleWrite = "User-LifeCycleInfo.ReadWrite.All"
)

// userWrite reads the body of a user create or update: the object as sent
// (m) and its known properties with valid values (props,
// normalizeUserBody), which the caller may write (lifecycleWrite).
func (s *Sim) userWrite(t *tenant, c *call) (m, props map[string]any, r *response) {
	m, r = decodeObject(c.body)
	if r != nil {
		return nil, nil, r
	}
	props, r = normalizeUserBody(m, s.extensions(t))
	if r != nil {
		return nil, nil, r
	}
	if r := lifecycleWrite(c, props); r != nil {
		return nil, nil, r
	}
	return m, props, nil
}

// readSelect is a read's $select, checked against the tenant's schema and
// the caller's lifecycle permissions (lifecycleRead).
func (s *Sim) readSelect(t *tenant, c *call) ([]string, *response) {
	sel, r := parseSelect(c.query.Get("$select"), s.extensions(t))
	if r != nil {
		return nil, r
	}
	if r := lifecycleRead(c, sel); r != nil {
		return nil, r
	}
	return sel, nil
}

// lifecycleRead refuses a read that selects or filters on
// employeeLeaveDateTime without a lifecycle permission (ReadWrite implies
// Read). What the service answers then is not documented: 403
// Authorization_RequestDenied, like any missing permission (emulator
// choice).
func lifecycleRead(c *call, props ...[]string) *response {
	for _, l := range props {
		if contains(l, propLeaveDate) && !c.p.has([]string{roleLifeCycleRead, roleLifeCycleWrite}) {
			return denied()
		}
	}
	return nil
}

// lifecycleWrite enforces the write rule of employeeLeaveDateTime, and
// lets an app holding only User-LifeCycleInfo.ReadWrite.All with a user
// read permission (the tutorial's least privilege: User.Read.All and
// User-LifeCycleInfo.ReadWrite.All) write that property and nothing else.
func lifecycleWrite(c *call, props map[string]any) *response {
	_, leave := props[propLeaveDate]
	if leave && !c.p.has([]string{roleLifeCycleWrite}) {
		return denied()
	}
	if !c.p.has(permWriteUser) && (!leave || len(props) != 1 || !c.p.has(permReadUsers)) {
		return denied()
	}
	return nil
}
