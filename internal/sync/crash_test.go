package sync_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

var errCrashed = errors.New("simulated crash: the worker process died")

// crashStore lets a number of database writes through, then fails every
// write: what the rest of the run looks like when the process dies (nothing
// more reaches Postgres, not even the run's final status).
type crashStore struct {
	*store.Store
	left atomic.Int64
}

func (c *crashStore) alive() error {
	if c.left.Add(-1) < 0 {
		return errCrashed
	}
	return nil
}

func (c *crashStore) UpsertLinks(ctx context.Context, l []store.Link) error {
	if err := c.alive(); err != nil {
		return err
	}
	return c.Store.UpsertLinks(ctx, l)
}

func (c *crashStore) RecordOperations(ctx context.Context, o []store.Operation) error {
	if err := c.alive(); err != nil {
		return err
	}
	return c.Store.RecordOperations(ctx, o)
}

func (c *crashStore) CompleteOperations(ctx context.Context, o []store.Operation) error {
	if err := c.alive(); err != nil {
		return err
	}
	return c.Store.CompleteOperations(ctx, o)
}

func (c *crashStore) FinishRun(context.Context, *store.Run) error { return errCrashed }

func (c *crashStore) SaveJobState(ctx context.Context, s store.JobState) error {
	if err := c.alive(); err != nil {
		return err
	}
	return c.Store.SaveJobState(ctx, s)
}

// TestCrashSafety stops the first run at a random point, by cancellation
// (SIGTERM) or by a simulated process death, under injected Graph faults,
// then runs again. Invariants: the directory ends exactly as desired, no
// user is ever created twice, every operation row is final, the stopped run
// is recorded interrupted, and a third run has nothing left to do.
func TestCrashSafety(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 20; seed++ {
		mode := "cancel"
		if seed%2 == 0 {
			mode = "crash"
		}
		t.Run(fmt.Sprintf("%s_seed_%d", mode, seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 42))
			e := newEnv(t, graphsim.Options{Seed: int64(seed),
				Latency: graphsim.Latency{Write: 2 * time.Millisecond, Batch: 3 * time.Millisecond, Jitter: 0.5},
				Faults:  graphsim.Faults{Rate5xx: 0.03, DropRate: 0.01, CommitBeforeFault: 0.5}})
			e.eng.FlushSize, e.eng.FlushInterval = 16, 10*time.Millisecond
			ps := e.people(300, 1)
			for i := range ps {
				if i%10 != 0 {
					ps[i].Manager = ps[i-i%10].ExternalID // ten teams, leads first
				}
				ps[i].Groups = []string{e.seeded.GroupIDs["All Staff"]}
			}
			e.insert(ps...)
			// Writes before the stop: anywhere from the first flush to the
			// manager pass (about 300 creates + 270 managers + 300 adds).
			stopAt := 1 + rng.Int64N(60)

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var first store.Run
			var err error
			if mode == "cancel" {
				e.WrapDir = func(d esync.Directory) esync.Directory {
					return &afterResults{Directory: d, n: stopAt * 10, do: cancel}
				}
				first, err = e.eng.Run(ctx, e.job, esync.RunOptions{})
				// The error wraps the cancellation, so a caller can tell a
				// stop from a failure.
				if first.Status != store.RunInterrupted || !errors.Is(err, context.Canceled) {
					t.Fatalf("stopped run: status %q, err %v; want interrupted, wrapping context.Canceled", first.Status, err)
				}
			} else {
				cs := &crashStore{Store: e.st}
				cs.left.Store(stopAt)
				eng := *e.eng
				eng.Store = cs
				first, err = eng.Run(ctx, e.job, esync.RunOptions{})
				if !errors.Is(err, errCrashed) {
					t.Fatalf("crashed run: %v; want the simulated crash", err)
				}
			}
			e.WrapDir = nil

			second := e.run(esync.RunOptions{}, store.RunSucceeded)
			got, gerr := e.st.GetRun(e.ctx, first.ID)
			if gerr != nil || got.Status != store.RunInterrupted {
				t.Fatalf("stopped run %d recorded %q (%v); want interrupted", first.ID, got.Status, gerr)
			}
			var open int
			if err := e.st.Pool().QueryRow(e.ctx, `SELECT count(*) FROM entraprov.sync_operations
				WHERE status NOT IN ('succeeded','failed','skipped','not_started','interrupted')`).Scan(&open); err != nil || open != 0 {
				rows, _ := e.st.Pool().Query(e.ctx, `SELECT run_id, seq, external_id, action, status FROM entraprov.sync_operations
					WHERE status NOT IN ('succeeded','failed','skipped','not_started','interrupted')`)
				for rows.Next() {
					var run, seq int64
					var x, a, st string
					rows.Scan(&run, &seq, &x, &a, &st)
					t.Logf("open: run %d seq %d %s %s %s", run, seq, x, a, st)
				}
				rows.Close()
				t.Fatalf("%d operation rows without a final status (%v)", open, err)
			}
			if d := e.sim.Counters().Duplicates(); len(d) > 0 {
				t.Fatalf("users created twice: %v", d)
			}
			live := e.live()
			if len(live) != len(ps) {
				t.Fatalf("directory holds %d users; want %d", len(live), len(ps))
			}
			ids := map[string]string{}
			for _, p := range ps {
				u, ok := live[strings.ToLower(p.UPN)]
				if !ok || !u.AccountEnabled || u.DisplayName != p.DisplayName {
					t.Fatalf("user %s = %+v; want it live, enabled, named %q", p.UPN, u, p.DisplayName)
				}
				ids[p.ExternalID] = u.ID
			}
			for _, p := range ps {
				u := live[strings.ToLower(p.UPN)]
				if p.Manager != "" && u.ManagerID != ids[p.Manager] {
					t.Fatalf("manager of %s = %q; want %q", p.ExternalID, u.ManagerID, ids[p.Manager])
				}
				if len(u.Groups) != 1 {
					t.Fatalf("groups of %s = %v; want All Staff", p.ExternalID, u.Groups)
				}
			}
			if s := e.linkStates(); s[store.LinkActive] != len(ps) {
				t.Fatalf("links %v; want %d active", s, len(ps))
			}
			e.sim.ResetCounters()
			e.sim.SetFaults(graphsim.Faults{})
			third := e.run(esync.RunOptions{}, store.RunSucceeded)
			if w := e.sim.Counters().Writes; w != 0 {
				t.Fatalf("third run wrote %d times (counts %v); after the recovery run nothing should be left", w, third.Counts)
			}
			t.Logf("stopped after %v; recovery run counts %v", first.Counts, second.Counts)
		})
	}
}

