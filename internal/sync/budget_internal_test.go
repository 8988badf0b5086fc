package sync

import (
	"reflect"
	"testing"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
)

func TestBudgetLimit(t *testing.T) {
	def := config.DefaultBudget()
	with := func(b config.Bound, floor int) config.ChangeBudget {
		c := def
		c.Disables, c.PercentFloor = b, floor
		return c
	}
	tests := []struct {
		name      string
		cfg       config.ChangeBudget
		managed   int
		wantLimit int
		wantOK    bool
	}{
		{"defaults_100_users_percent_wins", def, 100, 10, true},
		{"defaults_100k_users_count_wins", def, 100_000, 500, true},
		{"defaults_3_users_floor_wins", def, 3, 10, true},
		{"defaults_no_managed_users", def, 0, 10, true},
		{"count_only", with(config.Bound{MaxCount: 7}, 10), 100, 7, true},
		{"percent_only", with(config.Bound{MaxPercent: 20}, 10), 100, 20, true},
		{"percent_below_floor", with(config.Bound{MaxPercent: 20}, 50), 100, 50, true},
		{"zero_floor", with(config.Bound{MaxPercent: 10}, 0), 5, 0, true},
		{"off", with(config.Bound{Off: true}, 10), 100, 0, false},
		// A Job built in code without a budget is bounded by the defaults.
		{"zero_bound_means_default", with(config.Bound{}, 0), 100, 10, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, ok := BudgetLimit(tt.cfg, KindDisable, tt.managed)
			if n != tt.wantLimit || ok != tt.wantOK {
				t.Fatalf("BudgetLimit = %d, %v; want %d, %v", n, ok, tt.wantLimit, tt.wantOK)
			}
		})
	}
}

func TestDestructiveKinds(t *testing.T) {
	tests := []struct {
		name    string
		action  Action
		changes map[string]any
		want    []string
	}{
		{"disable", ActDisable, map[string]any{"accountEnabled": change(true, false)}, []string{KindDisable}},
		{"disable_of_a_user_on_leave_with_a_title", ActDisable, map[string]any{"accountEnabled": change(true, false), "jobTitle": change("A", "B")}, []string{KindDisable}},
		{"disable_carrying_a_clear", ActDisable, map[string]any{"accountEnabled": change(true, false), "jobTitle": change("A", nil)}, []string{KindDisable, KindAttributeClear}},
		{"delete", ActDelete, nil, []string{KindDelete}},
		{"group_remove", ActGroupRemove, map[string]any{"group": "g"}, []string{KindGroupRemoval}},
		{"group_add", ActGroupAdd, map[string]any{"group": "g"}, nil},
		{"manager_removed", ActManager, map[string]any{"manager": change("m1", nil)}, []string{KindManagerRemoval}},
		{"manager_replaced", ActManager, map[string]any{"manager": change("m1", "m2")}, nil},
		{"manager_first_set", ActManager, map[string]any{"manager": change(nil, "m2")}, nil},
		{"attribute_cleared", ActUpdate, map[string]any{"jobTitle": change("Engineer", nil)}, []string{KindAttributeClear}},
		{"attribute_changed", ActUpdate, map[string]any{"jobTitle": change("Engineer", "Lead")}, nil},
		{"attribute_first_set", ActUpdate, map[string]any{"jobTitle": change(nil, "Lead")}, nil},
		{"rename", ActUpdate, map[string]any{"userPrincipalName": change("a@x", "b@x")}, []string{KindUPNRename}},
		{"rename_and_clear", ActEnable, map[string]any{"userPrincipalName": change("a@x", "b@x"), "department": change("R&D", nil)},
			[]string{KindUPNRename, KindAttributeClear}},
		{"adopt_clears", ActAdopt, map[string]any{"mobilePhone": change("+1", nil)}, []string{KindAttributeClear}},
		{"create", ActCreate, map[string]any{"jobTitle": "x"}, nil},
		// As read back from sync_operations.changes (JSON).
		{"stored_clear", ActUpdate, map[string]any{"surname": map[string]any{"from": "N1", "to": nil}}, []string{KindAttributeClear}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DestructiveKinds(tt.action, tt.changes); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("DestructiveKinds = %v; want %v", got, tt.want)
			}
		})
	}
}

// TestBudgetAdmit: the apply pass's gate counts users once per kind, stops
// at the bound, lets approved users through and honours lifted kinds.
func TestBudgetAdmit(t *testing.T) {
	cfg := config.DefaultBudget()
	cfg.Disables = config.Bound{MaxCount: 2}
	cfg.GroupRemovals = config.Bound{MaxCount: 1}
	disable := Step{Action: ActDisable, Kind: directory.OpUpdate, Changes: map[string]any{"accountEnabled": change(true, false)}}
	remove := Step{Action: ActGroupRemove, Kind: directory.OpRemoveMember, Changes: map[string]any{"group": "g"}}
	failed := Step{Action: ActDisable, Failure: "bad row"}

	b := newBudget(cfg, 1000)
	b.approved = destructiveSet{KindDisable: {"A9": true}}
	steps := []struct {
		xid  string
		st   Step
		want bool
	}{
		{"A1", disable, true},
		{"A2", disable, true},
		{"A3", disable, false}, // the third disable: over max_count 2
		{"A9", disable, true},  // approved: passes whatever the bound
		{"A3", failed, true},   // nothing sent, nothing spent
		{"A1", remove, true},
		{"A1", remove, true}, // the same user's second group: one user
		{"A2", remove, false},
	}
	for i, s := range steps {
		if ok, _ := b.admit(s.xid, s.st); ok != s.want {
			t.Fatalf("step %d (%s %s): admit = %v; want %v", i, s.xid, s.st.Action, ok, s.want)
		}
	}
	if b.count[KindDisable] != 2 || b.withheld[KindDisable] != 1 || b.withheld[KindGroupRemoval] != 1 {
		t.Fatalf("count %v withheld %v", b.count, b.withheld)
	}

	b = newBudget(cfg, 1000)
	b.lifted[KindDisable] = true
	for i := range 5 {
		if ok, _ := b.admit(string(rune('a'+i)), disable); !ok {
			t.Fatalf("lifted kind refused at %d", i)
		}
	}
}

func TestDestructiveSetAddedTo(t *testing.T) {
	reviewed := destructiveSet{KindDisable: {"E1": true, "E2": true}, KindGroupRemoval: {"E5": true}}
	same := destructiveSet{KindDisable: {"E2": true}}
	if got := same.addedTo(reviewed); len(got) != 0 {
		t.Fatalf("a subset added %v", got)
	}
	grown := destructiveSet{KindDisable: {"E1": true, "E3": true}, KindAttributeClear: {"E1": true}}
	got := grown.addedTo(reviewed)
	want := map[string][]string{KindDisable: {"E3"}, KindAttributeClear: {"E1"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("addedTo = %v; want %v", got, want)
	}
	if s := describeAdded(got); s != "1 disables (E3), 1 attribute clears (E1)" {
		t.Fatalf("describeAdded = %q", s)
	}
}
