package graphsim

import (
	"encoding/json"
	"sort"
	"strings"
)

func groupJSON(g *group) map[string]any {
	return map[string]any{
		"@odata.type": "#microsoft.graph.group", "id": g.id, "displayName": g.name,
		"securityEnabled": true, "mailEnabled": false, "groupTypes": []any{},
		"createdDateTime": g.created.UTC().Format("2006-01-02T15:04:05Z"),
	}
}

func (s *Sim) listGroups(t *tenant, c *call) *response {
	top, r := parseTop(c, 100)
	if r != nil {
		return r
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	start, r := pageStart(c)
	if r != nil {
		return r
	}
	vals := []any{}
	i := start
	for ; i < len(t.gorder) && len(vals) < top; i++ {
		vals = append(vals, groupJSON(t.gorder[i]))
	}
	out := map[string]any{"@odata.context": c.base + "/$metadata#groups", "value": vals}
	if i < len(t.gorder) {
		out["@odata.nextLink"] = nextLink(c, "/groups", pageToken(int64(i)))
	}
	return &response{status: 200, body: out}
}

func (s *Sim) getGroup(t *tenant, c *call) *response {
	t.mu.RLock()
	defer t.mu.RUnlock()
	g := t.groups[strings.ToLower(c.params[0])]
	if g == nil {
		return notFound(c.params[0])
	}
	out := groupJSON(g)
	out["@odata.context"] = c.base + "/$metadata#groups/$entity"
	return &response{status: 200, body: out}
}

// listMembers pages the group's active members (soft-deleted users keep
// their membership for a restore but are not listed).
func (s *Sim) listMembers(t *tenant, c *call) *response {
	top, r := parseTop(c, 100)
	if r != nil {
		return r
	}
	sel, r := s.readSelect(t, c)
	if r != nil {
		return r
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	g := t.groups[strings.ToLower(c.params[0])]
	if g == nil {
		return notFound(c.params[0])
	}
	start, r := pageStart(c)
	if r != nil {
		return r
	}
	vals := []any{}
	i := start
	for ; i < len(g.morder) && len(vals) < top; i++ {
		u := t.users[g.morder[i]]
		if u == nil || u.deleted {
			continue
		}
		o := project(u, sel)
		o["@odata.type"] = userType
		if sel == nil {
			o["id"] = u.id
		}
		vals = append(vals, o)
	}
	out := map[string]any{"@odata.context": c.base + "/$metadata#directoryObjects", "value": vals}
	if i < len(g.morder) {
		out["@odata.nextLink"] = nextLink(c, "/groups/"+g.id+"/members", pageToken(int64(i)))
	}
	return &response{status: 200, body: out}
}

func (s *Sim) addMember(t *tenant, c *call) *response {
	mid, r := refTarget(c.body)
	if r != nil {
		return r
	}
	now := s.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	g := t.groups[strings.ToLower(c.params[0])]
	if g == nil {
		return notFound(c.params[0])
	}
	u := t.lookup(mid, now)
	if u == nil {
		return notFound(mid)
	}
	if !g.add(u.id) {
		return badRequest("One or more added object references already exist for the following modified properties: 'members'.")
	}
	u.groups[g.id] = struct{}{}
	return &response{status: 204}
}

func (s *Sim) removeMember(t *tenant, c *call) *response {
	t.mu.Lock()
	defer t.mu.Unlock()
	g := t.groups[strings.ToLower(c.params[0])]
	if g == nil {
		return notFound(c.params[0])
	}
	mid := strings.ToLower(c.params[1])
	if !g.remove(mid) {
		return notFound(mid)
	}
	if u := t.users[mid]; u != nil {
		delete(u.groups, g.id)
	}
	return &response{status: 204}
}

// groupIDs lists a tenant's groups (admin state).
func (t *tenant) groupIDs() []string {
	var ids []string
	for id := range t.groups {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// patchGroup supports adding up to 20 members at once with
// "members@odata.bind"; other group properties are not emulated.
func (s *Sim) patchGroup(t *tenant, c *call) *response {
	m, r := decodeObject(c.body)
	if r != nil {
		return r
	}
	var refs []any
	for k, v := range m {
		switch {
		case strings.EqualFold(k, "members@odata.bind"):
			refs, _ = v.([]any)
		case strings.HasPrefix(k, "@"):
		default:
			return badRequest("Only members@odata.bind can be updated on a group in this emulator.")
		}
	}
	if len(refs) == 0 || len(refs) > 20 {
		return badRequest("members@odata.bind must list between 1 and 20 members.")
	}
	ids := make([]string, 0, len(refs))
	for _, ref := range refs {
		str, _ := ref.(string)
		b, _ := json.Marshal(map[string]string{"@odata.id": str})
		id, r := refTarget(b)
		if r != nil {
			return r
		}
		ids = append(ids, id)
	}
	now := s.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	g := t.groups[strings.ToLower(c.params[0])]
	if g == nil {
		return notFound(c.params[0])
	}
	users := make([]*user, 0, len(ids))
	for _, id := range ids {
		u := t.lookup(id, now)
		if u == nil {
			return notFound(id)
		}
		if _, ok := g.members[u.id]; ok {
			return badRequest("One or more added object references already exist for the following modified properties: 'members'.")
		}
		users = append(users, u)
	}
	for _, u := range users {
		g.add(u.id)
		u.groups[g.id] = struct{}{}
	}
	return &response{status: 204}
}
