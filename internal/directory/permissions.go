package directory

import "slices"

// Application permissions (app roles of Microsoft Graph) a job needs: users
// always, group memberships when its source manages groups.
const (
	PermUsers  = "User.ReadWrite.All"
	PermGroups = "GroupMember.ReadWrite.All"
)

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
