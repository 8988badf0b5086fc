package directory

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	abs "github.com/microsoft/kiota-abstractions-go"
	"golang.org/x/sync/errgroup"

	"github.com/entraprov/entraprov/internal/profile"
)

// userSelect are the properties the worker mirrors: the identity ones and
// the attributes the job manages (the schema ctx carries, built from the
// attribute table: profile.From), so a job never reads, say,
// employeeLeaveDateTime (which needs User-LifeCycleInfo.Read.All) unless
// its source has the column.
func userSelect(ctx context.Context) string {
	return "id," + strings.Join(profile.From(ctx).Select(), ",") + ",mail,accountEnabled"
}

// deltaSelect adds the manager to delta: selected, the relationship is
// tracked like a property and comes back as manager@delta (an array of
// {"@odata.type","id"}; an entry with "@removed" when the manager was
// removed). Without it a manager changed by hand could not be seen.
func deltaSelect(ctx context.Context) string { return userSelect(ctx) + ",manager" }

// selectMark ends every delta link Delta returns: "#entraprov-" and a
// fingerprint of the $select it was started with. A link without it, or
// with another one, was started with other properties selected (before
// the manager was, or before the job's source gained or lost an attribute
// column): its rounds would never carry the properties now wanted, so
// Delta reads the tenant again once instead. It is a URL fragment, and is
// stripped before the link is used.
func selectMark(ctx context.Context) string {
	sum := sha256.Sum256([]byte(deltaSelect(ctx)))
	return "#entraprov-" + hex.EncodeToString(sum[:6])
}

// userJSON is one user of a Graph answer, by property name: the identity
// properties are read by name, the attributes through the job's schema.
type userJSON map[string]any

func (u userJSON) str(k string) string {
	s, _ := u[k].(string)
	return s
}

func (u userJSON) user(schema *profile.Schema) User {
	out := User{ObjectID: u.str("id"), Mail: u.str("mail"), Attrs: schema.Decode(u)}
	if b, ok := u["accountEnabled"].(bool); ok {
		out.AccountEnabled = b
	}
	if m, ok := u["manager"].(map[string]any); ok {
		out.ManagerObjectID, _ = m["id"].(string)
	}
	// manager@delta absent: an incremental item, the manager did not
	// change. Present: the manager is the entry not marked removed; only
	// removed entries (or none) mean the user has no manager now.
	if md, ok := u["manager@delta"].([]any); ok {
		out.ManagerKnown = true
		for _, e := range md {
			m, _ := e.(map[string]any)
			if id, _ := m["id"].(string); m["@removed"] == nil && id != "" {
				out.ManagerObjectID = id
			}
		}
	}
	if r, ok := u["@removed"].(map[string]any); ok {
		reason, _ := r["reason"].(string)
		out.Purged, out.Deleted = reason == "deleted", reason != "deleted"
	}
	return out
}

type userPage struct {
	Value     []userJSON `json:"value"`
	NextLink  string     `json:"@odata.nextLink"`
	DeltaLink string     `json:"@odata.deltaLink"`
}

