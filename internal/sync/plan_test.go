package sync

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/profile"
	"github.com/entraprov/entraprov/internal/store"
)

var now = time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)

const (
	oidAlice = "11111111-1111-1111-1111-111111111111"
	oidBoss  = "22222222-2222-2222-2222-222222222222"
	oidOther = "33333333-3333-3333-3333-333333333333"
	grpA     = "aaaaaaaa-0000-0000-0000-00000000000a"
	grpB     = "bbbbbbbb-0000-0000-0000-00000000000b"
	grpC     = "cccccccc-0000-0000-0000-00000000000c"
)

func policy() Policy {
	return Policy{Job: "hr", AllowedDomains: []string{"contoso.com"}, LeaverAction: LeaverDelete,
		DeleteAfter: 30 * 24 * time.Hour, AdoptBy: AdoptNone, ForceChangePassword: true}
}

func desired() *store.DesiredUser {
	return &store.DesiredUser{Attrs: profile.Of(profile.UserPrincipalName, "alice@contoso.com", profile.DisplayName, "Alice Smith", profile.GivenName, "Alice", profile.Surname, "Smith", profile.JobTitle, "Engineer", profile.Department, "R&D", profile.EmployeeID, "E1", profile.UsageLocation, "DE"), ExternalID: "E1",

		AccountEnabled: true,
	}
}

// current is the directory state matching desired().
func current() *store.DirectoryUser {
	return &store.DirectoryUser{Attrs: profile.Of(profile.UserPrincipalName, "alice@contoso.com", profile.DisplayName, "Alice Smith", profile.MailNickname, "alice", profile.GivenName, "Alice", profile.Surname, "Smith", profile.JobTitle, "Engineer", profile.Department, "R&D", profile.EmployeeID, "E1", profile.UsageLocation, "DE"), ObjectID: oidAlice,

		AccountEnabled: true,
	}
}

func link(state store.LinkState) *store.Link {
	return &store.Link{Job: "hr", ExternalID: "E1", ObjectID: oidAlice, UserPrincipalName: "alice@contoso.com", State: state}
}

func ago(d time.Duration) *time.Time { t := now.Add(-d); return &t }

// stepSummary is the part of a Step a test states.
type stepSummary struct {
	Action    Action
	Kind      directory.OpKind
	ObjectID  string
	RelatedID string
	Deferred  bool
	Failed    bool
}

func summarise(steps []Step) []stepSummary {
	var out []stepSummary
	for _, s := range steps {
		out = append(out, stepSummary{s.Action, s.Kind, s.ObjectID, s.RelatedID, s.Deferred, s.Failure != ""})
	}
	return out
}

