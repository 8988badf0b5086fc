package store_test

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/profile"
	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/testdb"
)

// A user's view with a missing column or a wrong type is reported at start,
// naming every offending column and the type wanted.
func TestCheckSource(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := ctxT(t)
	exec(t, st, `CREATE SCHEMA hr`)
	exec(t, st, `CREATE VIEW hr.missing_cols AS
		SELECT external_id, user_principal_name, given_name, surname, job_title, department,
		       office_location, company_name, employee_id, employee_type, usage_location, mobile_phone,
		       account_enabled, manager_external_id
		  FROM entraprov.desired_users`) // no display_name (required), no groups
	exec(t, st, `CREATE VIEW hr.wrong_types AS
		SELECT 1::int AS external_id, user_principal_name, display_name, mail_nickname, given_name, surname,
		       job_title, department, office_location, company_name, employee_id, employee_type, usage_location,
		       mobile_phone, 'yes'::text AS account_enabled, manager_external_id, groups
		  FROM entraprov.desired_users`)
	exec(t, st, `CREATE TABLE hr."Entra Users" (LIKE entraprov.desired_users)`)
	exec(t, st, `CREATE DOMAIN hr.upn AS varchar(256)`)
	exec(t, st, `CREATE VIEW hr.compatible AS
		SELECT external_id::varchar(20) AS external_id, user_principal_name::hr.upn AS user_principal_name,
		       display_name, mail_nickname, given_name, surname, job_title, department, office_location,
		       company_name, employee_id, employee_type, usage_location, mobile_phone, account_enabled,
		       manager_external_id, groups::varchar[] AS groups, 42 AS extra
		  FROM entraprov.desired_users`)

	tests := []struct {
		name     string
		relation string
		want     []string // substrings of the error; none: no error
	}{
		{"default_table_matches", "entraprov.desired_users", nil},
		{"quoted_mixed_case_name", `hr.Entra Users`, nil},
		{"compatible_types_and_extra_columns", "hr.compatible", nil},
		{"missing_columns_are_named", "hr.missing_cols", []string{"missing column display_name (text)", "missing column groups (text[])"}},
		{"wrong_types_are_named_with_expected_type", "hr.wrong_types", []string{
			"column external_id has type integer; want text",
			"column account_enabled has type text; want boolean",
		}},
		{"unknown_relation", "hr.nope", []string{"hr.nope", "does not exist"}},
		{"malformed_name", "a.b.c", []string{"schema.name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := st.CheckSource(ctx, tt.relation)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("CheckSource(%s) = %v; want nil", tt.relation, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckSource(%s) = nil; want error containing %q", tt.relation, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("CheckSource(%s) = %q; want it to contain %q", tt.relation, err, w)
				}
			}
		})
	}
	// A compatible view streams: casts happen in the query.
	exec(t, st, `INSERT INTO entraprov.desired_users (external_id, user_principal_name, groups) VALUES ('E1', 'a@x.test', '{g1}')`)
	var got []store.SourceRow
	if err := st.StreamSource(ctx, "j", "hr.compatible", func(r store.SourceRow) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Desired.UPN() != "a@x.test" || got[0].Desired.Groups[0] != "g1" {
		t.Fatalf("stream of compatible view = %+v", got)
	}
}

// InspectSource says a job manages group memberships when a source row
// wants groups, or a link of the job records groups applied earlier (to be
// removed): `worker check` and a run then require GroupMember.ReadWrite.All.
func TestInspectSourceGroups(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := ctxT(t)
	src := "entraprov.desired_users"
	groups := func(job, relation string) (bool, error) {
		t.Helper()
		facts, err := st.InspectSource(ctx, job, relation, profile.Default)
		return facts.Groups, err
	}
	if uses, err := groups("hr", src); err != nil || uses {
		t.Fatalf("empty source: %v, %v", uses, err)
	}
	exec(t, st, `INSERT INTO entraprov.desired_users (external_id, user_principal_name, display_name) VALUES ('E1', 'a@x.example', 'A')`)
	if uses, err := groups("hr", src); err != nil || uses {
		t.Fatalf("no groups anywhere: %v, %v", uses, err)
	}
	exec(t, st, `INSERT INTO entraprov.directory_links (job, external_id, object_id, state, groups) VALUES ('hr', 'E9', 'o9', 'active', ARRAY['g1'])`)
	if uses, err := groups("hr", src); err != nil || !uses {
		t.Fatalf("groups in links: %v, %v", uses, err)
	}
	if uses, _ := groups("other", src); uses {
		t.Error("another job's links count for this job")
	}
	exec(t, st, `UPDATE entraprov.desired_users SET groups = ARRAY['g2']`)
	if uses, err := groups("other", src); err != nil || !uses {
		t.Fatalf("groups in the source: %v, %v", uses, err)
	}
	if _, err := groups("hr", "a.b.c"); err == nil {
		t.Error("a bad relation name was accepted")
	}
}

