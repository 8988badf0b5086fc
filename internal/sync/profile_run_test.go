package sync_test

import (
	"fmt"
	"log/slog"
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