func TestPlan(t *testing.T) {
	type check func(t *testing.T, d Decision)
	fieldsAre := func(want map[string]any) check {
		return func(t *testing.T, d Decision) {
			t.Helper()
			if !reflect.DeepEqual(d.Steps[0].Fields, want) {
				t.Errorf("fields = %v; want %v", d.Steps[0].Fields, want)
			}
		}
	}
	linkIs := func(state store.LinkState, objectID string) check {
		return func(t *testing.T, d Decision) {
			t.Helper()
			if d.Link == nil {
				t.Fatalf("no link to write; want state %s", state)
			}
			if d.Link.State != state || d.Link.ObjectID != objectID {
				t.Errorf("link = %s/%q; want %s/%q", d.Link.State, d.Link.ObjectID, state, objectID)
			}
		}
	}
	noLink := func(t *testing.T, d Decision) {
		t.Helper()
		if d.Link != nil {
			t.Errorf("unexpected link write %+v", *d.Link)
		}
	}
	failureHas := func(sub string) check {
		return func(t *testing.T, d Decision) {
			t.Helper()
			if !strings.Contains(d.Steps[0].Failure, sub) {
				t.Errorf("failure = %q; want it to contain %q", d.Steps[0].Failure, sub)
			}
		}
	}

	tests := []struct {
		name   string
		row    store.SourceRow
		policy func(*Policy)
		want   []stepSummary
		checks []check
	}{
		{
			name: "new_user_is_created_with_its_set_fields_and_a_creating_link",
			row:  store.SourceRow{ExternalID: "E1", Desired: desired()},
			want: []stepSummary{{Action: ActCreate, Kind: directory.OpCreate}},
			checks: []check{fieldsAre(map[string]any{
				"accountEnabled": true, "userPrincipalName": "alice@contoso.com", "displayName": "Alice Smith",
				"mailNickname": "alice", "givenName": "Alice", "surname": "Smith", "jobTitle": "Engineer",
				"department": "R&D", "employeeId": "E1", "usageLocation": "DE",
			}), linkIs(store.LinkCreating, "")},
		},
		{
			name: "new_user_with_manager_and_groups_defers_them_until_it_exists",
			row: store.SourceRow{ExternalID: "E1", ManagerObjectID: oidBoss, Desired: func() *store.DesiredUser {
				d := desired()
				d.ManagerExternalID, d.Groups = "B1", []string{grpA, strings.ToUpper(grpA), grpB}
				return d
			}()},
			want: []stepSummary{
				{Action: ActCreate, Kind: directory.OpCreate},
				{Action: ActManager, Deferred: true},
				{Action: ActGroupAdd, RelatedID: grpA, Deferred: true},
				{Action: ActGroupAdd, RelatedID: grpB, Deferred: true},
			},
		},
		{
			name: "unchanged_user_has_no_steps_and_no_writes",
			row:  store.SourceRow{ExternalID: "E1", Desired: desired(), Link: link(store.LinkActive), Current: current()},
			want: nil, checks: []check{noLink},
		},
		{
			name: "changed_attributes_patch_only_those_fields",
			row: store.SourceRow{ExternalID: "E1", Link: link(store.LinkActive), Current: current(), Desired: func() *store.DesiredUser {
				d := desired()
				d.Set(profile.JobTitle, "Lead Engineer")
				d.Set(profile.Department, "Platform")
				return d
			}()},
			want:   []stepSummary{{Action: ActUpdate, Kind: directory.OpUpdate, ObjectID: oidAlice}},
			checks: []check{fieldsAre(map[string]any{"jobTitle": "Lead Engineer", "department": "Platform"})},
		},
		{
			name: "emptied_attribute_is_cleared_with_null",
			row: store.SourceRow{ExternalID: "E1", Link: link(store.LinkActive), Current: current(), Desired: func() *store.DesiredUser {
				d := desired()
				d.Set(profile.JobTitle, "")
				return d
			}()},
			want:   []stepSummary{{Action: ActUpdate, Kind: directory.OpUpdate, ObjectID: oidAlice}},
			checks: []check{fieldsAre(map[string]any{"jobTitle": nil})},
		},
		{
			name: "upn_rename_patches_userPrincipalName_and_derived_mailNickname",
			row: store.SourceRow{ExternalID: "E1", Link: link(store.LinkActive), Current: current(), Desired: func() *store.DesiredUser {
				d := desired()
				d.Set(profile.UserPrincipalName, "alice.jones@contoso.com")
				return d
			}()},
			want:   []stepSummary{{Action: ActUpdate, Kind: directory.OpUpdate, ObjectID: oidAlice}},
			checks: []check{fieldsAre(map[string]any{"userPrincipalName": "alice.jones@contoso.com", "mailNickname": "alice.jones"})},
		},
		{
			name: "rename_into_a_upn_another_user_releases_parks_on_a_temporary_upn",
			row: store.SourceRow{ExternalID: "E1", Link: link(store.LinkActive), Current: current(), UPNReleasedBy: "E2", Desired: func() *store.DesiredUser {
				d := desired()
				d.Set(profile.UserPrincipalName, "bob@contoso.com")
				return d
			}()},
			want:   []stepSummary{{Action: ActUpdate, Kind: directory.OpUpdate, ObjectID: oidAlice}, {Action: ActUpdate, ObjectID: oidAlice, Deferred: true}},
			checks: []check{fieldsAre(map[string]any{"userPrincipalName": "rn-" + oidAlice + "@contoso.com", "mailNickname": "bob"})},
		},
		{
			name: "usage_location_compared_case_insensitively",
			row: store.SourceRow{ExternalID: "E1", Link: link(store.LinkActive), Current: current(), Desired: func() *store.DesiredUser {
				d := desired()
				d.Set(profile.UsageLocation, "de")
				return d
			}()},
			want: nil,
		},
		{
			name:   "leaver_is_disabled_not_deleted",
			row:    store.SourceRow{ExternalID: "E1", Link: link(store.LinkActive), Current: current()},
			want:   []stepSummary{{Action: ActDisable, Kind: directory.OpUpdate, ObjectID: oidAlice}},
			checks: []check{fieldsAre(map[string]any{"accountEnabled": false})},
		},
		{
			name: "account_enabled_false_in_source_is_a_leaver",
			row: store.SourceRow{ExternalID: "E1", Link: link(store.LinkActive), Current: current(), Desired: func() *store.DesiredUser {
				d := desired()
				d.AccountEnabled = false
				return d
			}()},
			want: []stepSummary{{Action: ActDisable, Kind: directory.OpUpdate, ObjectID: oidAlice}},
		},
		{
			name: "user_on_leave_is_disabled_even_when_leaver_action_is_ignore",
			row: store.SourceRow{ExternalID: "E1", Link: link(store.LinkActive), Current: current(), Desired: func() *store.DesiredUser {
				d := desired()
				d.AccountEnabled = false
				return d
			}()},
			policy: func(p *Policy) { p.LeaverAction = LeaverIgnore },
			want:   []stepSummary{{Action: ActDisable, Kind: directory.OpUpdate, ObjectID: oidAlice}},
		},
		{
			name: "user_on_leave_longer_than_delete_after_keeps_the_account",
			row: store.SourceRow{ExternalID: "E1", Current: func() *store.DirectoryUser { c := current(); c.AccountEnabled = false; return c }(),
				Link:    func() *store.Link { l := link(store.LinkDisabled); l.DisabledAt = ago(365 * 24 * time.Hour); return l }(),
				Desired: func() *store.DesiredUser { d := desired(); d.AccountEnabled = false; return d }()},
			want: nil, checks: []check{noLink},
		},
		{
			name: "user_on_leave_disabled_by_hand_only_records_the_link",
			row: store.SourceRow{ExternalID: "E1", Link: link(store.LinkActive), Current: func() *store.DirectoryUser { c := current(); c.AccountEnabled = false; return c }(),
				Desired: func() *store.DesiredUser { d := desired(); d.AccountEnabled = false; return d }()},
			policy: func(p *Policy) { p.LeaverAction = LeaverIgnore },
			want:   nil, checks: []check{linkIs(store.LinkDisabled, oidAlice)},
		},
		{
			name:   "leaver_is_left_alone_when_leaver_action_is_ignore",
			row:    store.SourceRow{ExternalID: "E1", Link: link(store.LinkActive), Current: current()},
			policy: func(p *Policy) { p.LeaverAction = LeaverIgnore },
			want:   nil, checks: []check{noLink},
		},
		{
			name: "disabled_leaver_is_deleted_after_the_grace_period",
			row: store.SourceRow{ExternalID: "E1", Current: func() *store.DirectoryUser { c := current(); c.AccountEnabled = false; return c }(),
				Link: func() *store.Link { l := link(store.LinkDisabled); l.DisabledAt = ago(31 * 24 * time.Hour); return l }()},
			want: []stepSummary{{Action: ActDelete, Kind: directory.OpDelete, ObjectID: oidAlice}},
		},
		{
			name: "disabled_leaver_within_the_grace_period_is_left_alone",
			row: store.SourceRow{ExternalID: "E1", Current: func() *store.DirectoryUser { c := current(); c.AccountEnabled = false; return c }(),
				Link: func() *store.Link { l := link(store.LinkDisabled); l.DisabledAt = ago(29 * 24 * time.Hour); return l }()},
			want: nil, checks: []check{noLink},
		},
		{
			name: "disabled_leaver_is_never_deleted_when_leaver_action_is_disable",
			row: store.SourceRow{ExternalID: "E1", Current: func() *store.DirectoryUser { c := current(); c.AccountEnabled = false; return c }(),
				Link: func() *store.Link { l := link(store.LinkDisabled); l.DisabledAt = ago(365 * 24 * time.Hour); return l }()},
			policy: func(p *Policy) { p.LeaverAction = LeaverDisable },
			want:   nil,
		},
		{
			name: "leaver_disabled_by_hand_starts_the_grace_period_without_a_request",
			row:  store.SourceRow{ExternalID: "E1", Link: link(store.LinkActive), Current: func() *store.DirectoryUser { c := current(); c.AccountEnabled = false; return c }()},
			want: nil, checks: []check{linkIs(store.LinkDisabled, oidAlice), func(t *testing.T, d Decision) {
				if d.Link.DisabledAt == nil || !d.Link.DisabledAt.Equal(now) {
					t.Errorf("DisabledAt = %v; want %v", d.Link.DisabledAt, now)
				}
			}},
		},
		{
			name: "leaver_soft_deleted_by_hand_is_recorded_as_deleted",
			row:  store.SourceRow{ExternalID: "E1", Link: link(store.LinkDisabled), Current: func() *store.DirectoryUser { c := current(); c.Deleted = true; return c }()},
			want: nil, checks: []check{linkIs(store.LinkDeleted, oidAlice)},
		},
		{
			name: "rehired_user_is_enabled_with_its_changed_fields",
			row: store.SourceRow{ExternalID: "E1", Current: func() *store.DirectoryUser {
				c := current()
				c.AccountEnabled = false
				c.Set(profile.JobTitle, "Old")
				return c
			}(),
				Link: func() *store.Link { l := link(store.LinkDisabled); l.DisabledAt = ago(time.Hour); return l }(), Desired: desired()},
			want:   []stepSummary{{Action: ActEnable, Kind: directory.OpUpdate, ObjectID: oidAlice}},
			checks: []check{fieldsAre(map[string]any{"accountEnabled": true, "jobTitle": "Engineer"})},
		},
		{
			name: "user_enabled_by_hand_while_wanted_only_fixes_the_link",
			row:  store.SourceRow{ExternalID: "E1", Current: current(), Link: func() *store.Link { l := link(store.LinkDisabled); l.DisabledAt = ago(time.Hour); return l }(), Desired: desired()},
			want: nil, checks: []check{linkIs(store.LinkActive, oidAlice)},
		},
		{
			name: "deleted_user_back_in_the_source_is_restored_then_followed_up",
			row: store.SourceRow{ExternalID: "E1", Current: func() *store.DirectoryUser { c := current(); c.Deleted = true; return c }(),
				Link: link(store.LinkDeleted), ManagerObjectID: oidBoss,
				Desired: func() *store.DesiredUser { d := desired(); d.ManagerExternalID = "B1"; return d }()},
			want: []stepSummary{{Action: ActRestore, Kind: directory.OpRestore, ObjectID: oidAlice}, {Action: ActManager, Deferred: true}},
		},
		{
			name: "purged_linked_user_is_created_again",
			row:  store.SourceRow{ExternalID: "E1", Link: link(store.LinkDeleted), Desired: desired()},
			want: []stepSummary{{Action: ActCreate, Kind: directory.OpCreate}}, checks: []check{linkIs(store.LinkCreating, "")},
		},
		{
			name: "unmanaged_user_with_same_upn_is_not_touched_unless_the_matching_rule_allows_adoption",
			row: store.SourceRow{ExternalID: "E1", Desired: desired(), Candidate: func() *store.DirectoryUser {
				c := current()
				c.ObjectID = oidOther
				c.Set(profile.EmployeeID, "")
				return c
			}()},
			want:   []stepSummary{{Action: ActSkip, ObjectID: oidOther, Failed: true}},
			checks: []check{noLink, failureHas("conflict: an unmanaged user (" + oidOther + ", alice@contoso.com) already has this UPN (alice@contoso.com); set matching.adopt_by or rename")},
		},
		{
			name: "unmanaged_user_with_same_upn_is_adopted_when_adopt_by_upn",
			row: store.SourceRow{ExternalID: "E1", Desired: desired(), Candidate: func() *store.DirectoryUser {
				c := current()
				c.ObjectID = oidOther
				c.Set(profile.JobTitle, "X")
				return c
			}()},
			policy: func(p *Policy) { p.AdoptBy = AdoptUPN },
			want:   []stepSummary{{Action: ActAdopt, Kind: directory.OpUpdate, ObjectID: oidOther}},
			checks: []check{fieldsAre(map[string]any{"jobTitle": "Engineer"}), noLink},
		},
		{
			name:   "matching_user_needing_no_change_is_adopted_without_a_request",
			row:    store.SourceRow{ExternalID: "E1", Desired: desired(), Candidate: func() *store.DirectoryUser { c := current(); c.ObjectID = oidOther; return c }()},
			policy: func(p *Policy) { p.AdoptBy = AdoptEmployeeID },
			want:   []stepSummary{{Action: ActAdopt, ObjectID: oidOther}},
		},
		{
			name: "unmanaged_user_with_other_employee_id_is_not_adopted_by_employee_id",
			row: store.SourceRow{ExternalID: "E1", Desired: desired(), Candidate: func() *store.DirectoryUser {
				c := current()
				c.ObjectID = oidOther
				c.Set(profile.EmployeeID, "X9")
				return c
			}()},
			policy: func(p *Policy) { p.AdoptBy = AdoptEmployeeID },
			want:   []stepSummary{{Action: ActSkip, ObjectID: oidOther, Failed: true}},
			checks: []check{failureHas("matching.adopt_by is employee_id and does not match it")},
		},
		{
			name: "soft_deleted_stranger_with_same_upn_does_not_block_a_create",
			row:  store.SourceRow{ExternalID: "E1", Desired: desired(), Candidate: func() *store.DirectoryUser { c := current(); c.ObjectID = oidOther; c.Deleted = true; return c }()},
			want: []stepSummary{{Action: ActCreate, Kind: directory.OpCreate}},
		},
		{
			name: "lost_create_is_recovered_by_linking_the_user_it_made",
			row: store.SourceRow{ExternalID: "E1", Desired: desired(), Candidate: current(),
				Link: &store.Link{ExternalID: "E1", UserPrincipalName: "alice@contoso.com", State: store.LinkCreating}},
			want: []stepSummary{{Action: ActAdopt, ObjectID: oidAlice}},
			checks: []check{func(t *testing.T, d Decision) {
				if d.Steps[0].Changes["recovered"] != true || d.Steps[0].LinkState != store.LinkActive {
					t.Errorf("step = %+v; want a recovered adoption to active", d.Steps[0])
				}
			}},
		},
		{
			name: "lost_create_that_left_nothing_is_created_again",
			row:  store.SourceRow{ExternalID: "E1", Desired: desired(), Link: &store.Link{ExternalID: "E1", UserPrincipalName: "alice@contoso.com", State: store.LinkCreating}},
			want: []stepSummary{{Action: ActCreate, Kind: directory.OpCreate}}, checks: []check{linkIs(store.LinkCreating, "")},
		},
		{
			name: "lost_create_meeting_a_stranger_is_a_conflict_not_a_recovery",
			row: store.SourceRow{ExternalID: "E1", Desired: desired(), Link: &store.Link{ExternalID: "E1", UserPrincipalName: "alice@contoso.com", State: store.LinkCreating},
				Candidate: func() *store.DirectoryUser {
					c := current()
					c.ObjectID = oidOther
					c.Set(profile.EmployeeID, "X9")
					return c
				}()},
			want: []stepSummary{{Action: ActSkip, ObjectID: oidOther, Failed: true}},
		},
		{
			name: "lost_create_of_a_user_who_left_is_recovered_and_disabled",
			row:  store.SourceRow{ExternalID: "E1", Candidate: current(), Link: &store.Link{ExternalID: "E1", UserPrincipalName: "alice@contoso.com", State: store.LinkCreating}},
			want: []stepSummary{{Action: ActDisable, Kind: directory.OpUpdate, ObjectID: oidAlice}},
		},
		{
			name: "never_provisioned_leaver_is_untouched",
			row:  store.SourceRow{ExternalID: "E1", Desired: func() *store.DesiredUser { d := desired(); d.AccountEnabled = false; return d }()},
			want: nil, checks: []check{noLink},
		},
		{
			name: "self_manager_is_no_manager_and_the_other_changes_go_through",
			row: store.SourceRow{ExternalID: "E1", Link: link(store.LinkActive), Current: func() *store.DirectoryUser { c := current(); c.Set(profile.JobTitle, "Old"); return c }(),
				Desired: func() *store.DesiredUser { d := desired(); d.ManagerExternalID = "E1"; return d }()},
			want: []stepSummary{{Action: ActUpdate, Kind: directory.OpUpdate, ObjectID: oidAlice}},
			checks: []check{fieldsAre(map[string]any{"jobTitle": "Engineer"}), func(t *testing.T, d Decision) {
				if !strings.Contains(d.Steps[0].Message, `manager_external_id "E1" names the user itself: treated as no manager`) || len(d.Notes) != 1 {
					t.Errorf("message %q, notes %q; want the self-manager noted", d.Steps[0].Message, d.Notes)
				}
			}},
		},
		{
			name: "leaver_claimed_by_a_padded_id_row_is_kept_as_is",
			row:  store.SourceRow{ExternalID: "E1", Link: link(store.LinkActive), Current: current(), ClaimedByInvalid: "'E1 '"},
			want: nil, checks: []check{noLink},
		},
		{
			name: "user_linked_by_another_job_is_never_adopted_and_the_message_names_the_job",
			row: store.SourceRow{ExternalID: "E1", Desired: desired(), Candidate: func() *store.DirectoryUser { c := current(); c.ObjectID = oidOther; return c }(),
				CandidateOwner: "contractors", CandidateOwnerID: "C7"},
			policy: func(p *Policy) { p.AdoptBy = AdoptUPN },
			want:   []stepSummary{{Action: ActSkip, ObjectID: oidOther, Failed: true}},
			checks: []check{noLink, failureHas("is managed by job contractors (external_id C7)"), func(t *testing.T, d Decision) {
				if strings.Contains(d.Steps[0].Failure, "unmanaged") {
					t.Errorf("failure %q calls a managed account unmanaged", d.Steps[0].Failure)
				}
			}},
		},
		{
			name:   "account_another_job_links_too_is_left_alone",
			row:    store.SourceRow{ExternalID: "E1", Link: link(store.LinkActive), Current: current(), SharedWith: "contractors/C7"},
			want:   []stepSummary{{Action: ActDisable, ObjectID: oidAlice, Failed: true}},
			checks: []check{noLink, failureHas("also linked by job contractors/C7")},
		},
		{
			name: "manager_is_set_when_both_users_exist",
			row: store.SourceRow{ExternalID: "E1", Link: link(store.LinkActive), Current: current(), ManagerObjectID: oidBoss,
				Desired: func() *store.DesiredUser { d := desired(); d.ManagerExternalID = "B1"; return d }()},
			want: []stepSummary{{Action: ActManager, Kind: directory.OpSetManager, ObjectID: oidAlice, RelatedID: oidBoss}},
		},
		{
			name: "manager_not_provisioned_yet_is_deferred",
			row: store.SourceRow{ExternalID: "E1", Link: link(store.LinkActive), Current: current(),
				Desired: func() *store.DesiredUser { d := desired(); d.ManagerExternalID = "B1"; return d }()},
			want: []stepSummary{{Action: ActManager, ObjectID: oidAlice, Deferred: true}},
		},
		{
			name: "manager_already_applied_needs_nothing",
			row: store.SourceRow{ExternalID: "E1", Current: current(), ManagerObjectID: oidBoss,
				Link:    func() *store.Link { l := link(store.LinkActive); l.ManagerObjectID = oidBoss; return l }(),
				Desired: func() *store.DesiredUser { d := desired(); d.ManagerExternalID = "B1"; return d }()},
			want: nil,
		},
		{
			name: "manager_cleared_in_the_source_is_removed",
			row:  store.SourceRow{ExternalID: "E1", Current: current(), Desired: desired(), Link: func() *store.Link { l := link(store.LinkActive); l.ManagerObjectID = oidBoss; return l }()},
			want: []stepSummary{{Action: ActManager, Kind: directory.OpRemoveManager, ObjectID: oidAlice}},
		},
		{
			name: "manager_removed_by_hand_is_set_again_when_the_mirror_knows_it",
			row: store.SourceRow{ExternalID: "E1", ManagerObjectID: oidBoss,
				Current: func() *store.DirectoryUser { c := current(); c.ManagerKnown = true; return c }(),
				Link:    func() *store.Link { l := link(store.LinkActive); l.ManagerObjectID = oidBoss; return l }(),
				Desired: func() *store.DesiredUser { d := desired(); d.ManagerExternalID = "B1"; return d }()},
			want: []stepSummary{{Action: ActManager, Kind: directory.OpSetManager, ObjectID: oidAlice, RelatedID: oidBoss}},
		},
		{
			name: "manager_changed_by_hand_is_set_back_when_the_mirror_knows_it",
			row: store.SourceRow{ExternalID: "E1", ManagerObjectID: oidBoss,
				Current: func() *store.DirectoryUser {
					c := current()
					c.ManagerKnown, c.ManagerObjectID = true, oidOther
					return c
				}(),
				Link:    func() *store.Link { l := link(store.LinkActive); l.ManagerObjectID = oidBoss; return l }(),
				Desired: func() *store.DesiredUser { d := desired(); d.ManagerExternalID = "B1"; return d }()},
			want: []stepSummary{{Action: ActManager, Kind: directory.OpSetManager, ObjectID: oidAlice, RelatedID: oidBoss}},
		},
		{
			name: "manager_unknown_to_the_mirror_falls_back_to_the_link_record",
			row: store.SourceRow{ExternalID: "E1", ManagerObjectID: oidBoss, Current: current(),
				Link:    func() *store.Link { l := link(store.LinkActive); l.ManagerObjectID = oidBoss; return l }(),
				Desired: func() *store.DesiredUser { d := desired(); d.ManagerExternalID = "B1"; return d }()},
			want: nil,
		},
		{
			name: "manager_the_mirror_knows_matches_though_the_link_lags",
			row: store.SourceRow{ExternalID: "E1", ManagerObjectID: oidBoss, Link: link(store.LinkActive),
				Current: func() *store.DirectoryUser {
					c := current()
					c.ManagerKnown, c.ManagerObjectID = true, oidBoss
					return c
				}(),
				Desired: func() *store.DesiredUser { d := desired(); d.ManagerExternalID = "B1"; return d }()},
			want: nil,
		},
		{
			name: "manager_set_by_hand_is_removed_when_the_source_wants_none",
			row: store.SourceRow{ExternalID: "E1", Link: link(store.LinkActive), Desired: desired(),
				Current: func() *store.DirectoryUser {
					c := current()
					c.ManagerKnown, c.ManagerObjectID = true, oidOther
					return c
				}()},
			want: []stepSummary{{Action: ActManager, Kind: directory.OpRemoveManager, ObjectID: oidAlice}},
		},
		{
			name:   "adopted_user_keeps_the_manager_it_already_has",
			policy: func(p *Policy) { p.AdoptBy = AdoptEmployeeID },
			row: store.SourceRow{ExternalID: "E1", ManagerObjectID: oidBoss,
				Candidate: func() *store.DirectoryUser {
					c := current()
					c.ManagerKnown, c.ManagerObjectID = true, oidBoss
					return c
				}(),
				Desired: func() *store.DesiredUser { d := desired(); d.ManagerExternalID = "B1"; return d }()},
			want: []stepSummary{{Action: ActAdopt, ObjectID: oidAlice}},
		},
		{
			name: "soft_deleted_linked_user_is_restored_then_updated",
			row: store.SourceRow{ExternalID: "E1", Link: link(store.LinkActive), Desired: desired(),
				Current: func() *store.DirectoryUser { c := current(); c.Deleted = true; return c }()},
			want: []stepSummary{{Action: ActRestore, Kind: directory.OpRestore, ObjectID: oidAlice}},
		},
		{
			name: "groups_are_added_and_removed_only_among_those_the_worker_manages",
			row: store.SourceRow{ExternalID: "E1", Current: current(),
				Link:    func() *store.Link { l := link(store.LinkActive); l.Groups = []string{grpA, grpB}; return l }(),
				Desired: func() *store.DesiredUser { d := desired(); d.Groups = []string{grpB, grpC}; return d }()},
			want: []stepSummary{
				{Action: ActGroupAdd, Kind: directory.OpAddMember, ObjectID: oidAlice, RelatedID: grpC},
				{Action: ActGroupRemove, Kind: directory.OpRemoveMember, ObjectID: oidAlice, RelatedID: grpA},
			},
		},
		{
			name: "invalid_row_fails_that_user_only_with_its_reason",
			row: store.SourceRow{ExternalID: "E1", Desired: func() *store.DesiredUser {
				d := desired()
				d.Set(profile.UserPrincipalName, "alice@fabrikam.com")
				return d
			}()},
			want:   []stepSummary{{Action: ActCreate, Failed: true}},
			checks: []check{noLink, failureHas(`domain "fabrikam.com" is not allowed for job hr`)},
		},
		{
			name: "invalid_row_of_a_managed_user_is_not_touched",
			row: store.SourceRow{ExternalID: "E1", Link: link(store.LinkActive), Current: current(),
				Desired: func() *store.DesiredUser { d := desired(); d.Set(profile.DisplayName, ""); return d }()},
			want:   []stepSummary{{Action: ActUpdate, Failed: true}},
			checks: []check{failureHas("display_name: missing")},
		},
		// A user on leave (in the source, account_enabled = false) is kept
		// current like a linked user while the account stays disabled.
		{
			name: "user_on_leave_already_disabled_gets_a_title_change_as_an_update_only",
			row: store.SourceRow{ExternalID: "E1", Current: func() *store.DirectoryUser { c := current(); c.AccountEnabled = false; return c }(),
				Link: func() *store.Link { l := link(store.LinkDisabled); l.DisabledAt = ago(time.Hour); return l }(),
				Desired: func() *store.DesiredUser {
					d := desired()
					d.AccountEnabled = false
					d.Set(profile.JobTitle, "Team lead")
					return d
				}()},
			want: []stepSummary{{Action: ActUpdate, Kind: directory.OpUpdate, ObjectID: oidAlice}},
			checks: []check{fieldsAre(map[string]any{"jobTitle": "Team lead"}), noLink, func(t *testing.T, d Decision) {
				if st := d.Steps[0]; st.LinkState != store.LinkDisabled || d.Desired == nil {
					t.Errorf("link state after the update = %q, desired %v; want disabled and the applied user recorded", st.LinkState, d.Desired)
				}
			}},
		},
		{
			name: "user_going_on_leave_with_a_leave_date_is_disabled_then_updated",
			row: store.SourceRow{ExternalID: "E1", Link: link(store.LinkActive), Current: current(),
				Desired: func() *store.DesiredUser {
					d := desired()
					d.AccountEnabled = false
					d.Set(profile.Index("employee_leave_date_time"), "2026-12-31T00:00:00Z")
					d.Set(profile.JobTitle, "Team lead")
					return d
				}()},
			policy: leaveDatePolicy,
			want:   []stepSummary{{Action: ActDisable, Kind: directory.OpUpdate, ObjectID: oidAlice}, {Action: ActUpdate, Kind: directory.OpUpdate, ObjectID: oidAlice}},
			checks: []check{func(t *testing.T, d Decision) {
				// The disable alone: no attribute Graph may refuse rides on it.
				if f := d.Steps[0].Fields; len(f) != 1 || f["accountEnabled"] != false {
					t.Errorf("disable fields = %v; want accountEnabled false alone", f)
				}
				f := d.Steps[1].Fields
				if len(f) != 2 || f["jobTitle"] != "Team lead" || f["employeeLeaveDateTime"] == nil || d.Steps[1].LinkState != store.LinkDisabled {
					t.Errorf("update fields = %v, link state %q; want the leave date and the title, the link kept disabled", f, d.Steps[1].LinkState)
				}
				if k := stepKinds(d.Steps[0]); !reflect.DeepEqual(k, []string{KindDisable}) {
					t.Errorf("budget kinds = %v; want [disables]", k)
				}
			}},
		},
		{
			name: "invalid_value_of_a_user_going_on_leave_does_not_stop_the_disable",
			row: store.SourceRow{ExternalID: "E1", Link: link(store.LinkActive), Current: current(),
				Desired: func() *store.DesiredUser {
					d := desired()
					d.AccountEnabled = false
					d.Set(profile.JobTitle, strings.Repeat("x", 200))
					return d
				}()},
			want: []stepSummary{{Action: ActDisable, Kind: directory.OpUpdate, ObjectID: oidAlice}, {Action: ActUpdate, ObjectID: oidAlice, Failed: true}},
			checks: []check{fieldsAre(map[string]any{"accountEnabled": false}), func(t *testing.T, d Decision) {
				if !strings.Contains(d.Steps[1].Failure, "job_title") || d.Desired != nil {
					t.Errorf("failure = %q, desired %v; want the job_title reason and nothing recorded as applied", d.Steps[1].Failure, d.Desired)
				}
			}},
		},
		{
			name: "invalid_value_of_a_user_on_leave_already_disabled_fails_the_user_alone",
			row: store.SourceRow{ExternalID: "E1", Current: func() *store.DirectoryUser { c := current(); c.AccountEnabled = false; return c }(),
				Link: func() *store.Link { l := link(store.LinkDisabled); l.DisabledAt = ago(time.Hour); return l }(),
				Desired: func() *store.DesiredUser {
					d := desired()
					d.AccountEnabled = false
					d.Set(profile.DisplayName, "")
					return d
				}()},
			want:   []stepSummary{{Action: ActUpdate, ObjectID: oidAlice, Failed: true}},
			checks: []check{failureHas("display_name: missing"), noLink},
		},
		{
			name: "clear_of_a_user_going_on_leave_goes_apart_from_the_disable",
			row: store.SourceRow{ExternalID: "E1", Link: link(store.LinkActive), Current: current(),
				Desired: func() *store.DesiredUser {
					d := desired()
					d.AccountEnabled = false
					d.Set(profile.Department, "")
					return d
				}()},
			want: []stepSummary{{Action: ActDisable, Kind: directory.OpUpdate, ObjectID: oidAlice}, {Action: ActUpdate, Kind: directory.OpUpdate, ObjectID: oidAlice}},
			checks: []check{fieldsAre(map[string]any{"accountEnabled": false}), func(t *testing.T, d Decision) {
				// The budget may withhold the clear; the disable is counted
				// and admitted on its own.
				if k := stepKinds(d.Steps[1]); !reflect.DeepEqual(k, []string{KindAttributeClear}) || !reflect.DeepEqual(d.Steps[1].Fields, map[string]any{"department": nil}) {
					t.Errorf("second step: fields %v, budget kinds %v; want the department cleared, counted as a clear", d.Steps[1].Fields, k)
				}
			}},
		},
		{
			name: "manager_change_of_a_user_on_leave_is_applied_groups_are_left_alone",
			row: store.SourceRow{ExternalID: "E1", ManagerObjectID: oidBoss, Current: func() *store.DirectoryUser { c := current(); c.AccountEnabled = false; return c }(),
				Link: func() *store.Link {
					l := link(store.LinkDisabled)
					l.DisabledAt, l.Groups = ago(time.Hour), []string{grpA}
					return l
				}(),
				Desired: func() *store.DesiredUser {
					d := desired()
					d.AccountEnabled, d.ManagerExternalID, d.Groups = false, "B1", []string{grpB}
					return d
				}()},
			want: []stepSummary{{Action: ActManager, Kind: directory.OpSetManager, ObjectID: oidAlice, RelatedID: oidBoss}},
		},
		{
			name: "unlinked_user_on_leave_is_left_alone",
			row:  store.SourceRow{ExternalID: "E1", Desired: func() *store.DesiredUser { d := desired(); d.AccountEnabled = false; return d }()},
			want: nil, checks: []check{noLink},
		},
		{
			name: "user_on_leave_whose_account_is_soft_deleted_is_only_recorded_as_deleted",
			row: store.SourceRow{ExternalID: "E1", Link: link(store.LinkDisabled), Current: func() *store.DirectoryUser { c := current(); c.Deleted = true; return c }(),
				Desired: func() *store.DesiredUser {
					d := desired()
					d.AccountEnabled = false
					d.Set(profile.JobTitle, "Team lead")
					return d
				}()},
			want: nil, checks: []check{linkIs(store.LinkDeleted, oidAlice)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := policy()
			if tt.policy != nil {
				tt.policy(&p)
			}
			d := Plan(tt.row, p, now)
			if got := summarise(d.Steps); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("steps =\n  %+v\nwant\n  %+v", got, tt.want)
			}
			for _, c := range tt.checks {
				c(t, d)
			}
		})
	}
}

