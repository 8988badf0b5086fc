package sync_test

import (
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/entraprov/entraprov/internal/audit"
	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/profile"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// fullProfile is a value for every built-in attribute column beyond the 13
// people() fills, as SQL literals.
var fullProfile = map[string]string{
	"employee_hire_date": `'2026-03-02 08:00:00+01'`, "employee_leave_date_time": `'2027-03-31 18:00:00Z'`,
	"division": `'Retail'`, "cost_center": `'CC-1042'`, "street_address": `'1 Rue de Rivoli'`, "city": `'Paris'`,
	"state": `'IDF'`, "postal_code": `'75001'`, "country": `'France'`, "business_phones": `'{"+33 1 23 45 67 89"}'`,
	"fax_number": `'+33 1 23 45 67 00'`, "other_mails": `'{ada@example.org,Ada.L@example.net}'`,
	"preferred_language": `'fr-FR'`, "mobile_phone": `'+33 6 12 34 56 78'`, "office_location": `'Paris 1'`,
	"employee_type": `'Employee'`, "mail_nickname": `'ada.l'`,
}

func init() {
	for i := 1; i <= 15; i++ {
		fullProfile[fmt.Sprintf("extension_attribute_%d", i)] = fmt.Sprintf("'ext %d'", i)
	}
}

// fill sets every profile column the table has for externalID.
func (e *env) fill(externalID string) {
	e.t.Helper()
	var sets []string
	for _, a := range profile.Builtin {
		if v, ok := fullProfile[a.Column]; ok {
			sets = append(sets, a.Column+" = "+v)
		}
	}
	e.exec(`UPDATE entraprov.desired_users SET `+strings.Join(sets, ", ")+` WHERE external_id = $1`, externalID)
}

// auditClean fails the test unless a live audit of the job finds nothing.
func (e *env) auditClean() {
	e.t.Helper()
	c, err := e.Client(e.ctx, e.job, slog.New(slog.DiscardHandler))
	if err != nil {
		e.t.Fatal(err)
	}
	rep, err := audit.Run(e.ctx, e.st, c, e.job, audit.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	if !rep.Clean() {
		e.t.Fatalf("audit findings: %+v", rep.Findings)
	}
}

// TestProfileRoundTrip (issue 15): a source with every attribute is
// written to the directory, read back through delta into the mirror, and
// compares equal: the next run writes nothing and the audit is clean.
func TestProfileRoundTrip(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	// employeeLeaveDateTime needs more than User.ReadWrite.All.
	e.sim.Consent(e.seeded.TenantID, e.seeded.ClientID, "User-LifeCycleInfo.ReadWrite.All")
	ps := e.people(2, 1)
	e.insert(ps...)
	e.fill(ps[0].ExternalID)
	e.run(esync.RunOptions{}, store.RunSucceeded)

	u := e.mustLive(ps[0].UPN)
	want := map[string]any{"city": "Paris", "preferredLanguage": "fr-FR", "postalCode": "75001", "faxNumber": "+33 1 23 45 67 00"}
	for k, v := range want {
		if got := u.Properties[k]; got != v {
			t.Errorf("directory %s = %v; want %v", k, got, v)
		}
	}
	if org := fmt.Sprint(u.Properties["employeeOrgData"]); !strings.Contains(org, "Retail") || !strings.Contains(org, "CC-1042") {
		t.Errorf("directory employeeOrgData = %s", org)
	}
	ext, _ := u.Properties["onPremisesExtensionAttributes"].(map[string]any)
	for _, a := range profile.Builtin {
		if a.Parent() != "onPremisesExtensionAttributes" {
			continue
		}
		if got, want := ext[a.Member()], strings.Trim(fullProfile[a.Column], "'"); got != want {
			t.Errorf("directory %s = %v; want %s", a.Graph, got, want)
		}
	}
	e.quiet(store.RunSucceeded)
	e.auditClean()
}

// TestProfileOwnership (issue 15): an attribute absent from the job's view
// is another system's: changed by hand, it is left alone. A present
// column's NULL clears the property, and the clear counts against the
// change budget.
func TestProfileOwnership(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	ps := e.people(3, 1)
	e.insert(ps...)
	e.exec(`UPDATE entraprov.desired_users SET city = 'Paris', state = 'IDF'`)
	e.run(esync.RunOptions{}, store.RunSucceeded)

	// The job's view leaves city out: another system owns it from now on.
	var cols []string
	for _, a := range profile.Builtin {
		if a.Column != "city" {
			cols = append(cols, a.Column)
		}
	}
	e.exec(`CREATE VIEW entraprov.no_city AS SELECT external_id, account_enabled, manager_external_id, groups, ` +
		strings.Join(cols, ", ") + ` FROM entraprov.desired_users`)
	e.job.Source = "entraprov.no_city"
	manual(t, e, directory.Operation{Key: 1, Kind: directory.OpUpdate, ObjectID: e.user(ps[0].UPN).ID,
		Fields: map[string]any{"city": "Lyon"}})
	e.quiet(store.RunSucceeded)
	if got := e.user(ps[0].UPN).Properties["city"]; got != "Lyon" {
		t.Fatalf("city set by hand = %v after the run; want Lyon left alone", got)
	}

	// state is present: NULL clears it, and is an attribute clear. With a
	// bound of 1 clear, clearing two users' state blocks the run.
	e.job.Budget.AttributeClears = config.Bound{MaxCount: 1}
	e.exec(`UPDATE entraprov.desired_users SET state = NULL WHERE external_id IN ('E000001', 'E000002')`)
	r := e.run(esync.RunOptions{}, store.RunBlocked)
	if !strings.Contains(r.ErrorSummary, "2 attribute clears") {
		t.Fatalf("blocked run says %q; want it to count 2 attribute clears", r.ErrorSummary)
	}
	e.job.Budget.AttributeClears = config.Bound{Off: true}
	r = e.run(esync.RunOptions{}, store.RunSucceeded)
	if r.Counts.ByAction["update"] != 2 {
		t.Fatalf("counts %v; want 2 updates clearing state", r.Counts)
	}
	for _, p := range ps[:2] {
		if got, ok := e.user(p.UPN).Properties["state"]; ok && got != nil {
			t.Errorf("state of %s = %v; want cleared", p.ExternalID, got)
		}
	}
	if got := e.user(ps[2].UPN).Properties["state"]; got != "IDF" {
		t.Errorf("state of the third user = %v; want IDF kept", got)
	}
	e.quiet(store.RunSucceeded)
}

// TestSchemaExtensionRoundTrip (issue 15): a directory schema extension
// declared in the job is written from the column of its name and read back
// equal.
func TestSchemaExtensionRoundTrip(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	if _, err := e.sim.AddExtensionProperty(e.seeded.ClientID, "costCode", "String"); err != nil {
		t.Fatal(err)
	}
	e.job.SchemaExtensions = []config.SchemaExtension{{Name: "costCode", Type: "String"}}
	e.exec(`ALTER TABLE entraprov.desired_users ADD COLUMN cost_code text`)
	ps := e.people(1, 1)
	e.insert(ps...)
	e.exec(`UPDATE entraprov.desired_users SET cost_code = 'CC-7'`)
	e.run(esync.RunOptions{}, store.RunSucceeded)
	prop := "extension_" + strings.ReplaceAll(e.seeded.ClientID, "-", "") + "_costCode"
	if got := e.user(ps[0].UPN).Properties[prop]; got != "CC-7" {
		t.Fatalf("directory %s = %v; want CC-7", prop, got)
	}
	e.quiet(store.RunSucceeded)
	e.exec(`UPDATE entraprov.desired_users SET cost_code = NULL`)
	e.run(esync.RunOptions{}, store.RunSucceeded)
	if got, ok := e.user(ps[0].UPN).Properties[prop]; ok && got != nil {
		t.Fatalf("directory %s = %v after NULL; want cleared", prop, got)
	}
	e.quiet(store.RunSucceeded)
}

// unfilledMsg is the run-start log line naming the present columns a job
// does not manage because they are NULL in every row.
const unfilledMsg = "source columns present but NULL in every row: not managed until filled"

// upgradedTenant is a job on entraprov.desired_users after migration 007:
// the 13 classic columns filled, the new profile columns all NULL, and an
// app consented with User.ReadWrite.All (and GroupMember) but not
// User-LifeCycleInfo.*, so a $select or delta naming employeeLeaveDateTime
// is refused with 403. Its three users were provisioned, then someone set
// city, state and extensionAttribute1 on each by hand.
func upgradedTenant(t *testing.T) (*env, []person) {
	e := newEnv(t, graphsim.Options{})
	e.sim.RevokeConsent(e.seeded.TenantID, e.seeded.ClientID, "User-LifeCycleInfo.ReadWrite.All")
	ps := e.people(3, 1)
	e.insert(ps...)
	e.run(esync.RunOptions{}, store.RunSucceeded)
	for _, p := range ps {
		manual(t, e, directory.Operation{Key: 1, Kind: directory.OpUpdate, ObjectID: e.user(p.UPN).ID,
			Fields: map[string]any{"city": "Lyon", "state": "ARA",
				"onPremisesExtensionAttributes": map[string]any{"extensionAttribute1": "badge-" + p.ExternalID}}})
	}
	return e, ps
}

// handSet fails the test unless p's city, state and extensionAttribute1
// hold what upgradedTenant set (city: wantCity).
func (e *env) handSet(p person, wantCity string) {
	e.t.Helper()
	u := e.user(p.UPN)
	ext, _ := u.Properties["onPremisesExtensionAttributes"].(map[string]any)
	if u.Properties["city"] != nilIfEmpty(wantCity) || u.Properties["state"] != "ARA" || ext["extensionAttribute1"] != "badge-"+p.ExternalID {
		e.t.Errorf("%s: city %v, state %v, extensionAttribute1 %v; want %q, ARA, badge-%s", p.ExternalID,
			u.Properties["city"], u.Properties["state"], ext["extensionAttribute1"], wantCity, p.ExternalID)
	}
}

// TestUpgradeLeavesEmptyProfileColumnsAlone: after the upgrade, the
// columns migration 007 added to desired_users are NULL in every row. The
// job does not own them: a run writes nothing to the users whose city,
// state and extensionAttribute1 were set by hand, and neither its delta
// nor any read selects employeeLeaveDateTime (the app without
// User-LifeCycleInfo.* would get 403: the runs would fail). The run says
// once which present columns it leaves alone.
func TestUpgradeLeavesEmptyProfileColumnsAlone(t *testing.T) {
	t.Parallel()
	e, ps := upgradedTenant(t)
	before := strings.Count(e.logs.String(), unfilledMsg)
	r := e.quiet(store.RunSucceeded)
	for _, p := range ps {
		e.handSet(p, "Lyon")
	}
	if n := len(e.ops(r.ID, "")); n != 0 {
		t.Errorf("run %d recorded %d operations; want none", r.ID, n)
	}
	logs := e.logs.String()
	if n := strings.Count(logs, unfilledMsg) - before; n != 1 {
		t.Fatalf("the run logged %q %d times; want once", unfilledMsg, n)
	}
	for _, c := range []string{"employee_leave_date_time", "city", "state", "extension_attribute_1", "extension_attribute_15"} {
		if !strings.Contains(logs, c) {
			t.Errorf("the run start log does not name %s", c)
		}
	}
}

// TestFilledColumnIsOwnedAndEmptiedIsNot: filling city for one user makes
// the job own city: that user's city is written and the other users' NULL
// city clears the one set by hand (an attribute clear in the change
// budget), while state and extensionAttribute1, still NULL in every row,
// stay as set. When a broken join then empties city in every row, the job
// stops managing it: nothing is cleared, and the run start says so.
func TestFilledColumnIsOwnedAndEmptiedIsNot(t *testing.T) {
	t.Parallel()
	e, ps := upgradedTenant(t)
	e.exec(`UPDATE entraprov.desired_users SET city = 'Berlin' WHERE external_id = $1`, ps[0].ExternalID)
	r := e.run(esync.RunOptions{}, store.RunSucceeded)
	e.handSet(ps[0], "Berlin")
	for _, p := range ps[1:] {
		e.handSet(p, "")
	}
	clears := map[string]bool{}
	for _, o := range e.ops(r.ID, "") {
		if slices.Contains(esync.DestructiveKinds(esync.Action(o.Action), o.Changes), esync.KindAttributeClear) {
			clears[o.ExternalID] = true
		}
	}
	if want := map[string]bool{ps[1].ExternalID: true, ps[2].ExternalID: true}; !maps.Equal(clears, want) {
		t.Errorf("attribute clears of run %d: %v; want %v", r.ID, clears, want)
	}
	e.quiet(store.RunSucceeded)

	// The join that fed city broke: NULL in every row.
	e.exec(`UPDATE entraprov.desired_users SET city = NULL`)
	before := e.logs.String()
	r = e.quiet(store.RunSucceeded)
	e.handSet(ps[0], "Berlin")
	line := ""
	for _, l := range strings.Split(strings.TrimPrefix(e.logs.String(), before), "\n") {
		if strings.Contains(l, unfilledMsg) {
			line = l
		}
	}
	if !strings.Contains(line, `"level":"INFO"`) || !regexp.MustCompile(`"columns":"[^"]*\bcity\b`).MatchString(line) {
		t.Errorf("run %d start: %q; want an INFO line naming city", r.ID, line)
	}
}
