package directory

import (
	"slices"
	"testing"

	"github.com/entraprov/entraprov/internal/profile"
)

// RequiredPermissions is what `worker check` and a run both judge a
// tenant's consent against: users always, group memberships when the job
// manages them, and the permission of each attribute the job owns (never
// of one its source lacks or leaves NULL in every row).
func TestRequiredPermissions(t *testing.T) {
	const lifeCycle = "User-LifeCycleInfo.ReadWrite.All"
	leave := func(c string) bool { return c == "employee_leave_date_time" }
	// The source has every column; filled says which OwnedWhenFilled
	// ones a row fills.
	owning := func(filled func(string) bool) *profile.Schema { return profile.Default.Fill(filled) }
	none := func(string) bool { return false }
	custom := profile.NewSchema([]profile.Attr{
		{Column: "team_code", Graph: "extension_x_teamCode", Kind: profile.String, Permission: PermGroups},
		{Column: "cost_code", Graph: "extension_x_costCode", Kind: profile.String, Permission: "Custom.ReadWrite.All"},
		{Column: "badge", Graph: "extension_x_badge", Kind: profile.String, Permission: "Custom.ReadWrite.All"},
	})
	tests := []struct {
		name   string
		schema *profile.Schema
		groups bool
		want   []string
	}{
		{"nothing_known_is_users_alone", nil, false, []string{PermUsers}},
		{"groups_add_group_member", nil, true, []string{PermUsers, PermGroups}},
		{"leave_date_null_in_every_row_is_not_owned", owning(none), false, []string{PermUsers}},
		{"leave_date_filled_needs_life_cycle", owning(leave), false, []string{PermUsers, lifeCycle}},
		{"groups_and_leave_date", owning(leave), true, []string{PermUsers, PermGroups, lifeCycle}},
		{"source_without_the_column", profile.Default.Restrict(func(c string) bool { return !leave(c) }).Fill(leave), true,
			[]string{PermUsers, PermGroups}},
		{"each_permission_once_sorted_after_groups", custom, true, []string{PermUsers, PermGroups, "Custom.ReadWrite.All", lifeCycle}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RequiredPermissions(tt.schema, tt.groups); !slices.Equal(got, tt.want) {
				t.Errorf("RequiredPermissions = %v; want %v", got, tt.want)
			}
		})
	}
}