// leaveDatePolicy manages employee_leave_date_time, as a job whose source
// fills it does.
func leaveDatePolicy(p *Policy) {
	p.Schema = profile.Default.Fill(func(c string) bool { return c == "employee_leave_date_time" })
}

func TestPlanIsPure(t *testing.T) {
	row := store.SourceRow{ExternalID: "E1", Link: link(store.LinkActive), Current: current(), Desired: desired()}
	row.Desired.Set(profile.JobTitle, "Boss")
	a, b := Plan(row, policy(), now), Plan(row, policy(), now)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("two plans of the same row differ:\n%+v\n%+v", a, b)
	}
}

func TestApplyToLink(t *testing.T) {
	d := desired()
	tests := []struct {
		name  string
		start store.Link
		step  Step
		objID string
		check func(t *testing.T, l store.Link)
	}{
		{"create_sets_the_object_and_activates", *creatingLink(store.SourceRow{ExternalID: "E1"}, d), createStep(d, policy(), ""), oidAlice,
			func(t *testing.T, l store.Link) {
				if l.ObjectID != oidAlice || l.State != store.LinkActive || l.UserPrincipalName != d.UPN() || l.AppliedHash == "" {
					t.Errorf("link = %+v", l)
				}
			}},
		{"disable_starts_the_grace_period", *link(store.LinkActive), disableStep(oidAlice, ""), "",
			func(t *testing.T, l store.Link) {
				if l.State != store.LinkDisabled || l.DisabledAt == nil || !l.DisabledAt.Equal(now) {
					t.Errorf("link = %+v", l)
				}
			}},
		{"group_add_then_is_managed", *link(store.LinkActive), Step{Kind: directory.OpAddMember, RelatedID: grpA}, "",
			func(t *testing.T, l store.Link) {
				if !reflect.DeepEqual(l.Groups, []string{grpA}) {
					t.Errorf("groups = %v", l.Groups)
				}
			}},
		{"group_remove_forgets_it", func() store.Link { l := link(store.LinkActive); l.Groups = []string{grpA, grpB}; return *l }(),
			Step{Kind: directory.OpRemoveMember, RelatedID: grpA}, "",
			func(t *testing.T, l store.Link) {
				if !reflect.DeepEqual(l.Groups, []string{grpB}) {
					t.Errorf("groups = %v", l.Groups)
				}
			}},
		{"manager_set_is_remembered", *link(store.LinkActive), Step{Kind: directory.OpSetManager, RelatedID: oidBoss}, "",
			func(t *testing.T, l store.Link) {
				if l.ManagerObjectID != oidBoss {
					t.Errorf("manager = %q", l.ManagerObjectID)
				}
			}},
		{"delete_marks_deleted", *link(store.LinkDisabled), Step{Action: ActDelete, Kind: directory.OpDelete, LinkState: store.LinkDeleted}, "",
			func(t *testing.T, l store.Link) {
				if l.State != store.LinkDeleted || l.DeletedAt == nil {
					t.Errorf("link = %+v", l)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, ApplyToLink(tt.start, tt.step, tt.objID, d, now))
		})
	}
}
