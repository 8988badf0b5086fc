package directory_test

import (
	"context"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/graphsim"
)

// hangAfter bounds the wait for Execute to return once its work is done. It
// detects a hang (the contract broken), it does not measure speed: a
// correct executor returns as soon as it sees the last result delivered.
const hangAfter = 30 * time.Second

// TestExecuteReturnsAfterLastResult is the contract the engine relies on
// (internal/sync/apply.go waits for Execute with no timer of its own): with
// a context that is never cancelled, Execute returns once ops is closed
// and every operation it took has its result delivered, whatever the order
// of the close and the last result, and it answers each operation exactly
// once without closing results.
func TestExecuteReturnsAfterLastResult(t *testing.T) {
	e := newEnv(t, graphsim.Options{}, nil)
	failOp := func(key int64) directory.Operation { // a 404: a failed result
		return directory.Operation{Key: key, Kind: directory.OpUpdate, ObjectID: "00000000-0000-0000-0000-00000000dead",
			Fields: map[string]any{"jobTitle": "x"}}
	}
	cases := []struct {
		name string
		ops  int
		fail int
		// closeLate closes ops only after every result was read, so the
		// executor sits idle, all answered, and must notice the close.
		closeLate bool
	}{
		{name: "no_operations", ops: 0},
		{name: "close_before_results", ops: 45, fail: 3},
		{name: "close_after_every_result", ops: 45, fail: 3, closeLate: true},
		{name: "one_operation_close_after_result", ops: 1, closeLate: true},
	}
	next := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ops := make(chan directory.Operation)
			results := make(chan directory.Result) // unbuffered: delivered means received
			done := make(chan directory.Stats, 1)
			go func() { done <- e.c.Execute(context.Background(), ops, results) }()

			want := map[int64]bool{}
			go func() {
				for i := range tc.ops {
					next++
					op := createOp(int64(i), e.seeded.Domain, next)
					if i < tc.fail {
						op = failOp(int64(i))
					}
					ops <- op
				}
				if !tc.closeLate {
					close(ops)
				}
			}()
			for i := range tc.ops {
				want[int64(i)] = true
			}
			failed := 0
			for range tc.ops {
				r := <-results
				if !want[r.Key] {
					t.Fatalf("result for key %d: unknown or answered twice", r.Key)
				}
				delete(want, r.Key)
				if r.Outcome == directory.Failed {
					failed++
				}
			}
			if failed != tc.fail {
				t.Errorf("%d failed results; want %d", failed, tc.fail)
			}
			if tc.closeLate {
				close(ops)
			}
			select {
			case <-done:
			case r := <-results:
				t.Fatalf("result after the last operation was answered: %+v", r)
			case <-time.After(hangAfter):
				t.Fatal("Execute did not return after ops was closed and every result was delivered")
			}
			close(results) // Execute must not have closed it (a second close panics)
		})
	}
}
