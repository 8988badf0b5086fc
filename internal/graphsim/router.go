package graphsim

import (
	"fmt"
	"strconv"
	"strings"
)

type handler func(s *Sim, t *tenant, c *call) *response

// route is one Graph operation: its path pattern, the application
// permissions that allow it, and its identity-service throttling cost.
type route struct {
	method   string
	pattern  string
	segs     []string
	perms    []string
	write    bool
	baseCost int
	h        handler
}

// cost applies the documented modifiers: $select −1, $expand +1, $top < 20
// −1, never below 1.
func (rt *route) cost(c *call) int {
	cost := rt.baseCost
	if c.query.Get("$select") != "" {
		cost--
	}
	if c.query.Get("$expand") != "" {
		cost++
	}
	if top := c.query.Get("$top"); top != "" {
		if n, err := strconv.Atoi(top); err == nil && n < 20 {
			cost--
		}
	}
	if cost < 1 {
		cost = 1
	}
	return cost
}

var (
	permReadUsers = []string{"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All", "User.ReadBasic.All"}
	permWriteUser = []string{"User.ReadWrite.All", "Directory.ReadWrite.All"}
	permReadGroup = []string{"GroupMember.Read.All", "GroupMember.ReadWrite.All", "Group.Read.All", "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
	permMembers   = []string{"GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"}
	permOrg       = []string{"Organization.Read.All", "Organization.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
)

var routes []*route

func init() {
	add := func(method, pattern string, perms []string, baseCost int, h handler) {
		w := method != "GET"
		routes = append(routes, &route{method: method, pattern: pattern, segs: strings.Split(strings.TrimPrefix(pattern, "/"), "/"), perms: perms, write: w, baseCost: baseCost, h: h})
	}
	add("GET", "/users", permReadUsers, 2, (*Sim).listUsers)
	add("POST", "/users", permWriteUser, 1, (*Sim).createUser)
	add("GET", "/users/$count", permReadUsers, 1, (*Sim).countUsers)
	add("GET", "/users/delta", permReadUsers, 1, (*Sim).deltaUsers)
	add("GET", "/users/{id}", permReadUsers, 1, (*Sim).getUser)
	// An app with only User-LifeCycleInfo.ReadWrite.All (and a read
	// permission) may PATCH employeeLeaveDateTime alone; patchUser checks.
	add("PATCH", "/users/{id}", append(append([]string{}, permWriteUser...), roleLifeCycleWrite), 1, (*Sim).patchUser)
	add("DELETE", "/users/{id}", permWriteUser, 1, (*Sim).deleteUser)
	add("GET", "/users/{id}/manager", permReadUsers, 1, (*Sim).getManager)
	add("GET", "/users/{id}/manager/$ref", permReadUsers, 1, (*Sim).getManager)
	add("PUT", "/users/{id}/manager/$ref", permWriteUser, 1, (*Sim).setManager)
	add("DELETE", "/users/{id}/manager/$ref", permWriteUser, 1, (*Sim).removeManager)
	add("GET", "/users/{id}/memberOf", permReadUsers, 2, (*Sim).memberOf)
	add("GET", "/groups", permReadGroup, 1, (*Sim).listGroups)
	add("GET", "/groups/{id}", permReadGroup, 1, (*Sim).getGroup)
	add("PATCH", "/groups/{id}", permMembers, 1, (*Sim).patchGroup)
	add("GET", "/groups/{id}/members", permReadGroup, 3, (*Sim).listMembers)
	add("POST", "/groups/{id}/members/$ref", permMembers, 1, (*Sim).addMember)
	add("DELETE", "/groups/{id}/members/{id}/$ref", permMembers, 1, (*Sim).removeMember)
	add("GET", "/directory/deletedItems/microsoft.graph.user", permReadUsers, 1, (*Sim).listDeleted)
	add("GET", "/directory/deletedItems/graph.user", permReadUsers, 1, (*Sim).listDeleted)
	add("GET", "/directory/deletedItems/{id}", permReadUsers, 1, (*Sim).getDeleted)
	add("POST", "/directory/deletedItems/{id}/restore", permWriteUser, 1, (*Sim).restoreUser)
	add("DELETE", "/directory/deletedItems/{id}", permWriteUser, 1, (*Sim).purgeUser)
	add("GET", "/organization", permOrg, 1, (*Sim).organization)
	// The alternate key form (applications.go); the object-id form is not
	// served: the worker knows its client id, not its application's id.
	add("GET", "/applications(appId='{id}')", permReadApp, 1, (*Sim).getApplication)
	// Directory extensions (extensions.go), by object id and by appId.
	add("POST", "/applications/{id}/extensionProperties", permWriteApp, 1, (*Sim).createExtension)
	add("GET", "/applications/{id}/extensionProperties", permReadApp, 1, (*Sim).listExtensions)
	add("POST", "/applications(appId='{id}')/extensionProperties", permWriteApp, 1, (*Sim).createExtension)
	add("GET", "/applications(appId='{id}')/extensionProperties", permReadApp, 1, (*Sim).listExtensions)
}

// matchRoute finds the route for method and path. A path that matches a
// route of another method yields (nil, nil) and routeError says 405.
func matchRoute(method, path string) (*route, []string) {
	segs := splitPath(path)
	for _, rt := range routes {
		if rt.method != method || len(rt.segs) != len(segs) {
			continue
		}
		if params, ok := matchSegs(rt.segs, segs); ok {
			return rt, params
		}
	}
	return nil, nil
}

func splitPath(path string) []string {
	path = strings.Trim(path, "/")
	if path == "" {
		return nil
	}
	segs := strings.Split(path, "/")
	for i, s := range segs {
		// kiota writes function calls with parentheses: users/delta().
		segs[i] = strings.TrimSuffix(s, "()")
	}
	return segs
}

func matchSegs(pat, segs []string) ([]string, bool) {
	var params []string
	for i, p := range pat {
		if p == "{id}" {
			if segs[i] == "" {
				return nil, false
			}
			params = append(params, segs[i])
			continue
		}
		// A key inside a segment: applications(appId='{id}').
		if pre, post, ok := strings.Cut(p, "{id}"); ok {
			s := segs[i]
			if len(s) <= len(pre)+len(post) || !strings.EqualFold(s[:len(pre)], pre) || !strings.EqualFold(s[len(s)-len(post):], post) {
				return nil, false
			}
			params = append(params, s[len(pre):len(s)-len(post)])
			continue
		}
		if !strings.EqualFold(p, segs[i]) {
			return nil, false
		}
	}
	return params, true
}

func routeError(method, path string) *response {
	segs := splitPath(path)
	for _, rt := range routes {
		if len(rt.segs) == len(segs) {
			if _, ok := matchSegs(rt.segs, segs); ok {
				return gErr(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
			}
		}
	}
	// Name the first segment no route knows, like the service does.
	bad := path
	for i, s := range segs {
		known := false
		for _, rt := range routes {
			if len(rt.segs) > i && (rt.segs[i] == "{id}" || strings.EqualFold(rt.segs[i], s)) {
				known = true
				break
			}
		}
		if !known {
			bad = s
			break
		}
	}
	return gErr(400, "BadRequest", fmt.Sprintf("Resource not found for the segment '%s'.", bad))
}
