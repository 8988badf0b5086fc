package conformance_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	abs "github.com/microsoft/kiota-abstractions-go"
	graphdir "github.com/microsoftgraph/msgraph-sdk-go/directory"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
)

// newClient builds the worker's Graph client for job over the target's
// transport, observed by rec.
func newClient(t *testing.T, tg *target, job config.Job, rec *recorder, log *slog.Logger) *directory.Client {
	t.Helper()
	c, err := directory.New(context.Background(), job, clientOptions(tg, rec, log))
	if err != nil {
		t.Fatalf("directory.New (%s): %v", job.Auth.Method, err)
	}
	return c
}

// clientOptions: log is the top test's (a subtest's writer ends with it).
func clientOptions(tg *target, rec *recorder, log *slog.Logger) directory.Options {
	return directory.Options{
		HTTPClient: &http.Client{Transport: rec, Timeout: 60 * time.Second},
		UserAgent:  "entraprov-conformance",
		Logger:     log,
		MinBackoff: tg.minBackoff, MaxBackoff: tg.maxBackoff,
	}
}

// execute runs ops through the executor and returns the results by key,
// failing on a missing or duplicated result. The ops are queued before
// Execute starts, so they leave in as few $batch requests as the batch size
// allows (the restore scenario relies on sharing a batch).
func execute(t *testing.T, ctx context.Context, c *directory.Client, ops ...directory.Operation) map[int64]directory.Result {
	t.Helper()
	in := make(chan directory.Operation, len(ops))
	for _, op := range ops {
		in <- op
	}
	close(in)
	out := make(chan directory.Result, len(ops))
	c.Execute(ctx, in, out)
	close(out)
	got := make(map[int64]directory.Result, len(ops))
	for r := range out {
		if prev, dup := got[r.Key]; dup {
			t.Fatalf("operation %d answered twice: %+v then %+v", r.Key, prev, r)
		}
		got[r.Key] = r
	}
	if len(got) != len(ops) {
		t.Fatalf("%d results for %d operations", len(got), len(ops))
	}
	return got
}

// mustSucceed runs ops and fails the test unless every one succeeded.
func mustSucceed(t *testing.T, ctx context.Context, c *directory.Client, ops ...directory.Operation) map[int64]directory.Result {
	t.Helper()
	res := execute(t, ctx, c, ops...)
	for _, op := range ops {
		if r := res[op.Key]; r.Outcome != directory.Succeeded {
			t.Fatalf("%s: %s after %d attempts, HTTP %d: %v", op, r.Outcome, r.Attempts, r.HTTPStatus, r.Err)
		}
	}
	return res
}

// eventually retries check until it returns nil or the target's patience
// runs out: Entra ID shows a write to reads after a replication delay.
func eventually(t *testing.T, tg *target, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(tg.patience)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after %s", what, err, tg.patience)
		}
		time.Sleep(tg.poll)
	}
}

// findOne reads a user by UPN through the worker's FindUsers.
func findOne(ctx context.Context, c *directory.Client, upn string) (directory.User, error) {
	us, err := c.FindUsers(ctx, upn, "")
	if err != nil {
		return directory.User{}, err
	}
	if len(us) != 1 {
		return directory.User{}, fmt.Errorf("%d users with UPN %s", len(us), upn)
	}
	return us[0], nil
}

// statusOf is the HTTP status of an SDK error (0 if it is not one).
func statusOf(err error) int {
	var oe *odataerrors.ODataError
	if errors.As(err, &oe) {
		return oe.ResponseStatusCode
	}
	var ae *abs.ApiError
	if errors.As(err, &ae) {
		return ae.ResponseStatusCode
	}
	return 0
}

