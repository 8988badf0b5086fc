package store_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/entraprov/entraprov/internal/store"
)

// The typed counts keep the stored shape of sync_runs.counts (and of
// `--json` output and webhooks): one flat object of actions, statuses and
// named counters, so no migration and no reader of old rows changes.
func TestRunCountsKeepTheFlatJSONShape(t *testing.T) {
	tests := []struct {
		name string
		flat string
		want store.RunCounts
	}{
		{"empty", `{}`, store.RunCounts{}},
		{"actions_statuses_and_named",
			`{"create":3,"disable":1,"succeeded":3,"failed":1,"skipped":2,"unchanged":10,"backing_off":2,"failed_unsent":1,"withheld":4,"approved_run":7,"allow_deletes":1}`,
			store.RunCounts{ByAction: map[string]int{"create": 3, "disable": 1},
				ByStatus:  map[store.OpStatus]int{store.OpSucceeded: 3, store.OpFailed: 1, store.OpSkipped: 2},
				Unchanged: 10, BackingOff: 2, FailedUnsent: 1, Withheld: 4, ApprovedRun: 7, AllowDeletes: 1}},
		{"skip_is_an_action_skipped_a_status", `{"skip":1,"skipped":1}`,
			store.RunCounts{ByAction: map[string]int{"skip": 1}, ByStatus: map[store.OpStatus]int{store.OpSkipped: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got store.RunCounts
			if err := json.Unmarshal([]byte(tt.flat), &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("decoded %+v; want %+v", got, tt.want)
			}
			b, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			var back, orig map[string]int
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			_ = json.Unmarshal([]byte(tt.flat), &orig)
			if !reflect.DeepEqual(back, orig) {
				t.Fatalf("encoded %s; want the flat object %s", b, tt.flat)
			}
		})
	}
}
