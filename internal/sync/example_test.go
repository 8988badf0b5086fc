package sync_test

import (
	"fmt"

	"github.com/entraprov/entraprov/internal/graphsim"
	esync "github.com/entraprov/entraprov/internal/sync"
	"github.com/entraprov/entraprov/internal/synctest"
)

// A job's whole path, end to end: rows in the source table become users in
// the tenant (here graphsim over TLS, through the real Graph SDK), each
// step is recorded in the run's history, and the next run finds nothing
// to do. A leaver is then disabled. It needs DATABASE_URL (make test and
// scripts/with-postgres provide a throwaway server).
func ExampleEngine_Run() {
	t := synctest.ForExample()
	defer t.Close()
	env := synctest.New(t, graphsim.Options{})
	job := env.Job
	job.Leaver.Action = "disable"
	insert := func(id, name string) {
		if _, err := env.Store.Pool().Exec(env.Ctx, `INSERT INTO entraprov.desired_users
			(external_id, user_principal_name, display_name, usage_location, account_enabled)
			VALUES ($1, $2, $3, 'DE', true)`, id, name+"@"+env.Seeded.Domain, name); err != nil {
			panic(err)
		}
	}
	insert("E1", "ada")
	insert("E2", "grace")
	show := func(title string) {
		run, err := env.Engine.Run(env.Ctx, job, esync.RunOptions{Trigger: esync.TriggerManual})
		fmt.Printf("%s: %s %v (err %v)\n", title, run.Status, run.Counts, err)
		ops, _ := env.Store.ListOperations(env.Ctx, run.ID, "")
		for _, o := range ops {
			fmt.Printf("  %s %s: %s\n", o.ExternalID, o.Action, o.Status)
		}
	}
	show("first run")
	show("second run")
	if _, err := env.Store.Pool().Exec(env.Ctx, `DELETE FROM entraprov.desired_users WHERE external_id = 'E2'`); err != nil {
		panic(err)
	}
	show("after E2 left")
	u, _ := env.Sim.User(env.Seeded.TenantID, "grace@"+env.Seeded.Domain)
	fmt.Println("grace enabled:", u.AccountEnabled)

	// Output:
	// first run: succeeded map[create:2 succeeded:2] (err <nil>)
	//   E1 create: succeeded
	//   E2 create: succeeded
	// second run: succeeded map[unchanged:2] (err <nil>)
	// after E2 left: succeeded map[disable:1 succeeded:1 unchanged:1] (err <nil>)
	//   E2 disable: succeeded
	// grace enabled: false
}
