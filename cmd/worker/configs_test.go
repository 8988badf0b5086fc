package main

import (
	"context"
	"os"
	"testing"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/tenants"
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

// The ISV example loads, and its SQL gives the template its tenants: a
// customer inserted as the SQL says becomes the job isv@<name> reading its
// own rows of the shared source, whose columns pass the source check.
func TestISVExampleExpands(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	sql, err := os.ReadFile("../../configs/tenants.example.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Pool().Exec(ctx, string(sql)); err != nil {
		t.Fatalf("tenants example does not load: %v", err)
	}
	cfg, err := config.Load("../../configs/isv-tenants.example.yaml")
	if err != nil {
		t.Fatalf("ISV example config: %v", err)
	}
	if _, err := st.Pool().Exec(ctx, `INSERT INTO isv.tenants (tenant_id, name, scope, allowed_domains)
VALUES ('8f2c0c1e-6f9a-4a41-a1f1-3e0e0d1e2f30', 'fabrikam', 'fabrikam', '{fabrikam.com}')`); err != nil {
		t.Fatal(err)
	}
	exp, err := tenants.Expand(ctx, st, cfg)
	if err != nil || len(exp.Jobs) != 1 || exp.Jobs[0].Name != "isv@fabrikam" || exp.Jobs[0].AllowedDomains[0] != "fabrikam.com" {
		t.Fatalf("Expand = %+v, %v; want isv@fabrikam with its domain", exp.Jobs, err)
	}
	if err := st.CheckSource(ctx, exp.Jobs[0].Source); err != nil {
		t.Fatalf("the shared source fails the source check: %v", err)
	}
}
