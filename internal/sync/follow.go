package sync

import (
	"context"
	"errors"
	gosync "sync"
	"time"

	"github.com/entraprov/entraprov/internal/directory"
)

// A follower looks every followEvery whether a delta round is due: when
// the run made followBatch writes since the last round, or any write and
// followIdle passed. So a pass at a tenant's full write rate is read back
// a few times a second, and one at a trickle (a daemon's many jobs sharing
// the app's quota) costs a delta request every few seconds, not ten a
// second (a round costs a request, and a resource unit, per page).
const (
	followEvery = 100 * time.Millisecond
	followBatch = 200
	followIdle  = 2 * time.Second
)

// followHold bounds how many directory users a follower holds in memory
// while it may not write the mirror (about 1 kB each); past it, reading
// waits for the pass's source read to end.
const followHold = 20_000

// errFollowReset ends a follower whose delta link was refused: a full read
// is the closing refresh's to do (it empties the mirror first).
var errFollowReset = errors.New("the delta link was refused; the closing refresh reads the whole tenant")

// follower reads a pass's own writes back from Graph while the pass is
// still sending. A pass spends most of its time waiting on Graph's write
// quota, and reading back what it already wrote meanwhile (delta reads do
// not draw on the write quota) leaves the refresh that closes the run with
// the writes of the last round only, instead of every write of the run
// after the last one is answered.
//
// It must not write the mirror while the pass's source read is open: that
// read looks up mirror rows per source row, with a plan made when the
// mirror was small (empty, on a first run), and rows written under it make
// each lookup wade through them (measured: a 10,000-user first run went
// from 8 s to over a minute). Until the pass says its read is over
// (sourceDone), rounds gather what they read in memory (at most
// followHold users); then the follower writes it with the delta link
// that covers it, and writes each later round at once. A round that fails
// is logged and read again by the next one (the link moves only with a
// completed round); whatever the follower did not write, the closing
// refresh reads from the last saved link, so nothing is missed.
type follower struct {
	r       *runner
	written func() int // the run's writes so far; a round runs when it grew
	start   int        // written() when the follower started
	link    string     // the delta link the next round starts from
	cancel  context.CancelFunc
	done    chan struct{}

	mu       gosync.Mutex
	canWrite bool // the pass's source read is over
	wake     chan struct{}

	// Owned by the follower's goroutine until done is closed.
	pending map[string]directory.User // read, not yet in the mirror
	unsaved bool                      // link is ahead of the saved one
	broken  bool                      // stop following (link refused, or a write failed)
}

// followMirror starts a follower for a pass, from the delta link saved by
// the run's last refresh. It returns nil when there is nothing to follow
// from.
func (r *runner) followMirror(ctx context.Context, written func() int) *follower {
	st, err := r.e.Store.GetJobState(ctx, r.job.Name)
	if err != nil || st.DeltaLink == "" {
		return nil
	}
	fctx, cancel := context.WithCancel(ctx)
	f := &follower{r: r, written: written, start: written(), link: st.DeltaLink, cancel: cancel, done: make(chan struct{}),
		wake: make(chan struct{}, 1), pending: map[string]directory.User{}}
	go f.loop(fctx, ctx)
	return f
}

// sourceDone says the pass's source read is over: the mirror may be
// written from now on.
func (f *follower) sourceDone() {
	if f == nil {
		return
	}
	f.mu.Lock()
	f.canWrite = true
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *follower) writable() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.canWrite
}

// stop ends the follower. Called once every request of the pass is
// answered, it reads a last round if the pass wrote anything, and writes
// what it holds with the link that covers it (when the source read is over
// and ctx is live). caughtUp says the mirror then holds every write of the
// pass, so the run need not refresh it again; otherwise the refresh starts
// from the last link saved.
func (f *follower) stop(ctx context.Context) (caughtUp bool) {
	if f == nil {
		return false
	}
	f.cancel()
	<-f.done
	if f.broken || !f.writable() || ctx.Err() != nil {
		return false
	}
	r := f.r
	defer r.phases.time("mirror_after")()
	caughtUp = f.written() != f.start
	if caughtUp {
		if err := f.round(ctx, ctx); err != nil {
			r.log.DebugContext(ctx, "could not read the pass's last writes back; the closing refresh reads them", "err", err)
			caughtUp = false
		}
	}
	if f.broken {
		return false
	}
	if err := f.write(ctx); err != nil {
		r.log.DebugContext(ctx, "could not write the writes read back; the closing refresh reads them", "err", err)
		return false
	}
	return caughtUp
}

// loop runs rounds under ctx, which stop cancels, and writes under wctx (the
// pass's), so that stopping interrupts a read but never a write under way.
func (f *follower) loop(ctx, wctx context.Context) {
	defer close(f.done)
	r := f.r
	seen, last := f.start, time.Now()
	tick := time.NewTicker(followEvery)
	defer tick.Stop()
	for !f.broken {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-f.wake:
		}
		n := f.written()
		due := n-seen >= followBatch || (n != seen && time.Since(last) >= followIdle)
		if due && len(f.pending) < followHold {
			last = time.Now()
			end := r.phases.time("mirror_follow")
			err := f.round(ctx, wctx)
			end()
			if err != nil {
				if ctx.Err() == nil {
					r.log.DebugContext(ctx, "reading the run's writes back failed; a later round or the closing refresh reads them", "err", err)
				}
				continue
			}
			seen = n
		}
		if f.writable() && (f.unsaved || len(f.pending) > 0) {
			end := r.phases.time("mirror_follow")
			err := f.write(wctx)
			end()
			if err != nil && wctx.Err() == nil {
				r.log.DebugContext(ctx, "could not write the writes read back; a later round or the closing refresh does", "err", err)
			}
		}
	}
}

// round reads one delta round into pending and moves the link past it.
// Once the mirror may be written, it writes pending as it goes (every
// 1,000 users, like refreshMirror) under wctx, so a long round holds no
// more than that: the first round after the source read may carry most of
// the pass's writes.
func (f *follower) round(ctx, wctx context.Context) error {
	writable := f.writable()
	link, _, err := f.r.dir.Delta(ctx, f.link,
		func(context.Context) error {
			f.broken = true
			clear(f.pending)
			return errFollowReset
		},
		func(u directory.User) error {
			f.pending[u.ObjectID] = u // a user may appear twice: the last one wins
			if writable && len(f.pending) >= 1000 {
				if err := f.r.writeMirror(wctx, f.pending); err != nil {
					f.broken = true // what it held is gone: its link must never be saved
					return err
				}
			}
			return nil
		})
	if err != nil {
		return err
	}
	f.link, f.unsaved = link, true
	return nil
}

// write puts pending into the mirror, then saves the link that covers it.
// A failed write ends the follower: what it held is gone, so its link must
// never be saved.
func (f *follower) write(ctx context.Context) error {
	r := f.r
	if err := r.writeMirror(ctx, f.pending); err != nil {
		f.broken = true
		return err
	}
	if !f.unsaved {
		return nil
	}
	st, err := r.e.Store.GetJobState(ctx, r.job.Name)
	if err != nil {
		return err
	}
	st.DeltaLink = f.link
	if err := r.e.Store.SaveJobState(ctx, st); err != nil {
		return err
	}
	f.unsaved = false
	return nil
}

// writesSoFar is how many operations of the run Graph applied so far.
func (r *runner) writesSoFar() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.writes
}
