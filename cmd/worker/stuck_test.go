package main

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/testdb"
)

// `worker show --stuck` lists the user failing the same way in each of the
// last runs, with its last request id, and not the one that recovered.
func TestShowStuckCommand(t *testing.T) {
	url := testdb.NewURL(t)
	db := "--database-url=" + url
	runCases(t, []cliCase{
		{name: "no_runs_is_friendly", args: []string{"show", "--stuck", db}, code: exitOK,
			contains: []string{"no user of any job failed the same way in each of its last 3 apply runs"}},
		{name: "bad_runs_is_usage", args: []string{"show", "--stuck", "--runs", "0", db}, code: exitUsage},
		{name: "run_id_with_stuck_is_usage", args: []string{"show", "--stuck", "1", db}, code: exitUsage},
		{name: "job_without_stuck_is_usage", args: []string{"show", "1", "--job", "nightly", db}, code: exitUsage},
	})

	st := openStore(t, url)
	ctx := context.Background()
	var last int64
	for i := range 4 {
		r := &store.Run{Job: "nightly", Trigger: "schedule", Mode: "apply"}
		if err := st.StartRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		ops := []store.Operation{
			{RunID: r.ID, Seq: 1, ExternalID: "E100", Action: "update", Status: store.OpPending},
			{RunID: r.ID, Seq: 2, ExternalID: "E200", Action: "create", Status: store.OpPending},
		}
		if err := st.RecordOperations(ctx, ops); err != nil {
			t.Fatal(err)
		}
		e200 := store.Operation{RunID: r.ID, Seq: 2, Status: store.OpFailed, HTTPStatus: 400,
			ErrorCode: "Request_BadRequest", Message: "Another object with the same value for property userPrincipalName already exists.",
			RequestID: fmt.Sprintf("req-%d", r.ID), Attempts: 1}
		if i == 3 { // E200 recovers in the last run
			e200 = store.Operation{RunID: r.ID, Seq: 2, Status: store.OpSucceeded, HTTPStatus: 201, ObjectID: "obj-200", Attempts: 1}
		}
		err := st.CompleteOperations(ctx, []store.Operation{
			{RunID: r.ID, Seq: 1, Status: store.OpFailed, HTTPStatus: 400, ErrorCode: "Request_BadRequest",
				Message: "Invalid value specified for property 'usageLocation'.", RequestID: fmt.Sprintf("req-%d", r.ID), Attempts: 1},
			e200,
		})
		if err != nil {
			t.Fatal(err)
		}
		r.Status = store.RunPartial
		if err := st.FinishRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		last = r.ID
	}
	runCases(t, []cliCase{
		{name: "stuck_lists_the_user", args: []string{"show", "--stuck", "--job", "nightly", db}, code: exitOK,
			contains: []string{"EXTERNAL_ID", "E100", "update", "400",
				"Request_BadRequest: Invalid value specified for property 'usageLocation'.", fmt.Sprintf("req-%d", last)},
			absent: []string{"E200"}},
		{name: "stuck_of_unknown_job_is_usage", args: []string{"show", "--stuck", "--job", "other", db}, code: exitUsage,
			contains: []string{`no job "other"`, "nightly"}},
	})

	// E300 is backed off: its last runs skipped it, so only its back-off
	// row says it is stuck, with the next attempt.
	next := time.Now().Add(50 * time.Hour).UTC().Truncate(time.Second)
	err := st.SaveUserBackoffs(ctx, []store.UserBackoff{{Job: "nightly", ExternalID: "E300", DesiredHash: "h", Action: "update",
		HTTPStatus: 400, ErrorCode: "Request_BadRequest", Message: "Invalid value specified for property 'mobilePhone'.",
		RequestID: "req-e300", Failures: 5, FirstFailedAt: next.Add(-200 * time.Hour), LastFailedAt: next.Add(-50 * time.Hour),
		LastRunID: last, NextAttemptAt: next}})
	if err != nil {
		t.Fatal(err)
	}
	runCases(t, []cliCase{
		{name: "stuck_lists_the_backed_off_user_with_its_next_attempt", args: []string{"show", "--stuck", "--job", "nightly", db},
			code: exitOK, contains: []string{"NEXT_ATTEMPT", "E300", "'mobilePhone'", "req-e300", fmtTime(next)}},
	})

	out, _, err := runWorker(t, "show", "--stuck", "--runs", "4", "--json", db)
	if err != nil {
		t.Fatal(err)
	}
	var got []stuckJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("show --stuck --json is not JSON: %v\n%s", err, out)
	}
	if len(got) != 2 || got[1].ExternalID != "E100" || got[1].Runs != 4 || got[1].RunID != last ||
		got[1].RequestID != fmt.Sprintf("req-%d", last) || got[1].HTTPStatus != 400 || !got[1].FirstAt.Before(got[1].LastAt) ||
		got[1].NextAttemptAt != nil || got[1].Failures != 0 {
		t.Fatalf("show --stuck --runs 4 --json = %+v; want E100 over 4 runs, not backed off", got)
	}
	if e := got[0]; e.ExternalID != "E300" || e.Runs != 5 || e.Failures != 5 || e.NextAttemptAt == nil || !e.NextAttemptAt.Equal(next) {
		t.Fatalf("show --stuck --json first entry = %+v; want E300 with 5 identical failures and its next attempt %v", e, next)
	}
}
