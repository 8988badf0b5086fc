package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// jobLockClass is the first key of the two-key advisory lock of a job (the
// second is hashtext(job)); it keeps our locks apart from other users of
// advisory locks in the same database. "entr" in ASCII.
const jobLockClass = int32(0x656e7472)

// ErrJobLockLost: the run no longer holds its job: the lock's database
// session ended, or a newer holder took the job (its fence moved on).
var ErrJobLockLost = errors.New("job lock lost")

// The lease's timing. A holder checks its lease every LeaseCheckInterval;
// a check that gets no answer within leaseCheckTimeout counts as lost. So
// a holder stops dispatching writes at most interval + timeout after its
// session died; a new holder that takes over a job its previous holder did
// not release waits LeaseTakeoverGrace (that bound plus a margin for the
// cancellation to reach the executor) before it writes to Graph.
const (
	LeaseCheckInterval = time.Second
	leaseCheckTimeout  = 2 * time.Second
	LeaseTakeoverGrace = LeaseCheckInterval + leaseCheckTimeout + time.Second
)

// Lease is a held job lock: the session advisory lock on a connection kept
// out of the pool, and the fence (job_state.lease_fence) this holder set
// when it took the lock.
type Lease struct {
	Job   string
	Fence int64
	// TookOver: the previous holder never released the job (its process
	// died, or it lost its lock and may still be stopping).
	TookOver bool

	s        *Store
	mu       sync.Mutex // the connection serves one query at a time
	conn     *pgxpool.Conn
	released bool
}

// LeaseJob takes the job's session advisory lock on a dedicated connection
// and, on that session, increments the job's fence. ok is false when
// another session (another worker process, or another run in this one)
// holds the lock. The lock also tells MarkInterrupted which running runs
// are still alive, so a run must be started only while its lease is held.
func (s *Store) LeaseJob(ctx context.Context, job string) (_ *Lease, ok bool, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("lock job %s: %w", job, err)
	}
	drop := func() {
		// The session state is unknown: do not hand it back to the pool;
		// closing it drops its locks.
		conn.Conn().Close(context.WithoutCancel(ctx))
		conn.Release()
	}
	err = conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, jobLockClass, job).Scan(&ok)
	if err != nil {
		drop()
		return nil, false, fmt.Errorf("lock job %s: %w", job, err)
	}
	if !ok {
		conn.Release()
		return nil, false, nil
	}
	l := &Lease{Job: job, s: s, conn: conn}
	// Only a lock holder moves the fence, so reading the old lease_held in
	// the same statement is not racy.
	err = conn.QueryRow(ctx, `
WITH prev AS (SELECT lease_held FROM entraprov.job_state WHERE job = $1)
INSERT INTO entraprov.job_state AS j (job, lease_fence, lease_held)
VALUES ($1, 1, true)
ON CONFLICT (job) DO UPDATE SET lease_fence = j.lease_fence + 1, lease_held = true
RETURNING j.lease_fence, coalesce((SELECT lease_held FROM prev), false)`, job).Scan(&l.Fence, &l.TookOver)
	if err != nil {
		drop()
		return nil, false, fmt.Errorf("lock job %s: take the fence: %w", job, err)
	}
	return l, true, nil
}

// TryLockJob is LeaseJob for callers that only need the lock held.
func (s *Store) TryLockJob(ctx context.Context, job string) (unlock func(), ok bool, err error) {
	l, ok, err := s.LeaseJob(ctx, job)
	if !ok || err != nil {
		return nil, ok, err
	}
	return l.Release, true, nil
}

// Check proves the lease is still held: the lock's own session answers
// (session advisory locks live as long as it does) and the fence is still
// ours. It returns an error matching ErrJobLockLost otherwise.
func (l *Lease) Check(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return fmt.Errorf("job %s: %w: released", l.Job, ErrJobLockLost)
	}
	cctx, cancel := context.WithTimeout(ctx, leaseCheckTimeout)
	defer cancel()
	var fence int64
	err := l.conn.QueryRow(cctx, `SELECT lease_fence FROM entraprov.job_state WHERE job = $1`, l.Job).Scan(&fence)
	if err != nil {
		return fmt.Errorf("job %s: %w: the lock's database session does not answer: %w", l.Job, ErrJobLockLost, err)
	}
	if fence != l.Fence {
		return staleFence(l.Job, l.Fence, fence)
	}
	return nil
}

