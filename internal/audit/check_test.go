package audit

import (
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/profile"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// The classification of what the planner would still do, row by row,
// without I/O.
func TestCheckClassifiesWhatThePlannerWouldStillDo(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	longAgo := now.Add(-60 * 24 * time.Hour)
	want := func() *store.DesiredUser {
		return &store.DesiredUser{Attrs: profile.Of(profile.UserPrincipalName, "alice@contoso.com", profile.DisplayName, "Alice", profile.Department, "R&D"), ExternalID: "E1",
			AccountEnabled: true}
	}
	live := func(enabled bool, dept string) directory.User {
		return directory.User{Attrs: profile.Of(profile.UserPrincipalName, "alice@contoso.com", profile.DisplayName, "Alice", profile.MailNickname, "alice", profile.Department, dept), ObjectID: "obj-1",
			AccountEnabled: enabled}
	}
	link := func(state store.LinkState) *store.Link {
		return &store.Link{Job: "hr", ExternalID: "E1", ObjectID: "obj-1", UserPrincipalName: "alice@contoso.com", State: state}
	}
	tests := []struct {
		name     string
		row      store.SourceRow
		users    []directory.User
		leaver   config.Leaver
		unlinked bool // IncludeUnmanaged
		want     []string
	}{
		{"in_sync_user_has_no_finding", store.SourceRow{Desired: want(), Link: link(store.LinkActive)},
			[]directory.User{live(true, "R&D")}, config.Leaver{}, false, nil},
		{"changed_department_is_drift", store.SourceRow{Desired: want(), Link: link(store.LinkActive)},
			[]directory.User{live(true, "Sales")}, config.Leaver{}, false, []string{KindDrift}},
		{"disabled_wanted_user_is_disabled", store.SourceRow{Desired: want(), Link: link(store.LinkActive)},
			[]directory.User{live(false, "R&D")}, config.Leaver{}, false, []string{KindDisabled}},
		{"linked_object_missing_is_gone", store.SourceRow{Desired: want(), Link: link(store.LinkActive)},
			nil, config.Leaver{}, false, []string{KindGone}},
		{"never_linked_is_missing", store.SourceRow{Desired: want()},
			nil, config.Leaver{}, false, []string{KindMissing}},
		{"never_linked_with_a_match_is_missing_without_include_unmanaged", store.SourceRow{Desired: want()},
			[]directory.User{live(true, "R&D")}, config.Leaver{}, false, []string{KindMissing}},
		{"never_linked_with_a_match_is_unmanaged_with_include_unmanaged", store.SourceRow{Desired: want()},
			[]directory.User{live(true, "R&D")}, config.Leaver{}, true, []string{KindUnmanaged}},
		{"lost_create_found_by_upn_is_unconfirmed", store.SourceRow{Desired: want(),
			Link: &store.Link{Job: "hr", ExternalID: "E1", UserPrincipalName: "alice@contoso.com", State: store.LinkCreating}},
			[]directory.User{live(true, "R&D")}, config.Leaver{}, false, []string{KindUnconfirmed}},
		{"lost_create_that_left_nothing_is_missing", store.SourceRow{Desired: want(),
			Link: &store.Link{Job: "hr", ExternalID: "E1", UserPrincipalName: "alice@contoso.com", State: store.LinkCreating}},
			nil, config.Leaver{}, false, []string{KindMissing}},
		{"enabled_leaver_is_extra", store.SourceRow{Link: link(store.LinkActive)},
			[]directory.User{live(true, "R&D")}, config.Leaver{}, false, []string{KindExtra}},
		{"disabled_leaver_is_fine", store.SourceRow{Link: func() *store.Link { l := link(store.LinkDisabled); l.DisabledAt = &now; return l }()},
			[]directory.User{live(false, "R&D")}, config.Leaver{Action: "delete", DeleteAfter: config.Duration{Duration: 30 * 24 * time.Hour}}, false, nil},
		{"leaver_past_delete_after_is_extra", store.SourceRow{Link: func() *store.Link { l := link(store.LinkDisabled); l.DisabledAt = &longAgo; return l }()},
			[]directory.User{live(false, "R&D")}, config.Leaver{Action: "delete", DeleteAfter: config.Duration{Duration: 30 * 24 * time.Hour}}, false, []string{KindExtra}},
		{"leaver_of_an_ignore_job_is_fine", store.SourceRow{Link: link(store.LinkActive)},
			[]directory.User{live(true, "R&D")}, config.Leaver{Action: "ignore"}, false, nil},
		{"invalid_row_is_invalid", store.SourceRow{Desired: &store.DesiredUser{Attrs: profile.Of(profile.UserPrincipalName, "alice@fabrikam.com", profile.DisplayName, "Alice"), ExternalID: "E1",
			AccountEnabled: true}}, nil, config.Leaver{}, false, []string{KindInvalid}},
		{"manager_removed_by_hand_is_manager", store.SourceRow{Desired: func() *store.DesiredUser { d := want(); d.ManagerExternalID = "E0"; return d }(),
			Link: func() *store.Link { l := link(store.LinkActive); l.ManagerObjectID = "obj-0"; return l }(), ManagerObjectID: "obj-0"},
			[]directory.User{live(true, "R&D")}, config.Leaver{}, false, []string{KindManager}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.row.ExternalID = "E1"
			x := newIndex()
			for _, u := range tt.users {
				x.add(u)
			}
			opts := Options{IncludeUnmanaged: tt.unlinked}
			var linked map[string]bool
			if needsCandidate(tt.row, opts) {
				linked = map[string]bool{}
			}
			p := esync.PolicyFor(config.Job{Name: "hr", AllowedDomains: []string{"contoso.com"}, Leaver: tt.leaver})
			var got []string
			for _, f := range check(tt.row, x, linked, p, now) {
				got = append(got, f.Kind)
				if f.Detail == "" {
					t.Errorf("%s finding without detail", f.Kind)
				}
			}
			if len(got) != len(tt.want) || (len(got) > 0 && got[0] != tt.want[0]) {
				t.Fatalf("findings %v; want %v", got, tt.want)
			}
		})
	}
}
