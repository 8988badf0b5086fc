package main

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/entraprov/entraprov/internal/store"
)

// A run and `worker check` judge a tenant's consent against the same
// requirement (directory.RequiredPermissions): an app lacking a permission
// the job's source calls for is "missing roles", naming it, whichever of
// the two signed in last. Before, a run judged users and groups only and
// turned check's "missing User-LifeCycleInfo.ReadWrite.All" into "ok".
func TestRunAndCheckRecordTheSameMissingRoles(t *testing.T) {
	const lifeCycle = "User-LifeCycleInfo.ReadWrite.All"
	tests := []struct {
		name    string
		roles   []string
		row     string // one desired user, in the column list below
		missing []string
	}{
		{"leave_date_owned_without_life_cycle", []string{permUsers},
			`'E1', 'a@contoso.example', 'A', '2027-01-31 18:00Z', '{}'`, []string{lifeCycle}},
		{"groups_without_group_member", []string{permUsers, lifeCycle},
			`'E1', 'a@contoso.example', 'A', NULL, '{11111111-1111-1111-1111-111111111111}'`, []string{permGroups}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newCheckEnv(t, tt.roles)
			st := openStore(t, env.dbURL)
			execSQL(t, st, `INSERT INTO entraprov.desired_users (external_id, user_principal_name, display_name, employee_leave_date_time, groups)
VALUES (`+tt.row+`)`)
			// recorded fails the test unless `worker tenants` shows the
			// job missing tt.missing, from a sign-in by by.
			recorded := func(by string) {
				t.Helper()
				out, errOut, err := runWorker(t, "tenants", "--config", env.cfgPath, "--json")
				if err != nil {
					t.Fatalf("worker tenants: %v\n%s", err, errOut)
				}
				var list []tenantJSON
				if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 {
					t.Fatalf("worker tenants --json: %v\n%s", err, out)
				}
				tn := list[0]
				if tn.State != tenantMissing || tn.SignIn == nil || tn.SignIn.By != by || !slices.Equal(tn.SignIn.Missing, tt.missing) {
					t.Fatalf("after %s: %+v %+v; want %q, missing %v", by, tn, tn.SignIn, tenantMissing, tt.missing)
				}
			}

			rep, code, out := runCheckJSON(t, "--config", env.cfgPath)
			if perm := findCheck(rep, "permissions"); code == exitOK || !slices.Equal(perm.Missing, tt.missing) {
				t.Fatalf("check: exit %d, permissions %+v; want missing %v\n%s", code, perm, tt.missing, out)
			}
			recorded(store.ConsentByCheck)

			// The run fails or not on Graph's 403 (that is its own
			// business); what it records of the tenant must agree.
			out, errOut, err := runWorker(t, "sync", "--job", "staff", "--config", env.cfgPath)
			t.Logf("sync: exit %d\n%s%s", exitCodeOf(err), out, errOut)
			recorded(store.ConsentByRun)
		})
	}
}
