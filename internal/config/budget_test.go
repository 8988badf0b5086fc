package config

import "testing"

// TestChangeBudget_loads: the budget's defaults, an explicit off, a bound
// with one half turned off, and files written for deletion_threshold.
func TestChangeBudget_loads(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(j Job) bool
	}{
		{"defaults", jobYAML(), func(j Job) bool {
			b := j.Budget
			return b.PercentFloor == 10 && b.GroupRemovals == Bound{MaxCount: 500, MaxPercent: 10} && b == DefaultBudget()
		}},
		{"off_is_explicit", jobYAML("change_budget: {group_removals: {off: true}}"), func(j Job) bool {
			return j.Budget.GroupRemovals.Off && j.Budget.Disables == DefaultBudget().Disables
		}},
		{"off_with_zeros", jobYAML("change_budget: {upn_renames: {max_count: 0, max_percent: 0, off: true}}"), func(j Job) bool {
			return j.Budget.UPNRenames.Off
		}},
		{"one_half_off_keeps_the_other_default", jobYAML("change_budget: {attribute_clears: {max_percent: 0}, percent_floor: 3}"), func(j Job) bool {
			b := j.Budget
			return b.AttributeClears == Bound{MaxCount: 500} && b.PercentFloor == 3
		}},
		{"old_deletion_threshold_maps_onto_disables_and_deletes", jobYAML("deletion_threshold: {max_count: 25, max_percent: 5}"), func(j Job) bool {
			b := j.Budget
			want := Bound{MaxCount: 25, MaxPercent: 5}
			return b.Disables == want && b.Deletes == want && b.GroupRemovals == DefaultBudget().GroupRemovals
		}},
		{"old_deletion_threshold_half_set_keeps_the_default_half", jobYAML("deletion_threshold: {max_count: 40}"), func(j Job) bool {
			return j.Budget.Disables == Bound{MaxCount: 40, MaxPercent: 10} && j.Budget.Deletes == j.Budget.Disables
		}},
		{"old_deletion_threshold_off", jobYAML("deletion_threshold: {off: true}"), func(j Job) bool {
			return j.Budget.Disables.Off && j.Budget.Deletes.Off && !j.Budget.ManagerRemovals.Off
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tt.yaml)
			if !tt.check(c.Jobs[0]) {
				t.Fatalf("budget %+v (deletion_threshold %+v)", c.Jobs[0].Budget, c.Jobs[0].Threshold)
			}
		})
	}
}