// TestSecretsNeverLeak: the initial passwords the engine generates, the
// client secret and access tokens appear neither in the logs nor anywhere
// in the database (pg_dump of the whole database).
func TestSecretsNeverLeak(t *testing.T) {
	t.Parallel()
	e := newEnv(t, graphsim.Options{})
	e.insert(e.people(50, 1)...)
	e.run(esync.RunOptions{}, store.RunSucceeded)
	// One failing create too: error paths must not leak either.
	bad := e.people(1, 99)[0]
	e.sim.AddUser(e.seeded.TenantID, graphsim.UserSeed{UserPrincipalName: "someone@" + e.seeded.Domain, DisplayName: "x", AccountEnabled: true})
	bad.UPN = "someone@" + e.seeded.Domain
	e.job.Matching.AdoptBy = "none"
	e.insert(bad)
	e.run(esync.RunOptions{}, store.RunPartial)

	if len(e.Passwords()) != 50 {
		t.Fatalf("saw %d passwords; want 50", len(e.Passwords()))
	}
	dump, err := exec.Command("/usr/lib/postgresql/15/bin/pg_dump", "--data-only", "--dbname", e.dbURL).CombinedOutput()
	if err != nil {
		dump, err = exec.Command("pg_dump", "--data-only", "--dbname", e.dbURL).CombinedOutput()
	}
	if err != nil {
		t.Fatalf("pg_dump: %v: %s", err, dump)
	}
	if !strings.Contains(string(dump), "sync_operations") || !strings.Contains(string(dump), "E000001") {
		t.Fatal("the dump does not hold the history; the check would prove nothing")
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "run finished") {
		t.Fatal("no logs captured; the check would prove nothing")
	}
	jwt := regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+`) // header.claims.signature
	for where, text := range map[string]string{"logs": logs, "database": string(dump)} {
		for _, pw := range e.Passwords() {
			if strings.Contains(text, pw) {
				t.Fatalf("an initial password appears in the %s", where)
			}
		}
		if strings.Contains(text, e.seeded.ClientSecret) {
			t.Fatalf("the client secret appears in the %s", where)
		}
		if m := jwt.FindString(text); m != "" {
			t.Fatalf("an access token appears in the %s: %.40s…", where, m)
		}
		if strings.Contains(strings.ToLower(text), "passwordprofile") {
			t.Fatalf("a passwordProfile appears in the %s", where)
		}
	}
}
