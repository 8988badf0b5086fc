package directory

import (
	"slices"

	"github.com/entraprov/entraprov/internal/profile"
)

// Application permissions (app roles of Microsoft Graph) a job needs: users
// always, group memberships when its source manages groups.
const (
	PermUsers  = "User.ReadWrite.All"
	PermGroups = "GroupMember.ReadWrite.All"
)

// RequiredPermissions is the one place that says which application
// permissions a job needs, from what a run learns of its source before it
// plans (store.InspectSource): User.ReadWrite.All always;
// GroupMember.ReadWrite.All when it manages group memberships (groups); and
// what writing each attribute it owns needs (schema, e.g.
// User-LifeCycleInfo.ReadWrite.All once a row fills
// employee_leave_date_time). `worker check` and a run's sign-in both judge
// the token against it, so the tenant's recorded consent does not depend
// on which of them wrote it last. Order: users, groups, then the
// attributes' permissions sorted. A nil schema owns no attribute beyond
// the users permission's.
func RequiredPermissions(schema *profile.Schema, groups bool) []string {
	required := []string{PermUsers}
	if groups {
		required = append(required, PermGroups)
	}
	var attrs []string
	if schema != nil {
		for perm := range schema.Permissions() {
			if !slices.Contains(required, perm) {
				attrs = append(attrs, perm)
			}
		}
	}
	slices.Sort(attrs)
	return append(required, attrs...)
}

// impliedBy lists, for each permission a job needs, the broader ones that
// include it.
var impliedBy = map[string][]string{
	PermUsers:  {"Directory.ReadWrite.All"},
	PermGroups: {"Group.ReadWrite.All", "Directory.ReadWrite.All"},
}

// MissingPermissions lists the required permissions the token's roles do
// not grant, directly or through a broader permission.
func MissingPermissions(required, roles []string) []string {
	var missing []string
	for _, p := range required {
		if slices.Contains(roles, p) {
			continue
		}
		if slices.ContainsFunc(impliedBy[p], func(r string) bool { return slices.Contains(roles, r) }) {
			continue
		}
		missing = append(missing, p)
	}
	return missing
}
