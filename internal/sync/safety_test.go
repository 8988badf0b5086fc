package sync_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// TestBudgetBlocksMassDisable: a source that suddenly loses many users
// (a broken view, an empty HR export) must not disable them; the plan is
// stored for review and nothing is written until an operator approves it.
func TestBudgetBlocksMassDisable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	e.insert(e.people(100, 1)...)
	e.run(esync.RunOptions{}, store.RunSucceeded)

	e.job.Budget.Disables = config.Bound{MaxCount: 10, MaxPercent: 50}
	e.job.Budget.PercentFloor = 10
	e.exec(`DELETE FROM entraprov.desired_users WHERE external_id <= 'E000030'`)
	e.exec(`UPDATE entraprov.desired_users SET job_title = 'Changed' WHERE external_id = 'E000050'`)
	e.sim.ResetCounters()
	r := e.run(esync.RunOptions{}, store.RunBlocked)
	if w := e.sim.Counters().Writes; w != 0 {
		t.Fatalf("a blocked run wrote %d times", w)
	}
	if !strings.Contains(r.ErrorSummary, "30 disables of 100 managed users (30.0%) exceed jobs[hr].change_budget.disables (max_count 10, max_percent 50; percent bounds apply above 10 users): at most 10") ||
		!strings.Contains(r.ErrorSummary, fmt.Sprintf("`worker sync --job hr --approve %d`", r.ID)) {
		t.Fatalf("summary %q; want the numbers and how to approve", r.ErrorSummary)
	}
	planned := e.ops(r.ID, store.OpPlanned)
	disables := 0
	for _, o := range planned {
		if o.Action == "disable" {
			disables++
		}
	}
	if disables != 30 || len(planned) != 31 {
		t.Fatalf("plan has %d operations, %d disables; want 31 and 30", len(planned), disables)
	}
	for _, u := range e.live() {
		if !u.AccountEnabled {
			t.Fatalf("%s disabled by a blocked run", u.UserPrincipalName)
		}
	}

	// Below the count bound but above the percentage: still blocked.
	e.job.Budget.Disables = config.Bound{MaxPercent: 20}
	r = e.run(esync.RunOptions{}, store.RunBlocked)

	// Approved: the reviewed plan is applied, and the run says so.
	a := e.run(esync.RunOptions{Approve: r.ID}, store.RunSucceeded)
	if a.Counts.ByAction["disable"] != 30 || a.Counts.ByAction["update"] != 1 || a.Counts.ApprovedRun != int(r.ID) {
		t.Fatalf("counts %v; want 30 disables, the update and approved_run %d", a.Counts, r.ID)
	}
}

// malformation is one way a source row can be wrong, with the message the
// operator must see for it.
type malformation struct {
	kind string
	edit func(p *person, i int, domain string)
	want string
}

var malformations = []malformation{
	{"missing upn", func(p *person, i int, d string) { p.UPN = "" }, "user_principal_name: missing"},
	{"upn without at", func(p *person, i int, d string) { p.UPN = fmt.Sprintf("bad%d.%s", i, d) }, "not of the form alias@domain"},
	{"upn with accent", func(p *person, i int, d string) { p.UPN = fmt.Sprintf("josé%d@%s", i, d) }, "character 'é' is not allowed in the alias"},
	{"upn with space", func(p *person, i int, d string) { p.UPN = fmt.Sprintf("jo se%d@%s", i, d) }, "character ' ' is not allowed in the alias"},
	{"upn alias too long", func(p *person, i int, d string) { p.UPN = fmt.Sprintf("%s%04d@%s", strings.Repeat("a", 62), i, d) }, "the alias is 66 characters; at most 64"},
	{"upn double dot", func(p *person, i int, d string) { p.UPN = fmt.Sprintf("a..b%d@%s", i, d) }, "two dots in a row"},
	{"domain not allowed", func(p *person, i int, d string) { p.UPN = fmt.Sprintf("x%d@fabrikam.com", i) }, `domain "fabrikam.com" is not allowed for job hr`},
	{"bad domain", func(p *person, i int, d string) { p.UPN = fmt.Sprintf("x%d@contoso_example", i) }, `"contoso_example" is not a valid domain name`},
	{"duplicate upn", func(p *person, i int, d string) { p.UPN = fmt.Sprintf("twin%d@%s", i/2, d) }, "another source row of job hr wants the same UPN"},
	{"missing display name", func(p *person, i int, d string) { p.DisplayName = "" }, "display_name: missing"},
	{"display name too long", func(p *person, i int, d string) { p.DisplayName = strings.Repeat("D", 300) }, "display_name: 300 characters; Graph allows at most 256"},
	{"mail nickname bad char", func(p *person, i int, d string) { p.MailNickname = fmt.Sprintf("nick name%d", i) }, "mail_nickname \"nick name"},
	{"mail nickname too long", func(p *person, i int, d string) { p.MailNickname = strings.Repeat("n", 70) }, "mail_nickname: 70 characters; Graph allows at most 64"},
	{"given name too long", func(p *person, i int, d string) { p.GivenName = strings.Repeat("g", 65) }, "given_name: 65 characters; Graph allows at most 64"},
	{"job title too long", func(p *person, i int, d string) { p.JobTitle = strings.Repeat("j", 129) }, "job_title: 129 characters; Graph allows at most 128"},
	{"employee id too long", func(p *person, i int, d string) { p.EmployeeID = strings.Repeat("9", 20) }, "employee_id: 20 characters; Graph allows at most 16"},
	{"control character", func(p *person, i int, d string) { p.Department = "R&D\tOps" }, "department: contains a control character"},
	{"bad usage location", func(p *person, i int, d string) { p.UsageLocation = "ZZ" }, `usage_location "ZZ": not an ISO 3166-1 alpha-2 country code`},
	{"group not a guid", func(p *person, i int, d string) { p.Groups = []string{"Sales Team"} }, `groups: "Sales Team" is not a group object id`},
	{"manager not in source", func(p *person, i int, d string) { p.Manager = "NOBODY" }, `manager_external_id "NOBODY": no user with this external_id is provisioned by job hr`},
}