// managerOf is the object id of a user's manager ("" when none).
func managerOf(ctx context.Context, c *directory.Client, id string) (string, error) {
	m, err := c.SDK().Users().ByUserId(id).Manager().Get(ctx, nil)
	if statusOf(err) == http.StatusNotFound {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return deref(m.GetId()), nil
}

// groupsOf are the object ids of the groups a user is a direct member of.
func groupsOf(ctx context.Context, c *directory.Client, id string) ([]string, error) {
	page, err := c.SDK().Users().ByUserId(id).MemberOf().Get(ctx, nil)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, o := range page.GetValue() {
		out = append(out, deref(o.GetId()))
	}
	return out, nil
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// swept is a user found by a sweep.
type swept struct{ id, upn string }

// liveWithPrefix lists the live users whose UPN starts with prefix
// (startsWith on userPrincipalName is a default, not an advanced, query).
func liveWithPrefix(ctx context.Context, c *directory.Client, prefix string) ([]swept, error) {
	filter := "startswith(userPrincipalName,'" + strings.ReplaceAll(prefix, "'", "''") + "')"
	top := int32(999)
	page, err := c.SDK().Users().Get(ctx, &users.UsersRequestBuilderGetRequestConfiguration{
		QueryParameters: &users.UsersRequestBuilderGetQueryParameters{Filter: &filter, Select: []string{"id", "userPrincipalName"}, Top: &top}})
	var out []swept
	for {
		if err != nil {
			return nil, fmt.Errorf("list users %s*: %w", prefix, err)
		}
		for _, u := range page.GetValue() {
			out = append(out, swept{deref(u.GetId()), deref(u.GetUserPrincipalName())})
		}
		next := page.GetOdataNextLink()
		if next == nil || *next == "" {
			return out, nil
		}
		page, err = c.SDK().Users().WithUrl(*next).Get(ctx, nil)
	}
}

// deletedWithPrefix lists the soft-deleted users carrying prefix. Entra ID
// renames a deleted user's UPN to {object id without dashes}{old UPN}, so
// the marker is looked for inside the UPN and at the start of the
// mailNickname; deleted items are few, so they are filtered here rather
// than with a server-side filter.
func deletedWithPrefix(ctx context.Context, c *directory.Client, prefix string) ([]swept, error) {
	top := int32(999)
	page, err := c.SDK().Directory().DeletedItems().GraphUser().Get(ctx, &graphdir.DeletedItemsGraphUserRequestBuilderGetRequestConfiguration{
		QueryParameters: &graphdir.DeletedItemsGraphUserRequestBuilderGetQueryParameters{Select: []string{"id", "userPrincipalName", "mailNickname"}, Top: &top}})
	var out []swept
	for {
		if err != nil {
			return nil, fmt.Errorf("list deleted users: %w", err)
		}
		for _, u := range page.GetValue() {
			upn, nick := strings.ToLower(deref(u.GetUserPrincipalName())), strings.ToLower(deref(u.GetMailNickname()))
			if strings.Contains(upn, prefix) || strings.HasPrefix(nick, prefix) {
				out = append(out, swept{deref(u.GetId()), deref(u.GetUserPrincipalName())})
			}
		}
		next := page.GetOdataNextLink()
		if next == nil || *next == "" {
			return out, nil
		}
		page, err = c.SDK().Directory().DeletedItems().GraphUser().WithUrl(*next).Get(ctx, nil)
	}
}

// sweep removes every user carrying prefix: live ones are deleted through
// the executor (the worker's own delete), then each is deleted permanently
// from deleted items, retried while the soft delete is not yet visible
// there. It reports what it removed and fails the test on what it could
// not.
func sweep(t *testing.T, ctx context.Context, tg *target, c *directory.Client, prefix string) []swept {
	t.Helper()
	live, err := liveWithPrefix(ctx, c, prefix)
	if err != nil {
		t.Errorf("sweep %s: %v", prefix, err)
		return nil
	}
	var ops []directory.Operation
	for i, u := range live {
		ops = append(ops, directory.Operation{Key: int64(i), Kind: directory.OpDelete, ObjectID: u.id})
	}
	if len(ops) > 0 {
		for _, r := range execute(t, ctx, c, ops...) {
			// 404: already gone (deleted by the scenario, or a lost answer).
			if r.Outcome != directory.Succeeded && r.HTTPStatus != http.StatusNotFound {
				t.Errorf("sweep: delete %s: %s HTTP %d: %v", live[r.Key].upn, r.Outcome, r.HTTPStatus, r.Err)
			}
		}
	}
	deleted, err := deletedWithPrefix(ctx, c, prefix)
	if err != nil {
		t.Errorf("sweep %s: %v", prefix, err)
		return live
	}
	gone := append([]swept(nil), deleted...)
	for _, u := range live {
		if !slices.ContainsFunc(gone, func(d swept) bool { return d.id == u.id }) {
			gone = append(gone, u)
		}
	}
	for _, u := range gone {
		purge(t, ctx, tg, c, u)
	}
	return gone
}

// purge permanently deletes a soft-deleted user; a 404 right after the soft
// delete means it has not reached deleted items yet and is retried.
func purge(t *testing.T, ctx context.Context, tg *target, c *directory.Client, u swept) {
	t.Helper()
	deadline := time.Now().Add(tg.patience)
	for {
		err := c.SDK().Directory().DeletedItems().ByDirectoryObjectId(u.id).Delete(ctx, nil)
		if err == nil {
			return
		}
		st := statusOf(err)
		if st == http.StatusForbidden {
			t.Errorf("permanent delete of %s (%s) refused: %v; grant the app User.DeleteRestore.All (README, \"Verify against your tenant\") and delete it from Deleted users by hand", u.upn, u.id, err)
			return
		}
		if time.Now().After(deadline) || (st != http.StatusNotFound && st != http.StatusTooManyRequests && st < 500) {
			t.Errorf("permanent delete of %s (%s): %v", u.upn, u.id, err)
			return
		}
		time.Sleep(tg.poll)
	}
}
