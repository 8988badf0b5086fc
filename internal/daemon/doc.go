// Package daemon is `worker run`: the long-running service that runs the
// scheduler for the configured jobs until it is stopped.
//
// It owns, for the life of the process: closing runs a stopped worker left
// running; the scheduler (jobs.Scheduler) with the quarantine policy and
// the max_concurrent_jobs cap (a reload may lower it live); the
// /metrics and /healthz server; reload of the jobs on SIGHUP (a broken
// configuration is refused and the running jobs kept) and, for template
// jobs, every tenants.refresh: their tenants relations read again
// (internal/tenants) so a customer inserted or disabled there is scheduled
// or stopped without a restart; the jobs' credential expiry (gauge and
// log warning), read at start, on reload and every 12 h; the systemd
// protocol (READY, RELOADING, STOPPING, STATUS= and the watchdog ping,
// withheld while the scheduler does not answer); the webhook events of
// finished runs; the history retention loop; and the orderly stop that
// records runs which did not wind down in time as interrupted.
//
// It must not parse flags, load or validate the configuration file, open
// the database or choose exit codes: cmd/worker does that and hands over
// what it built (Options). It must not decide what a run does (that is the
// engine, internal/sync, behind jobs.Runner) nor when a job is quarantined
// (internal/jobs); it only reports those decisions.
package daemon
