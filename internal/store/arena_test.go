package store

import (
	"testing"
	"unsafe"

	"github.com/entraprov/entraprov/internal/profile"
)

// TestRowArena scans rows the way pgx does (one ScanBytes per column, in
// order) and checks what the arena hands out: Values in profile.Pack's
// form whatever is empty or unmanaged, and a value repeated within a row
// stored once.
func TestRowArena(t *testing.T) {
	// display_name unmanaged: a gap between user_principal_name and given_name.
	schema := profile.Default.Restrict(func(c string) bool { return c != "display_name" })
	type row struct {
		id, upn     string
		desired     map[int]string // attribute index -> value
		mirror      map[int]string
		wantDesired profile.Values
		wantMirror  profile.Values
		shareMirror bool // the mirror's Values is the desired one's bytes
	}
	tests := []struct {
		name string
		rows []row
	}{
		{"unchanged_user_shares_its_profile", []row{{
			id: "E1", upn: "a@x.test",
			desired:     map[int]string{profile.UserPrincipalName: "a@x.test", profile.GivenName: "Ada"},
			mirror:      map[int]string{profile.UserPrincipalName: "a@x.test", profile.GivenName: "Ada"},
			wantDesired: profile.Of(profile.UserPrincipalName, "a@x.test", profile.GivenName, "Ada"),
			wantMirror:  profile.Of(profile.UserPrincipalName, "a@x.test", profile.GivenName, "Ada"),
			shareMirror: true,
		}}},
		{"changed_user_keeps_both", []row{{
			id: "E1", upn: "a@x.test",
			desired:     map[int]string{profile.UserPrincipalName: "a@x.test", profile.Surname: "Lovelace"},
			mirror:      map[int]string{profile.UserPrincipalName: "a@x.test", profile.Surname: "Byron"},
			wantDesired: profile.Of(profile.UserPrincipalName, "a@x.test", profile.Surname, "Lovelace"),
			wantMirror:  profile.Of(profile.UserPrincipalName, "a@x.test", profile.Surname, "Byron"),
		}}},
		{"missing_side_and_next_row_are_independent", []row{
			{
				id: "E1", upn: "a@x.test",
				desired:     map[int]string{profile.GivenName: "Ada"},
				wantDesired: profile.Of(profile.GivenName, "Ada"),
			},
			{
				id: "E2", upn: "",
				mirror:     map[int]string{profile.UserPrincipalName: "b@x.test"},
				wantMirror: profile.Of(profile.UserPrincipalName, "b@x.test"),
			},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newRowArena()
			var id, upn, linkUPN string
			var d, m profile.Values
			dT, mT := a.packTargets(&d, schema), a.packTargets(&m, schema)
			var kept []profile.Values // earlier rows' strings must survive later rows
			for _, r := range tt.rows {
				scan := func(target any, v string) {
					if err := target.(interface{ ScanBytes([]byte) error }).ScanBytes([]byte(v)); err != nil {
						t.Fatal(err)
					}
				}
				scan(arenaText{a: a, dst: &id}, r.id)
				scan(arenaText{a: a, dst: &upn}, r.upn)
				k := 0
				for i := range schema.Attrs {
					if schema.Managed(i) {
						scan(dT[k], r.desired[i])
						k++
					}
				}
				scan(arenaText{a: a, dst: &linkUPN}, r.upn)
				k = 0
				for i := range schema.Attrs {
					if schema.Managed(i) {
						scan(mT[k], r.mirror[i])
						k++
					}
				}
				a.finish()
				if id != r.id || upn != r.upn || linkUPN != r.upn {
					t.Fatalf("texts = %q %q %q; want %q %q %q", id, upn, linkUPN, r.id, r.upn, r.upn)
				}
				if d != r.wantDesired || m != r.wantMirror {
					t.Fatalf("desired %q mirror %q; want %q %q", d.String(), m.String(), r.wantDesired.String(), r.wantMirror.String())
				}
				if r.upn != "" && unsafe.StringData(upn) != unsafe.StringData(linkUPN) {
					t.Error("the link's UPN, equal to the source's, was stored twice")
				}
				if shared := unsafe.StringData(d.String()) == unsafe.StringData(m.String()); shared != r.shareMirror {
					t.Errorf("mirror Values shares the desired bytes = %v; want %v", shared, r.shareMirror)
				}
				kept = append(kept, d, m)
			}
			for i, r := range tt.rows {
				if kept[2*i] != r.wantDesired || kept[2*i+1] != r.wantMirror {
					t.Fatalf("row %d changed by later rows: %q %q", i, kept[2*i].String(), kept[2*i+1].String())
				}
			}
		})
	}
}
