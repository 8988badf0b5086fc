package store_test

import (
	"io/fs"
	"slices"
	"strings"
	"testing"

	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/testdb"
	"github.com/entraprov/entraprov/migrations"
)

// migrateBackTo undoes every migration from the named one on (their drop
// parts, newest first) and sets the schema version before it, so that a
// test can write data an older schema allowed and migrate it again.
func migrateBackTo(t *testing.T, st *store.Store, name string) {
	t.Helper()
	names, err := store.MigrationNames()
	if err != nil {
		t.Fatal(err)
	}
	at := slices.Index(names, name)
	if at < 0 {
		t.Fatalf("no migration %s in %v", name, names)
	}
	for i := len(names) - 1; i >= at; i-- {
		body, err := fs.ReadFile(migrations.FS, names[i])
		if err != nil {
			t.Fatal(err)
		}
		_, down, ok := strings.Cut(string(body), "---- create above / drop below ----")
		if !ok {
			t.Fatalf("%s has no drop part", names[i])
		}
		exec(t, st, down)
	}
	exec(t, st, `UPDATE entraprov.schema_version SET version = $1`, at)
}

// Migration 009 makes one link per account across jobs. On a database where
// two jobs already link one account (adopted in the same second, or linked
// by hand), it neither fails nor drops a link: the earliest link stays
// covered by the unique index, the later one is marked legacy_shared, and
// worker check still lists the account. No further link to it (or to any
// account another job links) is accepted; once the earliest link is
// released, the remaining one is covered again at its next write.
func TestOwnerIndexKeepsLinksSharedBeforeIt(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := ctxT(t)
	migrateBackTo(t, st, "009_one_owner.sql")
	exec(t, st, `INSERT INTO entraprov.directory_links (job, external_id, object_id, state, created_at) VALUES
('staff', 'E1', 'obj-1', 'active', now() - interval '2 days'),
('contractors', 'C1', 'obj-1', 'active', now() - interval '1 day'),
('staff', 'E2', 'obj-2', 'active', now()),
('staff', 'E3', NULL, 'creating', now()),
('contractors', 'C3', NULL, 'creating', now())`)
	if n, err := st.Migrate(ctx); err != nil || n != 1 {
		t.Fatalf("Migrate over two links to one account = %d, %v; want 009 applied", n, err)
	}
	marked := func() string {
		t.Helper()
		var got string
		err := st.Pool().QueryRow(ctx, `SELECT coalesce(string_agg(job || '/' || external_id, ',' ORDER BY job, external_id), '')
  FROM entraprov.directory_links WHERE legacy_shared`).Scan(&got)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := marked(); got != "contractors/C1" {
		t.Fatalf("links marked legacy_shared: %q; want the later link to obj-1 only", got)
	}
	shared, err := st.SharedLinks(ctx)
	if err != nil || len(shared) != 1 || shared[0].ObjectID != "obj-1" || strings.Join(shared[0].Links, ",") != "contractors/C1,staff/E1" {
		t.Fatalf("SharedLinks = %+v, %v; want obj-1 linked by both jobs", shared, err)
	}

	for _, tt := range []struct {
		name string
		link store.Link
		want bool // refused as another job's account
	}{
		{"third_job_on_a_shared_account", store.Link{Job: "temps", ExternalID: "T1", ObjectID: "obj-1", State: store.LinkActive}, true},
		{"second_job_on_an_owned_account", store.Link{Job: "contractors", ExternalID: "C2", ObjectID: "obj-2", State: store.LinkActive}, true},
		{"creates_in_flight_of_two_jobs", store.Link{Job: "temps", ExternalID: "T3", State: store.LinkCreating}, false},
		{"legacy_link_rewritten_while_shared", store.Link{Job: "contractors", ExternalID: "C1", ObjectID: "obj-1", State: store.LinkDisabled}, false},
		{"a_new_account", store.Link{Job: "contractors", ExternalID: "C3", ObjectID: "obj-3", State: store.LinkActive}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := st.UpsertLinks(ctx, []store.Link{tt.link})
			if got := store.IsOwnerConflict(err); got != tt.want || (!tt.want && err != nil) {
				t.Fatalf("UpsertLinks(%+v) = %v; want refused by directory_links_owner_key: %v", tt.link, err, tt.want)
			}
		})
	}
	if got := marked(); got != "contractors/C1" {
		t.Fatalf("after rewriting the legacy link while staff still links obj-1: marked %q; want contractors/C1", got)
	}

	// The hand-over: staff's link is released; contractors' next write of
	// its link puts it under the index again.
	exec(t, st, `DELETE FROM entraprov.directory_links WHERE job = 'staff' AND external_id = 'E1'`)
	if err := st.UpsertLinks(ctx, []store.Link{{Job: "contractors", ExternalID: "C1", ObjectID: "obj-1", State: store.LinkActive}}); err != nil {
		t.Fatal(err)
	}
	if got := marked(); got != "" {
		t.Fatalf("after the hand-over: marked %q; want none", got)
	}
	err = st.UpsertLinks(ctx, []store.Link{{Job: "staff", ExternalID: "E1", ObjectID: "obj-1", State: store.LinkActive}})
	if !store.IsOwnerConflict(err) {
		t.Fatalf("staff linking obj-1 again after the hand-over: %v; want refused by directory_links_owner_key", err)
	}
	if owner, xid, err := st.OtherOwner(ctx, "staff", "obj-1"); err != nil || owner != "contractors" || xid != "C1" {
		t.Fatalf("OtherOwner(staff, obj-1) = %q, %q, %v; want contractors, C1", owner, xid, err)
	}
}
