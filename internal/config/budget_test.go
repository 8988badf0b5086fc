package config

import (
	"strings"
	"testing"
)

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

// TestChangeBudget_refuses: two zeros never mean "off"; every problem names
// its key (the old one when the file uses it) and the fix.
func TestChangeBudget_refuses(t *testing.T) {
	tests := []struct {
		name, yaml, key, msg string
	}{
		{"two_zeros", jobYAML("change_budget: {disables: {max_count: 0, max_percent: 0}}"), "jobs[0].change_budget.disables",
			"max_count and max_percent are both 0, which would allow any number of changes; set a bound (e.g. max_count: 500, max_percent: 10) or, to turn this bound off, say so: off: true"},
		{"two_zeros_in_the_old_key", jobYAML("deletion_threshold: {max_count: 0, max_percent: 0}"), "jobs[0].deletion_threshold", "off: true"},
		{"negative_count", jobYAML("change_budget: {manager_removals: {max_count: -3}}"), "jobs[0].change_budget.manager_removals.max_count", "is negative"},
		{"percent_over_100", jobYAML("change_budget: {group_removals: {max_percent: 120}}"), "jobs[0].change_budget.group_removals.max_percent", "out of range"},
		{"negative_floor", jobYAML("change_budget: {percent_floor: -1}"), "jobs[0].change_budget.percent_floor", "is negative"},
		{"both_names", jobYAML("deletion_threshold: {max_count: 5}", "change_budget: {disables: {max_count: 7}}"), "jobs[0].deletion_threshold",
			"deletion_threshold is the older name of change_budget.disables and .deletes"},
		{"unknown_kind", jobYAML("change_budget: {disable: {max_count: 7}}"), "jobs[0].change_budget.disable", "did you mean disables?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := problemsOf(t, tt.yaml)
			for _, p := range ps {
				if p.Key == tt.key && strings.Contains(p.Msg, tt.msg) {
					return
				}
			}
			t.Fatalf("problems %v; want %s: …%s…", ps, tt.key, tt.msg)
		})
	}
}
