package store_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/testdb"
)

// A view that repeats an external_id (a JOIN matching twice, a UNION ALL)
// breaks the source contract: the stream marks every row of that id with
// the count, a well-formed id with 1 and a leaver (no source row) with 0,
// and FindSourceDuplicates reports the ids, most repeated first.
func TestStreamSourceMarksDuplicateExternalIDs(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := ctxT(t)
	exec(t, st, `INSERT INTO entraprov.desired_users (external_id, user_principal_name, display_name) VALUES
		('E1', 'a@x.test', 'A'), ('E2', 'b@x.test', 'B'), ('E3', 'c@x.test', 'C')`)
	exec(t, st, `CREATE TABLE public.extra (external_id text, n int)`)
	exec(t, st, `INSERT INTO public.extra SELECT 'E3', i FROM generate_series(1, 150) i`) // past maxHeldDuplicates
	exec(t, st, `INSERT INTO public.extra VALUES ('E2', 1)`)
	exec(t, st, `CREATE VIEW public.people AS
		SELECT * FROM entraprov.desired_users
		UNION ALL
		SELECT d.* FROM entraprov.desired_users d JOIN public.extra x USING (external_id)`)
	if err := st.UpsertLinks(ctx, []store.Link{
		{Job: "j", ExternalID: "E2", ObjectID: "o-b", State: store.LinkActive},
		{Job: "j", ExternalID: "E4", ObjectID: "o-leaver", State: store.LinkActive},
	}); err != nil {
		t.Fatal(err)
	}

	got := map[string][]int{}
	err := st.StreamSource(ctx, "j", "public.people", func(r store.SourceRow) error {
		got[r.ExternalID] = append(got[r.ExternalID], r.SourceRows)
		if r.ExternalID == "E2" && r.Link == nil {
			t.Errorf("a row of a duplicated id lost its link")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]int{"E1": {1}, "E2": {2, 2}, "E4": {0}}
	e3 := got["E3"]
	delete(got, "E3")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SourceRows by id = %v; want %v", got, want)
	}
	if len(e3) != 100 || e3[0] != 151 || e3[99] != 151 {
		t.Errorf("E3 (151 rows): %d rows passed on, first marked %v; want 100 (the bound), each marked 151", len(e3), e3[:min(1, len(e3))])
	}

	// Stopping inside the last group held still ends the stream cleanly.
	calls := 0
	err = st.StreamSource(ctx, "j", "public.people", func(store.SourceRow) error {
		calls++
		return store.ErrStopStream
	})
	if err != nil || calls != 1 {
		t.Errorf("ErrStopStream: err %v after %d calls; want nil after 1", err, calls)
	}
	boom := errors.New("boom")
	if err := st.StreamSource(ctx, "j", "public.people", func(store.SourceRow) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("callback error = %v; want boom", err)
	}

	dups, err := st.FindSourceDuplicates(ctx, "public.people", 5)
	if err != nil {
		t.Fatal(err)
	}
	wantDups := store.SourceDuplicates{IDs: 2, Rows: 153, Examples: []store.DuplicateID{{"E3", 151}, {"E2", 2}}}
	if !reflect.DeepEqual(dups, wantDups) {
		t.Errorf("FindSourceDuplicates = %+v; want %+v", dups, wantDups)
	}
	if dups, err := st.FindSourceDuplicates(ctx, "entraprov.desired_users", 5); err != nil || dups.IDs != 0 || dups.Examples != nil {
		t.Errorf("a clean source: %+v, %v; want none", dups, err)
	}
	if _, err := st.FindSourceDuplicates(ctx, "public.nope", 5); err == nil {
		t.Error("a missing relation gave no error")
	}
}
