package main

// Provision on demand: `worker sync --user` and `worker plan --user` run
// one user through the whole path (esync.RunOptions.User) and print its
// trace, for an operator debugging one person.

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	gosync "sync"

	"github.com/spf13/cobra"

	"github.com/entraprov/entraprov/internal/profile"
	"github.com/entraprov/entraprov/internal/store"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// onDemandHelp is the part of sync's and plan's help about --user.
const onDemandHelp = `

With --user EXTERNAL_ID only that user is run through the whole path (provision
on demand) and its trace is printed: the source row, the mirror's view of its
directory user, the decision and why (steps, from → to of each changed
attribute), each Graph request and answer (method, path, HTTP status,
request-id, the attribute names sent, never a password) and the history rows
written. The run holds the job's lock (it never runs beside a full run) and is
recorded with trigger "manual"; it is never blocked or withheld by the change
budget (one user is not a mass event) and spends none of it, tries the user
whatever its back-off, and leaves the job's health (last success, failure
count, quarantine) as it was. An external_id neither in the source nor linked
by the job exits 1 without recording a run.`

// traceFlags are the flags of a one-user run.
type traceFlags struct {
	user   string
	asJSON bool
}

func (f *traceFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.user, "user", "", "run only the user of this external_id and print its trace (provision on demand)")
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "with --user: print the trace as JSON")
}

// runUser runs one user of the job in mode and prints its trace.
func runUser(cmd *cobra.Command, jobName string, f traceFlags, mode esync.Mode) error {
	var (
		mu     gosync.Mutex
		events []esync.TraceEvent
		ops    []store.Operation
	)
	opts := esync.RunOptions{Trigger: esync.TriggerManual, Mode: mode, User: f.user, Trace: func(ev esync.TraceEvent) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	}}
	run, err := runOnce(cmd, jobName, opts, func(ctx context.Context, st *store.Store, run store.Run) error {
		all, err := st.ListOperations(ctx, run.ID, "")
		ops = all
		return err
	})
	if err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	w := cmd.OutOrStdout()
	if f.asJSON {
		h := make([]opJSON, len(ops))
		for i, o := range ops {
			h[i] = toOpJSON(o)
		}
		if err := writeJSON(w, map[string]any{"user": f.user, "run": toRunJSON(run), "trace": events, "history": h}); err != nil {
			return err
		}
	} else if err := printTrace(w, f.user, run, events, ops); err != nil {
		return err
	}
	switch run.Status {
	case store.RunSucceeded:
		return nil
	case store.RunPartial:
		// One user: its failure is the run's.
		return withExit(exitFail, fmt.Errorf("run %d: user %s: %s", run.ID, f.user, run.ErrorSummary))
	default:
		return withExit(exitFail, fmt.Errorf("run %d %s: %s", run.ID, run.Status, run.ErrorSummary))
	}
}

func toOpJSON(o store.Operation) opJSON {
	return opJSON{Seq: o.Seq, ExternalID: o.ExternalID, ObjectID: o.ObjectID, Action: o.Action, Status: string(o.Status),
		Changes: o.Changes, HTTPStatus: o.HTTPStatus, ErrorCode: o.ErrorCode, Message: o.Message, RequestID: o.RequestID,
		Attempts: o.Attempts, LatencyMS: o.LatencyMS, At: o.At}
}

// printTrace prints a one-user run for people: sections in the order the
// user went through them.
func printTrace(w io.Writer, xid string, run store.Run, events []esync.TraceEvent, ops []store.Operation) error {
	p := &tracePrinter{w: w}
	p.f("user %s · job %s · run %d (%s, %s, this user only)\n", xid, run.Job, run.ID, run.Trigger, run.Mode)
	for _, ev := range events {
		switch ev.Kind {
		case esync.TraceSource:
			p.source(ev)
		case esync.TraceDecision:
			p.decision(ev.Decision)
		case esync.TraceRequest:
			r := ev.Request
			p.f("\n→ %s %s   (seq %d, %s)\n", r.Method, r.Path, r.Seq, r.Action)
			if len(r.Attributes) > 0 {
				p.f("    sent: %s\n", strings.Join(r.Attributes, ", "))
			}
		case esync.TraceAnswer:
			a := ev.Answer
			p.f("← %s %s   request-id %s", orDash(httpStatus(a.HTTPStatus)), a.Status, orDash(a.RequestID))
			if a.Attempts > 1 {
				p.f(", %d attempts", a.Attempts)
			}
			p.f(", %d ms\n", a.LatencyMS)
			if a.ObjectID != "" && a.Action == esync.ActCreate {
				p.f("    created object: %s\n", a.ObjectID)
			}
			if a.ErrorCode != "" || a.Message != "" {
				p.f("    %s\n", strings.TrimPrefix(strings.TrimSpace(a.ErrorCode+": "+a.Message), ": "))
			}
		}
	}
	p.f("\nhistory (run %d)\n", run.ID)
	if len(ops) == 0 {
		p.f("  no rows: nothing to change for this user\n")
	}
	for _, o := range ops {
		p.f("  seq %d  %s  %s", o.Seq, o.Action, o.Status)
		if o.HTTPStatus != 0 {
			p.f("  %d", o.HTTPStatus)
		}
		if o.RequestID != "" {
			p.f("  request-id %s", o.RequestID)
		}
		p.f("\n")
		if o.ErrorCode != "" {
			p.f("    error: %s\n", o.ErrorCode)
		}
		if o.Message != "" {
			p.f("    %s\n", o.Message)
		}
	}
	p.f("\nrun %d %s", run.ID, run.Status)
	if run.ErrorSummary != "" {
		p.f(": %s", run.ErrorSummary)
	}
	p.f("\n")
	return p.err
}