// The stream is the FULL OUTER JOIN the planner needs: ordered by external
// id, each side nil when absent, candidates only for unlinked rows, managers
// resolved through links, duplicate UPNs flagged on every row sharing one.
func TestStreamSource(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := ctxT(t)
	exec(t, st, `INSERT INTO entraprov.desired_users
		(external_id, user_principal_name, display_name, employee_id, account_enabled, manager_external_id, groups) VALUES
		('E05', 'boss@x.test',   'Boss',   NULL,  true,  NULL,  '{}'),
		('E01', 'alice@x.test',  'Alice',  '1001', true, 'E05', '{g1,g2}'),
		('E03', 'NEW@x.test',    'New',    NULL,  true,  'E99', '{}'),
		('E04', 'emp@x.test',    'ByEmp',  '4444', false, NULL, '{}'),
		('E06', 'dup@x.test',    'Dup1',   NULL,  true,  NULL,  '{}'),
		('E07', 'DUP@x.test',    'Dup2',   NULL,  true,  NULL,  '{}'),
		('E08', 'creating@x.test', 'Cr',   NULL,  true,  NULL,  '{}'),
		('E10', NULL,            NULL,     NULL,  true,  NULL,  '{}'),
		('E11', NULL,            NULL,     NULL,  true,  NULL,  '{}')`)
	now := time.Now()
	err := st.UpsertLinks(ctx, []store.Link{
		{Job: "j", ExternalID: "E01", ObjectID: "o-alice", State: store.LinkActive, Groups: []string{"g1"}, AppliedHash: "h"},
		{Job: "j", ExternalID: "E02", ObjectID: "o-leaver", State: store.LinkActive},                   // left the source
		{Job: "j", ExternalID: "E05", ObjectID: "o-boss", State: store.LinkActive},                     // not in mirror
		{Job: "j", ExternalID: "E08", State: store.LinkCreating, UserPrincipalName: "creating@x.test"}, // create in flight
		{Job: "j", ExternalID: "E09", ObjectID: "o-gone", State: store.LinkDisabled, DisabledAt: &now}, // leaver, disabled
		{Job: "other", ExternalID: "E03", ObjectID: "o-other-job", State: store.LinkActive},            // another job's link
		{Job: "other", ExternalID: "E05", ObjectID: "o-boss-other", State: store.LinkActive},           // another job's manager
	})
	if err != nil {
		t.Fatal(err)
	}
	err = st.UpsertDirectoryUsers(ctx, "j", []store.DirectoryUser{
		{Attrs: profile.Of(profile.UserPrincipalName, "alice@x.test", profile.DisplayName, "Alice Old"), ObjectID: "o-alice", AccountEnabled: true},
		{Attrs: profile.Of(profile.UserPrincipalName, "leaver@x.test"), ObjectID: "o-leaver", AccountEnabled: true},
		{Attrs: profile.Of(profile.UserPrincipalName, "new@x.test"), ObjectID: "o-new-match", AccountEnabled: true},          // unlinked, same UPN as E03
		{Attrs: profile.Of(profile.UserPrincipalName, "someone@x.test", profile.EmployeeID, "4444"), ObjectID: "o-emp"},      // unlinked, same employeeId as E04
		{Attrs: profile.Of(profile.UserPrincipalName, "ALICE@x.test", profile.EmployeeID, "1001"), ObjectID: "o-alice-twin"}, // would match E01, but E01 is linked
		{Attrs: profile.Of(profile.UserPrincipalName, "creating@x.test"), ObjectID: "o-created", AccountEnabled: true},       // the in-flight create landed
	})
	if err != nil {
		t.Fatal(err)
	}
	// Another job's mirror never provides candidates.
	if err := st.UpsertDirectoryUsers(ctx, "other", []store.DirectoryUser{{Attrs: profile.Of(profile.UserPrincipalName, "emp@x.test"), ObjectID: "o-x"}}); err != nil {
		t.Fatal(err)
	}

	rows := map[string]store.SourceRow{}
	var order []string
	err = st.StreamSource(ctx, "j", "entraprov.desired_users", func(r store.SourceRow) error {
		rows[r.ExternalID] = r
		order = append(order, r.ExternalID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantOrder := "E01 E02 E03 E04 E05 E06 E07 E08 E09 E10 E11"
	if got := strings.Join(order, " "); got != wantOrder {
		t.Fatalf("order = %s; want %s", got, wantOrder)
	}

	t.Run("linked_user_has_all_three_sides", func(t *testing.T) {
		r := rows["E01"]
		if r.Desired == nil || r.Link == nil || r.Current == nil || r.Candidate != nil {
			t.Fatalf("E01 sides = %v %v %v %v", r.Desired != nil, r.Link != nil, r.Current != nil, r.Candidate != nil)
		}
		if r.Desired.Get(profile.DisplayName) != "Alice" || r.Current.Get(profile.DisplayName) != "Alice Old" || r.Link.ObjectID != "o-alice" ||
			r.Link.Job != "j" || r.Link.ExternalID != "E01" || !slices.Equal(r.Desired.Groups, []string{"g1", "g2"}) || !slices.Equal(r.Link.Groups, []string{"g1"}) ||
			r.Desired.Get(profile.EmployeeID) != "1001" || r.Desired.Get(profile.MailNickname) != "" {
			t.Fatalf("E01 = %+v / %+v / %+v", r.Desired, r.Link, r.Current)
		}
		if r.ManagerObjectID != "o-boss" {
			t.Fatalf("E01 manager = %q; want o-boss (E05's link in this job)", r.ManagerObjectID)
		}
	})
	t.Run("leaver_has_no_desired_side", func(t *testing.T) {
		r := rows["E02"]
		if r.Desired != nil || r.Link == nil || r.Current == nil || r.Current.UPN() != "leaver@x.test" {
			t.Fatalf("E02 = %+v", r)
		}
		r = rows["E09"]
		if r.Desired != nil || r.Link == nil || r.Current != nil || r.Link.DisabledAt == nil || r.Link.State != store.LinkDisabled {
			t.Fatalf("E09 = %+v", r)
		}
	})
	t.Run("new_user_gets_candidate_by_upn_case_insensitively", func(t *testing.T) {
		r := rows["E03"]
		if r.Link != nil || r.Current != nil || r.Candidate == nil || r.Candidate.ObjectID != "o-new-match" {
			t.Fatalf("E03 = link %v current %v candidate %+v", r.Link, r.Current, r.Candidate)
		}
		if r.ManagerObjectID != "" {
			t.Fatalf("E03 manager = %q; want empty (E99 not provisioned)", r.ManagerObjectID)
		}
	})
	t.Run("new_user_gets_candidate_by_employee_id", func(t *testing.T) {
		r := rows["E04"]
		if r.Candidate == nil || r.Candidate.ObjectID != "o-emp" || r.Desired.AccountEnabled {
			t.Fatalf("E04 = %+v candidate %+v", r.Desired, r.Candidate)
		}
	})
	t.Run("linked_user_without_mirror_row", func(t *testing.T) {
		r := rows["E05"]
		if r.Desired == nil || r.Link == nil || r.Current != nil || r.Candidate != nil {
			t.Fatalf("E05 = %+v", r)
		}
	})
	t.Run("duplicate_upn_flags_both_rows_only", func(t *testing.T) {
		if !rows["E06"].DuplicateUPN || !rows["E07"].DuplicateUPN {
			t.Fatal("E06/E07 share a UPN (case-insensitively) and must both be flagged")
		}
		for _, id := range []string{"E01", "E03", "E10", "E11"} {
			if rows[id].DuplicateUPN {
				t.Fatalf("%s flagged as duplicate UPN (NULL UPNs are not duplicates)", id)
			}
		}
	})
	t.Run("creating_link_gets_candidate_of_landed_create", func(t *testing.T) {
		r := rows["E08"]
		if r.Link == nil || r.Link.State != store.LinkCreating || r.Link.ObjectID != "" || r.Current != nil ||
			r.Candidate == nil || r.Candidate.ObjectID != "o-created" {
			t.Fatalf("E08 = link %+v candidate %+v", r.Link, r.Candidate)
		}
	})
	t.Run("attributes_arrive_in_canonical_packed_form", func(t *testing.T) {
		// Streamed Values equal profile.Pack's form (no separators for
		// empty trailing attributes), whichever side they come from.
		for _, c := range []struct {
			name      string
			got, want profile.Values
		}{
			{"E01 desired", rows["E01"].Desired.Attrs, profile.Of(profile.UserPrincipalName, "alice@x.test", profile.DisplayName, "Alice", profile.EmployeeID, "1001")},
			{"E01 mirror", rows["E01"].Current.Attrs, profile.Of(profile.UserPrincipalName, "alice@x.test", profile.DisplayName, "Alice Old")},
			{"E04 candidate", rows["E04"].Candidate.Attrs, profile.Of(profile.UserPrincipalName, "someone@x.test", profile.EmployeeID, "4444")},
			{"E10 desired", rows["E10"].Desired.Attrs, profile.Values{}},
		} {
			if c.got != c.want {
				t.Errorf("%s Attrs = %q; want %q", c.name, c.got.String(), c.want.String())
			}
		}
	})
	t.Run("null_columns_are_empty_strings", func(t *testing.T) {
		r := rows["E10"]
		if r.Desired == nil || r.Desired.UPN() != "" || r.Desired.Groups == nil || len(r.Desired.Groups) != 0 {
			t.Fatalf("E10 = %+v", r.Desired)
		}
	})

	// Early stop is not an error.
	n := 0
	err = st.StreamSource(ctx, "j", "entraprov.desired_users", func(store.SourceRow) error {
		n++
		if n == 2 {
			return store.ErrStopStream
		}
		return nil
	})
	if err != nil || n != 2 {
		t.Fatalf("stop after 2 = %d, %v", n, err)
	}
	// A callback error ends the stream and comes back unchanged.
	boom := errors.New("boom")
	if err := st.StreamSource(ctx, "j", "entraprov.desired_users", func(store.SourceRow) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("callback error = %v; want boom", err)
	}
}

// BenchmarkStreamSource streams a 100k-row source generated with
// generate_series and reports throughput and allocation per row; memory is
// flat because rows are read one at a time (peak-heap-MiB stays a few MiB
// whatever the row count). first_run: nothing linked yet (every row looks
// for an adoption candidate); steady_state: every user linked and mirrored,
// the nightly case; rekey_all: every link under the lower-case of its
// source id (HR re-keyed everyone), so every row is paired with its old
// link (issue 19).
func BenchmarkStreamSource(b *testing.B) {
	const users = 100_000
	st := testdb.New(b)
	ctx := ctxT(b)
	// The whole profile populated (issue 15): every attribute column of
	// the table holds a value, in the source and in the mirror.
	exec(b, st, `INSERT INTO entraprov.desired_users
		(external_id, user_principal_name, display_name, given_name, surname, job_title, department,
		 employee_id, usage_location, account_enabled, manager_external_id, groups,
		 employee_hire_date, employee_leave_date_time, division, cost_center, street_address, city, state,
		 postal_code, country, business_phones, fax_number, other_mails, preferred_language,
		 extension_attribute_1, extension_attribute_2, extension_attribute_3, extension_attribute_4)
		SELECT format('E%s', lpad(i::text, 7, '0')), format('user%s@contoso.test', i), format('User %s', i),
		       'Given', format('Surname%s', i), 'Engineer', 'R&D', i::text, 'FR', true,
		       format('E%s', lpad((i / 10 + 1)::text, 7, '0')), ARRAY['0f5c9c1e-6f9a-4a41-a1f1-3e0e0d1e2f30'],
		       '2024-01-01'::timestamptz + i * interval '1 hour', NULL, 'Retail', format('CC-%s', i % 50),
		       format('%s Rue de Rivoli', i % 200), 'Paris', 'IDF', '75001', 'France',
		       ARRAY[format('+33 1 %s', lpad(i::text, 8, '0'))], NULL, ARRAY[format('user%s@example.org', i)], 'fr-FR',
		       format('badge-%s', i), 'Site A', 'Floor 3', 'Contract'
		  FROM generate_series(1, $1) AS i`, users)
	exec(b, st, `INSERT INTO entraprov.directory_links (job, external_id, object_id, user_principal_name, state, applied_hash, groups)
		SELECT 'steady', external_id, 'obj-' || external_id, user_principal_name, 'active', md5(external_id), groups
		  FROM entraprov.desired_users`)
	exec(b, st, `INSERT INTO entraprov.directory_users (job, object_id, user_principal_name, display_name, given_name, surname,
		       job_title, department, employee_id, usage_location, account_enabled, profile)
		SELECT 'steady', 'obj-' || external_id, user_principal_name, display_name, given_name, surname,
		       job_title, department, employee_id, usage_location, true,
		       jsonb_build_object('employeeHireDate', to_char(employee_hire_date AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
		           'employeeOrgData.division', division, 'employeeOrgData.costCenter', cost_center,
		           'streetAddress', street_address, 'city', city, 'state', state, 'postalCode', postal_code,
		           'country', country, 'businessPhones', array_to_string(business_phones, chr(31)),
		           'otherMails', array_to_string(other_mails, chr(31)), 'preferredLanguage', preferred_language,
		           'onPremisesExtensionAttributes.extensionAttribute1', extension_attribute_1,
		           'onPremisesExtensionAttributes.extensionAttribute2', extension_attribute_2,
		           'onPremisesExtensionAttributes.extensionAttribute3', extension_attribute_3,
		           'onPremisesExtensionAttributes.extensionAttribute4', extension_attribute_4)
		  FROM entraprov.desired_users`)
	exec(b, st, `INSERT INTO entraprov.directory_links (job, external_id, object_id, user_principal_name, state, applied_hash, groups)
		SELECT 'rekey_all', lower(external_id), 'rk-' || object_id, user_principal_name, state, applied_hash, groups
		  FROM entraprov.directory_links WHERE job = 'steady'`)
	// Its own objects: one link per object across jobs (migration 009).
	exec(b, st, `INSERT INTO entraprov.directory_users SELECT 'rekey_all', 'rk-' || object_id, user_principal_name, display_name, mail_nickname,
		       given_name, surname, job_title, department, office_location, company_name, employee_id, employee_type,
		       usage_location, mobile_phone, mail, account_enabled, manager_object_id, deleted, updated_at, manager_known, profile
		  FROM entraprov.directory_users WHERE job = 'steady'`)
	exec(b, st, `ANALYZE`)

	for _, job := range []string{"first_run", "steady", "rekey_all"} {
		b.Run(job, func(b *testing.B) {
			var peak uint64
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				n := 0
				err := st.StreamSource(ctx, job, "entraprov.desired_users", func(r store.SourceRow) error {
					n++
					if job == "rekey_all" && r.RekeyFrom != strings.ToLower(r.ExternalID) {
						return fmt.Errorf("row %s: RekeyFrom %q; want its lower-case id", r.ExternalID, r.RekeyFrom)
					}
					if n%20_000 == 0 {
						var ms runtime.MemStats
						runtime.ReadMemStats(&ms)
						peak = max(peak, ms.HeapInuse)
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				if n != users {
					b.Fatalf("streamed %d rows; want %d", n, users)
				}
			}
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			rows := float64(users) * float64(b.N)
			b.ReportMetric(rows/elapsed.Seconds(), "rows/s")
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/rows, "B/row")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/rows, "allocs/row")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		})
	}
}