// TestMalformedRows: 100 bad rows of 20 kinds among 200 good ones (a
// self-manager is not one: it means no manager, issue 19). Every bad row
// fails on its own with its own message; every good row is provisioned;
// the run is partial, not failed.
func TestMalformedRows(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	good := e.people(200, 1)
	bad := e.people(100, 1001)
	want := map[string]string{}
	// Duplicate UPNs need pairs: give that kind an even share.
	for i := range bad {
		m := malformations[i%len(malformations)]
		m.edit(&bad[i], i/len(malformations)*2+(i%2), e.seeded.Domain)
		if m.kind == "duplicate upn" {
			m.edit(&bad[i], i/len(malformations), e.seeded.Domain)
		}
		want[bad[i].ExternalID] = m.want
	}
	// The duplicate-UPN rows must come in pairs.
	fixPairs(bad, e.seeded.Domain)
	e.insert(append(good, bad...)...)

	r := e.run(esync.RunOptions{}, store.RunPartial)
	failed := e.ops(r.ID, store.OpFailed)
	byUser := map[string][]store.Operation{}
	for _, o := range failed {
		byUser[o.ExternalID] = append(byUser[o.ExternalID], o)
	}
	for xid, msg := range want {
		ops := byUser[xid]
		if len(ops) != 1 || !strings.Contains(ops[0].Message, msg) {
			t.Errorf("%s: failed operations %+v; want one containing %q", xid, ops, msg)
		}
	}
	if len(byUser) != len(want) {
		t.Errorf("%d users failed; want %d", len(byUser), len(want))
	}
	// None of them reached Graph: quarantine must not count them.
	if r.Counts.FailedUnsent != len(failed) || r.Counts.ByStatus[store.OpFailed] != len(failed) {
		t.Errorf("counts failed %d, failed_unsent %d; want both %d (no bad row is sent)",
			r.Counts.ByStatus[store.OpFailed], r.Counts.FailedUnsent, len(failed))
	}
	live := e.live()
	for _, p := range good {
		if _, ok := live[strings.ToLower(p.UPN)]; !ok {
			t.Fatalf("valid user %s not provisioned", p.UPN)
		}
	}
	// The one kind that fails after provisioning still has its user.
	managerRows := 0
	for _, msg := range want {
		if strings.Contains(msg, "manager_external_id") {
			managerRows++
		}
	}
	if n := len(live); n != 200+managerRows {
		t.Fatalf("directory holds %d users; want %d", n, 200+managerRows)
	}
}

// fixPairs makes the duplicate-UPN rows share UPNs two by two.
func fixPairs(bad []person, domain string) {
	var dups []int
	for i := range bad {
		if malformations[i%len(malformations)].kind == "duplicate upn" {
			dups = append(dups, i)
		}
	}
	for k, i := range dups {
		bad[i].UPN = fmt.Sprintf("twin%d@%s", k/2, domain)
	}
	if len(dups)%2 == 1 { // an odd one out shares with the first
		bad[dups[len(dups)-1]].UPN = bad[dups[0]].UPN
	}
}
