package sync_test

import (
	"context"
	"sync/atomic"

	"github.com/entraprov/entraprov/internal/directory"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// afterResults wraps the engine's directory and calls do once, when the
// n-th result has come back from the executor: the tests' way of stopping
// or breaking a run at a chosen point of its writes. The run goes on
// unless do stops it.
type afterResults struct {
	esync.Directory
	n    int64
	do   func()
	seen atomic.Int64
}

func (a *afterResults) Stats() directory.Stats {
	return a.Directory.(interface{ Stats() directory.Stats }).Stats()
}

func (a *afterResults) Execute(ctx context.Context, ops <-chan directory.Operation, results chan<- directory.Result) directory.Stats {
	return tapResults(ctx, a.Directory, ops, results, func(directory.Result) {
		if a.seen.Add(1) == a.n {
			a.do()
		}
	})
}

// tapResults runs d.Execute and shows each result to see before the engine
// gets it.
func tapResults(ctx context.Context, d esync.Directory, ops <-chan directory.Operation, results chan<- directory.Result, see func(directory.Result)) directory.Stats {
	tapped := make(chan directory.Result)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for r := range tapped {
			see(r)
			results <- r
		}
	}()
	s := d.Execute(ctx, ops, tapped)
	close(tapped)
	<-done
	return s
}
