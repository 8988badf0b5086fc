// Package sync is the reconcile engine: it decides what to change in the
// directory for each desired user of a job, and applies those changes.
//
// It has two halves. The planner (Plan, Validate, Policy) is pure: a
// store.SourceRow (source ⋈ link ⋈ mirror for one external_id) goes in, a
// Decision (zero or more Steps, each one history row and at most one Graph
// request) comes out; it does no I/O, reads no clock and draws no random
// numbers, so every transition is a table test. The Engine wraps it with the
// I/O of a run: job lock, run row, mirror refresh through delta, streaming the
// source, the change budget (budget.go), feeding the directory's batch executor and
// writing links, operation rows and job state as results come back.
//
// A run in apply mode: MarkInterrupted (runs of dead workers), LeaseJob
// (held elsewhere: skipped, nothing recorded; see lease.go for the fence
// and the watchdog that stop a run which lost its lock), StartRun, the
// attributes the job owns (JobSchema: the source contract, then one
// aggregate read of which schema-7 profile columns any row fills and
// whether the job manages groups; fixed for the whole run), the tenant's
// consent recorded against what that needs (ConsentRecorder), a delta
// refresh of
// the mirror, then one planning pass that only counts the
// destructive changes per kind against the job's change budget (over a
// bound, or with --approve a plan holding changes the approved one did not:
// the plan is recorded "planned", the run is "blocked", nothing is
// written). That pass, the stored plan and pass 1 read one exported
// snapshot. Pass 1 streams the source, plans each user and feeds the
// executor while later users are still being planned; every destructive
// step asks the budget first, and past a bound it is recorded "planned"
// (withheld) instead of sent and the run ends "blocked" — so a source that
// changes between the reads (a volatile function, a foreign table) cannot
// disable more than the bound;
// a create's "creating" link is durable before the create is sent, and
// links and operation rows are written in batches as results arrive. Steps
// that need an object created or restored in pass 1 (managers, groups, the
// follow-up of a restore) are replanned in pass 2 after another delta
// refresh. A last delta refresh reads the run's own changes, so a quiet
// night costs one request. Plan mode records the same plan and sends
// nothing.
//
// An apply pass is a pipeline, one file per stage: admit.go turns a source
// row into the user's pending operations (plan, back-off, re-key, budget),
// the executor sends them, settle.go turns each result into the completion
// of its history row and, after the user's last step, its link, and
// recorder.go writes links and rows in batches for both ends (apply.go
// wires them). ExampleEngine_Run (example_test.go) shows a run end to end.
//
// The engine talks to Postgres and Graph only through the interfaces
// declared here (Store: Source, History, State, Backoff; Directory), which
// internal/store and internal/directory implement; every part of them is
// required. Inside the project this package is imported as esync (its own
// files import the standard library's sync as gosync).
//
// What this package must not do: touch a directory user that no link of the
// job names (except adopting one when the job's matching rule allows it, or
// recovering a create of our own whose answer was lost); keep all users of a
// job in memory; store, log or return an initial password; parse Graph error
// messages (it branches on directory.GraphError codes only).
package sync
