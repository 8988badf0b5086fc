package conformance_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/profile"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
	"github.com/entraprov/entraprov/internal/testdb"
)

// engineRun is the worker end to end: source rows in a fresh PostgreSQL
// database (DATABASE_URL; `make conformance` starts a throwaway one), and
// internal/sync's Engine runs as `worker sync` does — a full delta read of
// the tenant into the mirror, then the plan applied through $batch. Three
// runs: a joiner with a manager and a group; a changed title and a removed
// manager; a leaver disabled. The engine reads the whole tenant but writes
// only users it has links for, i.e. the ones it created here.
func (s *script) engineRun(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, testdb.NewURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	job := s.tg.primaryJob()
	job.Name = "conformance"
	job.Source = "entraprov.desired_users"
	job.AllowedDomains = []string{s.tg.domain}
	job.Leaver = config.Leaver{Action: "disable"}
	job.Matching = config.Matching{AdoptBy: "none"}
	job.Password = config.Password{ForceChangeNextSignIn: true, Length: 20}
	eng := &esync.Engine{
		Store:  st,
		Logger: s.log,
		Connect: func(ctx context.Context, job config.Job) (esync.Directory, error) {
			return directory.New(ctx, job, clientOptions(s.tg, s.rec, s.log))
		},
	}
	run := func(what string) {
		t.Helper()
		r, err := eng.Run(ctx, job, esync.RunOptions{})
		if err != nil || r.Status != store.RunSucceeded {
			t.Fatalf("%s: run %d status %q (%v): %s", what, r.ID, r.Status, err, r.ErrorSummary)
		}
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := st.Pool().Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	boss, report := s.run+"eng-boss", s.run+"eng-report"
	insert := `INSERT INTO entraprov.desired_users (external_id, user_principal_name, display_name, mail_nickname,
		given_name, surname, job_title, department, usage_location, account_enabled, manager_external_id, groups)
		VALUES ($1, $2, $3, $1, 'Conformance', 'Engine', 'Engine test', 'QA', 'DE', true, $4, $5)`
	exec(insert, boss, s.tg.upn(s.run, "eng-boss"), "entraprov conformance engine boss", nil, []string{})
	exec(insert, report, s.tg.upn(s.run, "eng-report"), "entraprov conformance engine report", boss, []string{s.tg.groupID})

	run("joiners")
	var bossID, reportID string
	eventually(t, s.tg, "the engine's users, manager and group visible", func() error {
		b, err := findOne(ctx, s.c, s.tg.upn(s.run, "eng-boss"))
		if err != nil {
			return err
		}
		r, err := findOne(ctx, s.c, s.tg.upn(s.run, "eng-report"))
		if err != nil {
			return err
		}
		bossID, reportID = b.ObjectID, r.ObjectID
		if r.Get(profile.JobTitle) != "Engine test" || r.Get(profile.Department) != "QA" || !r.AccountEnabled {
			return fmt.Errorf("report read back %+v", r)
		}
		if m, err := managerOf(ctx, s.c, r.ObjectID); err != nil || m != b.ObjectID {
			return fmt.Errorf("report's manager %q (%v), want %s", m, err, b.ObjectID)
		}
		if gs, err := groupsOf(ctx, s.c, r.ObjectID); err != nil || !slices.Contains(gs, s.tg.groupID) {
			return fmt.Errorf("report's groups %v (%v), want %s", gs, err, s.tg.groupID)
		}
		return nil
	})

	exec(`UPDATE entraprov.desired_users SET job_title = 'Engine changed', manager_external_id = NULL WHERE external_id = $1`, report)
	run("update")
	eventually(t, s.tg, "the engine's update and manager removal visible", func() error {
		r, err := findOne(ctx, s.c, s.tg.upn(s.run, "eng-report"))
		if err != nil {
			return err
		}
		if r.Get(profile.JobTitle) != "Engine changed" || r.Get(profile.Department) != "QA" {
			return fmt.Errorf("report read back %+v", r)
		}
		if m, err := managerOf(ctx, s.c, reportID); err != nil || m != "" {
			return fmt.Errorf("report's manager %q (%v), want none", m, err)
		}
		return nil
	})

	exec(`DELETE FROM entraprov.desired_users WHERE external_id = $1`, boss)
	run("leaver")
	eventually(t, s.tg, "the leaver disabled", func() error {
		b, err := findOne(ctx, s.c, s.tg.upn(s.run, "eng-boss"))
		if err != nil {
			return err
		}
		if b.ObjectID != bossID || b.AccountEnabled {
			return fmt.Errorf("boss read back %+v; want %s disabled", b, bossID)
		}
		return nil
	})
}
