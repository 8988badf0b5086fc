package store_test

import (
	"slices"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/profile"
	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/testdb"
)

// mirrorManager reads one mirror row's manager and whether it is known.
func mirrorManager(t *testing.T, st *store.Store, job, id string) (string, bool) {
	t.Helper()
	var m string
	var known bool
	err := st.Pool().QueryRow(ctxT(t), `SELECT coalesce(manager_object_id, ''), manager_known
  FROM entraprov.directory_users WHERE job = $1 AND object_id = $2`, job, id).Scan(&m, &known)
	if err != nil {
		t.Fatalf("mirror row %s: %v", id, err)
	}
	return m, known
}

// TestMirrorKeepsAKnownManagerUntilDeltaNamesAnother: a delta item without
// manager@delta (ManagerKnown false) leaves the row's manager as it was,
// known or not; one with it replaces the manager, "" included.
func TestMirrorKeepsAKnownManagerUntilDeltaNamesAnother(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := ctxT(t)
	up := func(users ...store.DirectoryUser) {
		t.Helper()
		if err := st.UpsertDirectoryUsers(ctx, "j", users); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name      string
		user      store.DirectoryUser
		wantMgr   string
		wantKnown bool
	}{
		{"new row without the manager", store.DirectoryUser{Attrs: profile.Of(profile.DisplayName, "A"), ObjectID: "o1"}, "", false},
		{"full read names a manager", store.DirectoryUser{Attrs: profile.Of(profile.DisplayName, "A"), ObjectID: "o1", ManagerObjectID: "m1", ManagerKnown: true}, "m1", true},
		{"incremental item without manager@delta", store.DirectoryUser{Attrs: profile.Of(profile.DisplayName, "A2"), ObjectID: "o1"}, "m1", true},
		{"soft delete (@removed changed)", store.DirectoryUser{ObjectID: "o1", Deleted: true}, "m1", true},
		{"manager changed", store.DirectoryUser{Attrs: profile.Of(profile.DisplayName, "A"), ObjectID: "o1", ManagerObjectID: "m2", ManagerKnown: true}, "m2", true},
		{"manager removed", store.DirectoryUser{Attrs: profile.Of(profile.DisplayName, "A"), ObjectID: "o1", ManagerKnown: true}, "", true},
		{"incremental item after the removal", store.DirectoryUser{Attrs: profile.Of(profile.DisplayName, "A3"), ObjectID: "o1"}, "", true},
	}
	for _, s := range steps {
		up(s.user)
		m, known := mirrorManager(t, st, "j", "o1")
		if m != s.wantMgr || known != s.wantKnown {
			t.Fatalf("after %s: manager %q known %v; want %q known %v", s.name, m, known, s.wantMgr, s.wantKnown)
		}
	}

	// The planner's view (StreamSource) carries both.
	exec(t, st, `INSERT INTO entraprov.desired_users (external_id, user_principal_name, display_name, account_enabled)
VALUES ('E1', 'a@x.test', 'A', true)`)
	if err := st.UpsertLinks(ctx, []store.Link{{Job: "j", ExternalID: "E1", ObjectID: "o1", State: store.LinkActive, ManagerObjectID: "m2"}}); err != nil {
		t.Fatal(err)
	}
	up(store.DirectoryUser{Attrs: profile.Of(profile.DisplayName, "A"), ObjectID: "o1", ManagerObjectID: "m3", ManagerKnown: true})
	var cur *store.DirectoryUser
	if err := st.StreamSource(ctx, "j", "entraprov.desired_users", func(r store.SourceRow) error {
		cur = r.Current
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if cur == nil || cur.ManagerObjectID != "m3" || !cur.ManagerKnown {
		t.Fatalf("StreamSource current = %+v; want manager m3, known", cur)
	}
}

// TestLinkedObjectsNotInMirror: links with an object the mirror lacks, except
// lost creates and links deleted longer ago than deleted items keep them.
func TestLinkedObjectsNotInMirror(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := ctxT(t)
	recent, old := time.Now().Add(-24*time.Hour), time.Now().Add(-31*24*time.Hour)
	links := []store.Link{
		{Job: "j", ExternalID: "E1", ObjectID: "o1", State: store.LinkActive},                      // in the mirror
		{Job: "j", ExternalID: "E2", ObjectID: "o2", State: store.LinkActive},                      // missing
		{Job: "j", ExternalID: "E3", ObjectID: "o3", State: store.LinkDisabled, DisabledAt: &old},  // missing
		{Job: "j", ExternalID: "E4", ObjectID: "o4", State: store.LinkDeleted, DeletedAt: &recent}, // missing, restorable
		{Job: "j", ExternalID: "E5", ObjectID: "o5", State: store.LinkDeleted, DeletedAt: &old},    // purged by now
		{Job: "j", ExternalID: "E6", State: store.LinkCreating, UserPrincipalName: "e6@x.test"},    // no object
		{Job: "other", ExternalID: "E7", ObjectID: "o7", State: store.LinkActive},                  // another job
	}
	if err := st.UpsertLinks(ctx, links); err != nil {
		t.Fatal(err)
	}
	if err := st.UpsertDirectoryUsers(ctx, "j", []store.DirectoryUser{{ObjectID: "o1"}}); err != nil {
		t.Fatal(err)
	}
	got, err := st.LinkedObjectsNotInMirror(ctx, "j")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"o2", "o3", "o4"}; !slices.Equal(got, want) {
		t.Fatalf("LinkedObjectsNotInMirror = %v; want %v", got, want)
	}
}