// getJSON GETs a Graph URL through the SDK pipeline, retrying 429 (after
// its Retry-After), 5xx and transport errors with jittered backoff. Other
// statuses come back as *GraphError (403 as *AuthError naming the missing
// permission).
func (c *Client) getJSON(ctx context.Context, rawURL string, headers map[string]string, into any) ([]byte, error) {
	var lastErr error
	throttled := 0
	for attempt := 1; ; attempt++ {
		resp, err := c.send(ctx, abs.GET, rawURL, nil, headers)
		var wait time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			var ae *AuthError
			if errors.As(err, &ae) {
				return nil, err
			}
			lastErr = fmt.Errorf("GET %s: %w", redactQuery(rawURL), err)
			wait = backoff(attempt, c.opts.MinBackoff, c.opts.MaxBackoff)
		case resp.status >= 200 && resp.status < 300:
			if into != nil {
				if err := json.Unmarshal(resp.body, into); err != nil {
					return nil, fmt.Errorf("GET %s: decode: %w", redactQuery(rawURL), err)
				}
			}
			return resp.body, nil
		default:
			ge := c.graphError(ctx, resp.status, resp.header, resp.body, time.Now())
			lastErr = ge
			class := classify("read", resp.status)
			if class == retryThrottled {
				attempt-- // waiting out a 429 is not a fault
			}
			if wait, err = c.readWait(ge, class, attempt, &throttled); err != nil {
				return nil, err
			}
		}
		if attempt >= c.opts.MaxAttempts {
			return nil, lastErr
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// readWait is how long a read waits before retrying the refusal ge of
// class, or the error that ends the read. throttled counts the read's 429s.
func (c *Client) readWait(ge *GraphError, class retryClass, attempt int, throttled *int) (time.Duration, error) {
	switch class {
	case retryThrottled:
		*throttled++
		c.stats.throttled.Add(1)
		if c.opts.Metrics != nil {
			c.opts.Metrics.Throttled(1)
		}
		if *throttled > c.opts.MaxThrottled {
			return 0, ge
		}
		if ge.RetryAfter > 0 {
			return ge.RetryAfter, nil
		}
		return backoff(*throttled, c.opts.MinBackoff, c.opts.MaxBackoff), nil
	case retryTransient:
		return max(backoff(attempt, c.opts.MinBackoff, c.opts.MaxBackoff), ge.RetryAfter), nil
	case retryAuth:
		if attempt > 1 {
			return 0, ge
		}
		return 0, nil
	default:
		return 0, c.auth.denied(ge, "read")
	}
}

// redactQuery drops the query (delta and skip tokens) from URLs in errors.
func redactQuery(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}

// listPageSize is the page ListUsers asks for: with $expand Graph returns
// at most 100 directory objects a page whatever $top says (Graph known
// issue 13635, "$expand on directory objects"; observed with
// users?$expand=manager&$top=999), so asking for more only hides how many
// pages a full read takes.
const listPageSize = 100

// ListUsers reads every user of the tenant, 100 per page, with the managed
// properties and the manager's id. The manager costs one $expand (+1
// resource unit per page, not per user): 2 RU a page of 100 is still far
// cheaper than a manager read per user.
func (c *Client) ListUsers(ctx context.Context, fn func(User) error) error {
	schema := profile.From(ctx)
	next := c.ep.graphURL + "/users?$top=" + strconv.Itoa(listPageSize) + "&$select=" + userSelect(ctx) + "&$expand=" + url.QueryEscape("manager($select=id)")
	for next != "" {
		var page userPage
		if _, err := c.getJSON(ctx, next, nil, &page); err != nil {
			return fmt.Errorf("list users: %w", err)
		}
		for _, u := range page.Value {
			user := u.user(schema)
			user.ManagerKnown = true // $expand: no manager object means none
			if err := fn(user); err != nil {
				return err
			}
		}
		next = page.NextLink
	}
	return nil
}

// Delta reads changes since deltaLink and returns the link to store for
// next time. With an empty deltaLink, or when Graph rejects it (expired or
// unknown token: 400 syncStateNotFound, 410, or a 404 about the sync state), it reads the
// whole tenant instead: onReset (may be nil) is called once BEFORE the first
// user of the full read, so the caller can clear its mirror, and full is
// true; so does a link from before the manager was selected. Removed users
// come with User.Deleted (soft-deleted) or User.Purged set. The manager is selected:
// every user of a full read has ManagerKnown (no manager@delta there means
// no manager); an incremental item has it only when it carries
// manager@delta (absent: the manager did not change).
func (c *Client) Delta(ctx context.Context, deltaLink string, onReset func(context.Context) error, fn func(User) error) (newDeltaLink string, full bool, err error) {
	schema, mark := profile.From(ctx), selectMark(ctx)
	start, tracked := strings.CutSuffix(deltaLink, mark)
	if start != "" && !tracked {
		c.log.InfoContext(ctx, "the delta link was started with other properties selected (the job's attributes changed); reading the whole tenant once")
		start = ""
	}
	if start == "" {
		full = true
		start = c.ep.graphURL + "/users/delta?$select=" + deltaSelect(ctx)
	}
	var page userPage
	_, err = c.getJSON(ctx, start, nil, &page)
	if err != nil && !full && deltaRejected(err) {
		c.log.WarnContext(ctx, "delta link rejected, reading the whole tenant", "err", err)
		full = true
		start = c.ep.graphURL + "/users/delta?$select=" + deltaSelect(ctx)
		page = userPage{}
		_, err = c.getJSON(ctx, start, nil, &page)
	}
	if err != nil {
		return "", full, fmt.Errorf("users delta: %w", err)
	}
	if full && onReset != nil {
		if err := onReset(ctx); err != nil {
			return "", full, err
		}
	}
	for {
		for _, u := range page.Value {
			user := u.user(schema)
			if full && !user.Deleted && !user.Purged {
				user.ManagerKnown = true
			}
			if err := fn(user); err != nil {
				return "", full, err
			}
		}
		if page.DeltaLink != "" {
			return page.DeltaLink + mark, full, nil
		}
		if page.NextLink == "" {
			return "", full, errors.New("users delta: page has neither nextLink nor deltaLink")
		}
		next := page.NextLink
		page = userPage{}
		if _, err := c.getJSON(ctx, next, nil, &page); err != nil {
			return "", full, fmt.Errorf("users delta: %w", err)
		}
	}
}

// deletedLookups bounds the deleted-items lookups in flight: they are few
// (links whose object a full read did not return), each 1 resource unit.
const deletedLookups = 4

// DeletedUsers looks ids up in /directory/deletedItems and returns those
// found there (soft-deleted, restorable), with Removed "changed". An id not
// there (purged, or never deleted) is left out. A full delta read does not
// return soft-deleted users, so this is how a caller tells "restorable"
// from "gone for good" for objects the read did not return. Each id is one
// GET (retried like every read), a few in flight: plain reads keep the
// retry and throttling handling of getJSON, and the ids are few.
func (c *Client) DeletedUsers(ctx context.Context, ids []string) ([]User, error) {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(deletedLookups)
	found := make([]*User, len(ids))
	schema, sel := profile.From(ctx), userSelect(ctx)
	for i, id := range ids {
		g.Go(func() error {
			var u userJSON
			_, err := c.getJSON(gctx, c.ep.graphURL+"/directory/deletedItems/"+url.PathEscape(id)+"?$select="+sel, nil, &u)
			var ge *GraphError
			if errors.As(err, &ge) && ge.Status == http.StatusNotFound {
				return nil
			}
			if err != nil {
				return fmt.Errorf("look up deleted user %s: %w", id, err)
			}
			du := u.user(schema)
			du.Deleted = true
			if du.ObjectID == "" {
				du.ObjectID = id
			}
			found[i] = &du
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var out []User
	for _, u := range found {
		if u != nil {
			out = append(out, *u)
		}
	}
	return out, nil
}

// deltaRejected says whether a delta call failed because its token is no
// longer valid. For users Microsoft documents 400 BadRequest, code
// syncStateNotFound (identity delta tokens live 7 days); other resources
// answer 410 Gone for a sync reset. So any 410, and a 400/404 naming the
// sync state or the token, counts.
func deltaRejected(err error) bool {
	var ge *GraphError
	if !errors.As(err, &ge) {
		return false
	}
	if ge.Status == http.StatusGone {
		return true
	}
	if ge.Status != http.StatusBadRequest && ge.Status != http.StatusNotFound {
		return false
	}
	s := strings.ToLower(ge.Code + " " + ge.Message)
	return strings.Contains(s, "syncstate") || strings.Contains(s, "token") || strings.Contains(s, "resync")
}

// FindUsers looks users up by UPN and/or employeeId (either may be empty;
// both set means either matches). Used to adopt existing users and to
// resolve an ambiguous create.
func (c *Client) FindUsers(ctx context.Context, upn, employeeID string) ([]User, error) {
	var terms []string
	if upn != "" {
		terms = append(terms, "userPrincipalName eq '"+odataQuote(upn)+"'")
	}
	if employeeID != "" {
		terms = append(terms, "employeeId eq '"+odataQuote(employeeID)+"'")
	}
	if len(terms) == 0 {
		return nil, errors.New("find users: neither UPN nor employeeId given")
	}
	q := url.Values{}
	q.Set("$filter", strings.Join(terms, " or "))
	q.Set("$select", userSelect(ctx))
	schema := profile.From(ctx)
	next := c.ep.graphURL + "/users?" + q.Encode()
	var out []User
	for next != "" {
		var page userPage
		if _, err := c.getJSON(ctx, next, nil, &page); err != nil {
			return nil, fmt.Errorf("find users: %w", err)
		}
		for _, u := range page.Value {
			out = append(out, u.user(schema))
		}
		next = page.NextLink
	}
	return out, nil
}

// odataQuote escapes a string literal for $filter (” doubles a quote).
func odataQuote(s string) string { return strings.ReplaceAll(s, "'", "''") }