type tracePrinter struct {
	w   io.Writer
	err error
}

func (p *tracePrinter) f(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

func httpStatus(s int) string {
	if s == 0 {
		return ""
	}
	return fmt.Sprint(s)
}

func (p *tracePrinter) source(ev esync.TraceEvent) {
	row := ev.Row
	if ev.Pass == 2 {
		p.f("\npass 2 (steps that waited for objects created in pass 1)\n")
		return // the row is the same; the decision below is what changed
	}
	p.f("\nsource row\n")
	if d := row.Desired; d == nil {
		p.f("  not in the source (a leaver: the job's leaver policy applies)\n")
	} else {
		p.kv(profile.Default.Pairs(d.Attrs)...)
		p.kv("accountEnabled", fmt.Sprint(d.AccountEnabled), "manager_external_id", d.ManagerExternalID,
			"groups", strings.Join(d.Groups, ", "))
		if row.SourceRows > 1 {
			p.f("  (%d source rows carry this external_id)\n", row.SourceRows)
		}
	}
	p.f("\nlink\n")
	if l := row.Link; l == nil {
		p.f("  none: never provisioned by this job\n")
	} else {
		p.kv("object", l.ObjectID, "state", string(l.State), "userPrincipalName", l.UserPrincipalName,
			"manager", l.ManagerObjectID, "groups", strings.Join(l.Groups, ", "))
	}
	p.f("\ndirectory (the job's mirror)\n")
	switch u := row.Current; {
	case u != nil:
		p.mirror(u)
	case row.Candidate != nil:
		p.f("  no linked user; an unlinked user matches by UPN or employeeId:\n")
		p.mirror(row.Candidate)
		if row.CandidateOwner != "" {
			p.f("  (linked by job %s as %s)\n", row.CandidateOwner, row.CandidateOwnerID)
		}
	default:
		p.f("  no such user\n")
	}
}

func (p *tracePrinter) mirror(u *store.DirectoryUser) {
	state := "enabled"
	if !u.AccountEnabled {
		state = "disabled"
	}
	if u.Deleted {
		state = "deleted (restorable)"
	}
	p.kv("object", u.ObjectID, "state", state)
	p.kv(profile.Default.Pairs(u.Attrs)...)
	p.kv("mail", u.Mail, "manager", u.ManagerObjectID)
}

// kv prints the non-empty name/value pairs kvs, aligned.
func (p *tracePrinter) kv(kvs ...string) {
	for i := 0; i+1 < len(kvs); i += 2 {
		if kvs[i+1] != "" {
			p.f("  %-20s %s\n", kvs[i], kvs[i+1])
		}
	}
}

func (p *tracePrinter) decision(d *esync.Decision) {
	p.f("\ndecision: ")
	if d.Unchanged() {
		p.f("unchanged (the directory matches the source)\n")
		return
	}
	p.f("%s\n", d.Primary())
	for _, n := range d.Notes {
		p.f("  note: %s\n", n)
	}
	if d.Rekey != nil {
		p.f("  re-key: the link moves from external_id %s\n", d.Rekey.From)
	}
	for i, st := range d.Steps {
		p.f("  step %d: %s", i+1, st.Action)
		switch {
		case st.Failure != "":
			p.f(" (fails: %s)", st.Failure)
		case st.Deferred:
			p.f(" (waits for pass 2)")
		}
		p.f("\n")
		if st.Message != "" {
			p.f("    %s\n", st.Message)
		}
		for _, k := range slices.Sorted(maps.Keys(st.Changes)) {
			p.f("    %s: %s\n", k, fmtChange(st.Changes[k]))
		}
	}
}

// fmtChange shows a recorded change: "from → to" for an attribute, the
// value for anything else. Changes never hold a secret.
func fmtChange(v any) string {
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Sprint(v)
	}
	from, hasFrom := m["from"]
	to, hasTo := m["to"]
	if !hasFrom && !hasTo {
		return fmt.Sprint(v)
	}
	return fmtValue(from) + " → " + fmtValue(to)
}

func fmtValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "(none)"
	case string:
		if x == "" {
			return "(none)"
		}
		return fmt.Sprintf("%q", x)
	}
	return fmt.Sprint(v)
}