// staleFence is the refusal of a stale holder's write; now < 0: the
// current fence is not known.
func staleFence(job string, ours, now int64) error {
	if now < 0 {
		return fmt.Errorf("job %s: %w: another worker took the job (this run holds fence %d)", job, ErrJobLockLost, ours)
	}
	return fmt.Errorf("job %s: %w: another worker took the job (fence %d, this run holds %d)", job, ErrJobLockLost, now, ours)
}

// Watch checks the lease every LeaseCheckInterval on behalf of a run. The
// returned context carries the lease's fence (Fenced) and is cancelled
// with the check's error as its cause (matching ErrJobLockLost) when the
// lease is lost, so the run stops dispatching writes. stop ends the watch
// and returns that error, or nil if the lease held to the end.
func (l *Lease) Watch(ctx context.Context) (_ context.Context, stop func() error) {
	wctx, cancel := context.WithCancelCause(Fenced(ctx, l))
	quit, exited := make(chan struct{}), make(chan struct{})
	var lost error
	go func() {
		defer close(exited)
		t := time.NewTicker(LeaseCheckInterval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-wctx.Done():
				return
			case <-t.C:
			}
			if err := l.Check(wctx); err != nil && wctx.Err() == nil {
				lost = err
				cancel(err)
				return
			}
		}
	}()
	var once sync.Once
	return wctx, func() error {
		once.Do(func() { close(quit) })
		<-exited
		return lost
	}
}

// Release ends the lease: it records that this holder stopped (so the next
// holder need not wait), then unlocks. It is idempotent and works even
// when the run's context is cancelled or the lock's session is dead.
func (l *Lease) Release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return
	}
	l.released = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// On any connection: the lock's own may be dead. A no-op once a newer
	// holder moved the fence.
	_, _ = l.s.pool.Exec(ctx, `UPDATE entraprov.job_state SET lease_held = false WHERE job = $1 AND lease_fence = $2`,
		l.Job, l.Fence)
	var unlocked bool
	err := l.conn.QueryRow(ctx, `SELECT pg_advisory_unlock($1, hashtext($2))`, jobLockClass, l.Job).Scan(&unlocked)
	if err != nil || !unlocked {
		// Closing the session is the sure way to drop its locks.
		l.conn.Conn().Close(ctx)
	}
	l.conn.Release()
}

type fenceKey struct{}

type fence struct {
	job string
	n   int64
}

// Fenced returns a context whose store writes for l's job (links,
// operations, mirror, back-offs, job state) are made only while l's fence
// is the job's current one: each runs in a transaction that first reads the
// fence FOR SHARE, so a newer holder's increment waits for a write in
// progress and every later write of the stale holder is refused with
// ErrJobLockLost. The fence travels in the context so that every write
// made on behalf of a run, including ones added later, is covered without
// threading a lease through each call. Run rows (StartRun, FinishRun) are
// not fenced: they belong to the run alone.
func Fenced(ctx context.Context, l *Lease) context.Context {
	return context.WithValue(ctx, fenceKey{}, fence{job: l.Job, n: l.Fence})
}

func fenceOf(ctx context.Context) (fence, bool) {
	f, ok := ctx.Value(fenceKey{}).(fence)
	return f, ok
}

// dbtx is what both the pool and a transaction offer.
type dbtx interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
}

// write runs fn on the pool, or, when ctx is Fenced, in a transaction that
// holds the job's fence (see Fenced).
func (s *Store) write(ctx context.Context, fn func(q dbtx) error) error {
	f, ok := fenceOf(ctx)
	if !ok {
		return fn(s.pool)
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := holdFence(ctx, tx, f); err != nil {
			return err
		}
		return fn(tx)
	})
}

// holdFence reads the job's fence FOR SHARE in tx and refuses a stale one.
func holdFence(ctx context.Context, tx pgx.Tx, f fence) error {
	var cur int64
	err := tx.QueryRow(ctx, `SELECT lease_fence FROM entraprov.job_state WHERE job = $1 FOR SHARE`, f.job).Scan(&cur)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("check the job's fence: %w", err)
	}
	if cur != f.n {
		return staleFence(f.job, f.n, cur)
	}
	return nil
}
