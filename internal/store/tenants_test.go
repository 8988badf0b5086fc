package store_test

import (
	"strings"
	"testing"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/profile"
	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/testdb"
)

// A tenant's job reads only its own rows of a shared source: the stream,
// the duplicate check, the group check and the "manages groups" probe all
// see the scope, passed as a parameter (a scope shaped like SQL matches
// nothing), and a shared source without tenant_scope fails the source
// check naming the column and the fix.
func TestScopedSourceReadsOnlyItsTenant(t *testing.T) {
	t.Parallel()
	st := testdb.New(t)
	ctx := ctxT(t)
	exec(t, st, `CREATE SCHEMA isv`)
	exec(t, st, `CREATE TABLE isv.users (LIKE entraprov.desired_users INCLUDING DEFAULTS)`)
	exec(t, st, `ALTER TABLE isv.users ADD COLUMN tenant_scope text NOT NULL`)
	exec(t, st, `INSERT INTO isv.users (external_id, user_principal_name, tenant_scope, groups) VALUES
 ('A1', 'a1@a.example', 'a', '{}'),
 ('A2', 'a2@a.example', 'a', '{}'),
 ('B1', 'b1@b.example', 'b', '{11111111-1111-1111-1111-111111111111}'),
 ('B1', 'b1bis@b.example', 'b', '{}')`)
	a, b := config.ScopedSource("isv.users", "a"), config.ScopedSource("isv.users", "b")

	stream := func(source string) []string {
		t.Helper()
		var ids []string
		if err := st.StreamSource(ctx, "isv@x", source, func(r store.SourceRow) error {
			ids = append(ids, r.ExternalID)
			return nil
		}); err != nil {
			t.Fatalf("stream %s: %v", source, err)
		}
		return ids
	}
	if got := strings.Join(stream(a), ","); got != "A1,A2" {
		t.Errorf("scope a streams %s; want A1,A2", got)
	}
	if got := stream(config.ScopedSource("isv.users", "a' OR '1'='1")); len(got) != 0 {
		t.Errorf("a scope shaped like SQL streams %v; want nothing", got)
	}
	if err := st.CheckSource(ctx, a); err != nil {
		t.Errorf("CheckSource(%s): %v", a, err)
	}
	for source, want := range map[string]int{a: 0, b: 1} {
		d, err := st.FindSourceDuplicates(ctx, source, 5)
		if err != nil || d.IDs != want {
			t.Errorf("FindSourceDuplicates(%s) = %+v, %v; want %d", source, d, err, want)
		}
		n, err := st.CountRowsOutsideGroups(ctx, source, []string{"22222222-2222-2222-2222-222222222222"})
		if err != nil || n != want {
			t.Errorf("CountRowsOutsideGroups(%s) = %d, %v; want %d", source, n, err, want)
		}
		facts, err := st.InspectSource(ctx, "isv@x", source, profile.Default)
		if err != nil || facts.Groups != (want == 1) {
			t.Errorf("InspectSource(%s).Groups = %v, %v; want %v", source, facts.Groups, err, want == 1)
		}
	}
	err := st.CheckSource(ctx, config.ScopedSource("entraprov.desired_users", "a"))
	if err == nil || !strings.Contains(err.Error(), "missing column tenant_scope (text)") || !strings.Contains(err.Error(), "AS tenant_scope") {
		t.Errorf("CheckSource of a shared source without tenant_scope: %v", err)
	}
}
