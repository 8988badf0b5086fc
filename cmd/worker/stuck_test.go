package main

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

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
		{name: "run_id_with_stuck_is_an_error", args: []string{"show", "--stuck", "1", db}, code: exitFail},
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
		{name: "stuck_over_fewer_runs_has_no_one", args: []string{"show", "--stuck", "--job", "other", db}, code: exitOK,
			contains: []string{"no user of job other"}},
	})

	out, _, err := runWorker(t, "show", "--stuck", "--runs", "4", "--json", db)
	if err != nil {
		t.Fatal(err)
	}
	var got []stuckJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("show --stuck --json is not JSON: %v\n%s", err, out)
	}
	if len(got) != 1 || got[0].ExternalID != "E100" || got[0].Runs != 4 || got[0].RunID != last ||
		got[0].RequestID != fmt.Sprintf("req-%d", last) || got[0].HTTPStatus != 400 || !got[0].FirstAt.Before(got[0].LastAt) {
		t.Fatalf("show --stuck --runs 4 --json = %+v; want E100 over 4 runs", got)
	}
}
