package sync

import (
	"reflect"
	"strings"
	"testing"

	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/profile"
	"github.com/entraprov/entraprov/internal/store"
)

// A row whose external_id the source holds more than once fails with the
// count and the source named, and nothing is sent or written for it: not a
// create, not a rename, and above all not a leaver's disable.
func TestPlanDuplicateExternalID(t *testing.T) {
	withGroups := func(d *store.DesiredUser, gs ...string) *store.DesiredUser { d.Groups = gs; return d }
	renamed := desired()
	renamed.Set(profile.UserPrincipalName, "alice.renamed@contoso.com")
	renamed.Set(profile.DisplayName, "Alice Renamed")
	gone := desired()
	gone.AccountEnabled = false
	linked := link(store.LinkActive)
	linked.Groups = []string{grpA}

	tests := []struct {
		name string
		row  store.SourceRow
		want []stepSummary
		msg  string // "" : no failure expected
	}{
		{"new_user_twice_is_not_created",
			store.SourceRow{ExternalID: "E1", SourceRows: 2, Desired: desired()},
			[]stepSummary{{Action: ActCreate, Failed: true}}, "external_id E1 appears 2 times in hr.people"},
		{"linked_user_twice_is_not_renamed_nor_regrouped",
			store.SourceRow{ExternalID: "E1", SourceRows: 3, Desired: withGroups(renamed, grpB), Link: linked, Current: current()},
			[]stepSummary{{Action: ActUpdate, Failed: true}}, "external_id E1 appears 3 times in hr.people"},
		{"disabled_row_twice_is_not_a_leaver",
			store.SourceRow{ExternalID: "E1", SourceRows: 2, Desired: gone, Link: link(store.LinkActive), Current: current()},
			[]stepSummary{{Action: ActUpdate, Failed: true}}, "appears 2 times"},
		{"lost_create_twice_is_not_recovered_or_created_again",
			store.SourceRow{ExternalID: "E1", SourceRows: 2, Desired: desired(), Link: link(store.LinkCreating), Candidate: current()},
			[]stepSummary{{Action: ActCreate, Failed: true}}, "appears 2 times"},
		// The markers the stream gives a well-formed source.
		{"once_is_planned_as_usual",
			store.SourceRow{ExternalID: "E1", SourceRows: 1, Desired: desired()},
			[]stepSummary{{Action: ActCreate, Kind: directory.OpCreate}}, ""},
		{"leaver_has_no_source_row_and_is_disabled",
			store.SourceRow{ExternalID: "E1", SourceRows: 0, Link: link(store.LinkActive), Current: current()},
			[]stepSummary{{Action: ActDisable, Kind: directory.OpUpdate, ObjectID: oidAlice}}, ""},
	}
	p := policy()
	p.Source = "hr.people"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := Plan(tt.row, p, now)
			if got := summarise(dec.Steps); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("steps = %+v; want %+v", got, tt.want)
			}
			if tt.msg == "" {
				return
			}
			if dec.Link != nil {
				t.Errorf("a duplicated id writes its link: %+v", *dec.Link)
			}
			if f := dec.Steps[0].Failure; !strings.Contains(f, tt.msg) || !strings.Contains(f, "nothing is written") {
				t.Errorf("failure = %q; want %q and that nothing is written", f, tt.msg)
			}
			if dec.Steps[0].Fields != nil || dec.Steps[0].Kind != "" {
				t.Errorf("a duplicated id has a request to send: %+v", dec.Steps[0])
			}
		})
	}
}

// allowed_groups: a row naming a group outside the list fails as a whole;
// listed groups are added; removals outside the list are never sent; an
// unset list honours any group (the behaviour before the key).
func TestPlanAllowedGroups(t *testing.T) {
	withGroups := func(gs ...string) *store.DesiredUser { d := desired(); d.Groups = gs; return d }
	linkWith := func(gs ...string) *store.Link { l := link(store.LinkActive); l.Groups = gs; return l }
	renamed := withGroups(grpA, grpC)
	renamed.Set(profile.DisplayName, "Alice Renamed")
	upper := strings.ToUpper(grpA)

	tests := []struct {
		name    string
		allowed []string // nil: key unset
		row     store.SourceRow
		want    []stepSummary
		msg     string
	}{
		{"listed_group_is_added", []string{grpA, grpB},
			store.SourceRow{ExternalID: "E1", Desired: withGroups(grpA), Link: linkWith(), Current: current()},
			[]stepSummary{{Action: ActGroupAdd, Kind: directory.OpAddMember, ObjectID: oidAlice, RelatedID: grpA}}, ""},
		{"list_matches_case_insensitively", []string{upper},
			store.SourceRow{ExternalID: "E1", Desired: withGroups(grpA), Link: linkWith(), Current: current()},
			[]stepSummary{{Action: ActGroupAdd, Kind: directory.OpAddMember, ObjectID: oidAlice, RelatedID: grpA}}, ""},
		{"unlisted_group_fails_the_whole_user", []string{grpA},
			store.SourceRow{ExternalID: "E1", Desired: renamed, Link: linkWith(), Current: current()},
			[]stepSummary{{Action: ActUpdate, Failed: true}},
			"groups: " + grpC + " is not in allowed_groups of job hr; add it to jobs[].allowed_groups"},
		{"unlisted_group_fails_a_new_user", []string{grpA},
			store.SourceRow{ExternalID: "E1", Desired: withGroups(grpC)},
			[]stepSummary{{Action: ActCreate, Failed: true}}, grpC + " is not in allowed_groups"},
		{"removal_of_a_listed_group_is_sent", []string{grpA, grpB},
			store.SourceRow{ExternalID: "E1", Desired: withGroups(grpA), Link: linkWith(grpA, grpB), Current: current()},
			[]stepSummary{{Action: ActGroupRemove, Kind: directory.OpRemoveMember, ObjectID: oidAlice, RelatedID: grpB}}, ""},
		{"removal_of_an_unlisted_group_is_never_sent", []string{grpA},
			store.SourceRow{ExternalID: "E1", Desired: withGroups(grpA), Link: linkWith(grpA, grpC), Current: current()},
			nil, ""},
		{"unset_honours_any_group", nil,
			store.SourceRow{ExternalID: "E1", Desired: withGroups(grpC), Link: linkWith(grpB), Current: current()},
			[]stepSummary{
				{Action: ActGroupAdd, Kind: directory.OpAddMember, ObjectID: oidAlice, RelatedID: grpC},
				{Action: ActGroupRemove, Kind: directory.OpRemoveMember, ObjectID: oidAlice, RelatedID: grpB},
			}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := policy()
			p.AllowedGroups = allowedGroups(tt.allowed)
			dec := Plan(tt.row, p, now)
			if got := summarise(dec.Steps); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("steps = %+v; want %+v", got, tt.want)
			}
			if tt.msg != "" && !strings.Contains(dec.Steps[0].Failure, tt.msg) {
				t.Errorf("failure = %q; want %q", dec.Steps[0].Failure, tt.msg)
			}
		})
	}
}
