package main

import (
	"context"
	"os"
	"testing"

	"github.com/entraprov/entraprov/internal/testdb"
)

// The example source view must satisfy the desired-users contract the
// worker checks at start, and its WHERE clause must do the scoping it
// documents (interns and leavers out, hires a week early in).
func TestExampleSourceViewMatchesContract(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	sql, err := os.ReadFile("../../configs/desired_users.example.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Pool().Exec(ctx, string(sql)); err != nil {
		t.Fatalf("example view does not load: %v", err)
	}
	if err := st.CheckSource(ctx, "hr.entra_users"); err != nil {
		t.Fatalf("example view fails the source check: %v", err)
	}
	_, err = st.Pool().Exec(ctx, `
INSERT INTO hr.sites VALUES ('PAR1', 'Paris – La Défense');
INSERT INTO hr.org_unit_groups VALUES ('FIN-AP', '11111111-1111-1111-1111-111111111111');
INSERT INTO hr.employees (employee_number, first_name, last_name, org_unit, site_code, country_code, contract_type, hire_date, termination_date, manager_number) VALUES
  (1, 'Hélène', 'Dupré', 'FIN-AP', 'PAR1', 'fr', 'permanent', current_date - 400, NULL, NULL),
  (2, 'Zoë', 'O''Brien', 'FIN-AP', 'PAR1', 'ie', 'contractor', current_date + 3, NULL, 1),
  (3, 'Ian', 'Intern', NULL, NULL, 'fr', 'intern', current_date - 10, NULL, 1),
  (4, 'Leo', 'Left', NULL, NULL, 'fr', 'permanent', current_date - 900, current_date - 1, 1),
  (5, 'Fay', 'Future', NULL, NULL, 'fr', 'permanent', current_date + 30, NULL, 1)`)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := st.Pool().Query(ctx, `SELECT external_id, user_principal_name, coalesce(manager_external_id, ''), cardinality(groups)
  FROM hr.entra_users ORDER BY external_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var id, upn, mgr string
		var groups int
		if err := rows.Scan(&id, &upn, &mgr, &groups); err != nil {
			t.Fatal(err)
		}
		got = append(got, id+" "+upn+" "+mgr)
		if groups != 1 {
			t.Errorf("%s: %d groups, want the FIN-AP group", id, groups)
		}
	}
	want := []string{"E000001 helene.dupre@contoso.com ", "E000002 zoe.obrien@ext.contoso.com E000001"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("view rows = %q, want %q (interns, leavers and hires more than a week out are scoped out)", got, want)
	}
}
