package sync

import (
	"context"
	"fmt"

	"github.com/entraprov/entraprov/internal/store"
)

// recorder buffers the links and operation rows of one end of an apply
// pass (or of a recorded plan) and writes them in batches: links first,
// then the rows. That order is what makes a create safe to send once its
// batch is written: its "creating" link is durable before the create can
// reach Graph. A link the database refuses (a second link to one object)
// fails its user alone through onRefused; any other failed write is kept
// as err, and the recorder drops what it is given from then on.
type recorder struct {
	r *runner
	// wctx is the context writes go through: the run's fenced context
	// without its cancellation, since a write cut short by a cancellation
	// might still commit, leaving rows nobody completes.
	wctx context.Context
	// linksWhat and opsWhat name the two writes in errors.
	linksWhat, opsWhat string
	save               func(context.Context, []store.Operation) error
	// onRefused, if set, is told the users whose link was refused before
	// the rows are written; it may change ops (in place).
	onRefused func(refused map[string]error, ops []store.Operation)

	links []store.Link
	ops   []store.Operation
	err   error
}

func newRecorder(r *runner, linksWhat, opsWhat string, save func(context.Context, []store.Operation) error) *recorder {
	return &recorder{r: r, wctx: r.wctx, linksWhat: linksWhat, opsWhat: opsWhat, save: save}
}

func (rc *recorder) add(ops []store.Operation, links ...store.Link) {
	if rc.err != nil {
		return
	}
	rc.ops = append(rc.ops, ops...)
	rc.links = append(rc.links, links...)
}

func (rc *recorder) empty() bool { return len(rc.ops)+len(rc.links) == 0 }

// full says a batch is due (the engine's flush size).
func (rc *recorder) full() bool { return rc.fullAt(rc.r.e.flushSize()) }

// fullAt says the recorder holds at least n rows and links.
func (rc *recorder) fullAt(n int) bool { return len(rc.ops)+len(rc.links) >= n }

// flush writes what is buffered in one round trip per table.
func (rc *recorder) flush() error {
	defer func() { rc.links, rc.ops = rc.links[:0], rc.ops[:0] }()
	if rc.err != nil || rc.empty() {
		return rc.err
	}
	ctx, cancel := context.WithTimeout(rc.wctx, dbTimeout)
	defer cancel()
	if len(rc.links) > 0 {
		refused, err := rc.r.upsertLinks(ctx, rc.links)
		if err != nil {
			rc.err = fmt.Errorf("%s: %w", rc.linksWhat, err)
			return rc.err
		}
		if len(refused) > 0 && rc.onRefused != nil {
			rc.onRefused(refused, rc.ops)
		}
	}
	if len(rc.ops) > 0 {
		if err := rc.save(ctx, rc.ops); err != nil {
			rc.err = fmt.Errorf("%s: %w", rc.opsWhat, err)
			return rc.err
		}
		rc.r.traceHistory(rc.ops)
	}
	return nil
}

// upsertLinks writes links in one statement; when that meets a unique
// violation (a second link to one object), it writes them one by one and
// returns the refused ones by external id, so that each such user fails
// alone and the run goes on. Any other error is returned.
func (r *runner) upsertLinks(ctx context.Context, links []store.Link) (map[string]error, error) {
	err := r.e.Store.UpsertLinks(ctx, links)
	if err == nil || !store.IsUniqueViolation(err) {
		return nil, err
	}
	refused := map[string]error{}
	for _, l := range links {
		if err := r.e.Store.UpsertLinks(ctx, []store.Link{l}); err != nil {
			if !store.IsUniqueViolation(err) {
				return nil, err
			}
			if store.IsOwnerConflict(err) {
				// Name the owner, so that the user's row says whom to
				// ask and how to resolve it.
				owner, oxid, oerr := r.e.Store.OtherOwner(ctx, r.job.Name, l.ObjectID)
				if oerr != nil {
					return nil, oerr
				}
				if owner != "" { // else a link of this job, or one released since
					err = &ownerConflict{objectID: l.ObjectID, job: owner, externalID: oxid, err: err}
				}
			}
			refused[l.ExternalID] = err
			r.log.ErrorContext(ctx, "link refused by the database; the user fails alone", "external_id", l.ExternalID,
				"object_id", l.ObjectID, "err", err)
		}
	}
	return refused, nil
}

// ownerConflict is a link refused because another job links its object
// (store.IsOwnerConflict): that job claimed the account first.
type ownerConflict struct {
	objectID, job, externalID string
	err                       error
}

func (c *ownerConflict) Error() string {
	return fmt.Sprintf("the account %s is linked by %s: %v", c.objectID, c.owner(), c.err)
}

func (c *ownerConflict) Unwrap() error { return c.err }

func (c *ownerConflict) owner() string {
	return fmt.Sprintf("job %s (external_id %s)", c.job, c.externalID)
}

// beforeSend is the message of a user whose claim was refused before
// anything of it was sent: the other job planned the same account at the
// same time and linked it first.
func (c *ownerConflict) beforeSend() string {
	return fmt.Sprintf("conflict: the account %s was claimed by %s while this run was about to write to it "+
		"(both jobs planned it at the same time); a job never adopts, enables, disables or deletes another job's account, "+
		"so nothing was sent for this user: remove the user from one of the two jobs' sources, "+
		"or hand the account over (README, \"Moving a user between jobs\")", c.objectID, c.owner())
}

// afterCreate is the message of a user whose create succeeded but whose
// link to the new account was refused: another job adopted the account
// in between (the create's answer was lost, or came late).
func (c *ownerConflict) afterCreate() string {
	return fmt.Sprintf("conflict: the account %s this job created was linked first by %s; "+
		"this job does not write to it again: remove the user from one of the two jobs' sources, "+
		"or hand the account over (README, \"Moving a user between jobs\")", c.objectID, c.owner())
}
