package config

import (
	"fmt"
	"strings"
)

// validateAllowedGroups checks jobs[].allowed_groups: group object ids,
// each once. An empty list is refused rather than read as "no group" or
// "any group": the two are far apart, and `config show` prints an unset
// key and an empty one alike.
func (j *Job) validateAllowedGroups(v *validator, k string) {
	if j.AllowedGroups == nil {
		return
	}
	key := k + ".allowed_groups"
	if len(j.AllowedGroups) == 0 {
		v.add(key, "empty; list the group object ids this job may add users to and remove them from, e.g. [%s], or remove the key to honour any group id in the source", exampleGUID)
		return
	}
	seen := map[string]bool{}
	for i, g := range j.AllowedGroups {
		gk := fmt.Sprintf("%s[%d]", key, i)
		switch {
		case !reGUID.MatchString(g):
			v.add(gk, "%q is not a group object id; want the group's object id GUID (Entra admin center → Groups → Object ID), e.g. %s", g, exampleGUID)
		case seen[strings.ToLower(g)]:
			v.add(gk, "%s is listed twice", g)
		}
		seen[strings.ToLower(g)] = true
	}
}
