package conformance_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/profile"
	esync "github.com/entraprov/entraprov/internal/sync"
)

// script is the state the scenarios hand on: the run's marker, the client
// and this run's users by role.
type script struct {
	tg  *target
	run string // this run's marker, e.g. entraprov-conf-1a2b3c4d-
	c   *directory.Client
	rec *recorder
	log *slog.Logger      // writes to the top test's output
	ids map[string]string // role → object id
}

// The users the directory scenarios create, by role.
const (
	roleLead   = "lead"   // manager of staff; group member for a while
	roleStaff  = "staff"  // disabled, then given a manager
	roleRehire = "rehire" // deleted, then restored through a $batch
)

// TestConformance runs the script against the target CONFORMANCE_TARGET
// names: graphsim (default, in `make test`) or a real tenant (`make
// conformance`). The scenarios depend on each other's users and run in
// order; the first that fails stops the script (later ones would only
// report its consequences). Whatever happens, the clean-up removes this
// run's users for good.
func TestConformance(t *testing.T) {
	tg := loadTarget(t)
	t.Logf("target: %s (tenant %s, domain %s, credentials %v)", tg.name, tg.tenantID, tg.domain, slices.Sorted(maps.Keys(tg.jobs)))
	s := &script{tg: tg, run: newRunMarker(t), rec: &recorder{next: tg.transport}, ids: map[string]string{},
		log: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))}
	ctx := context.Background()

	steps := []struct {
		name string
		fn   func(*script, *testing.T)
	}{
		{"sign-in-secret", func(s *script, t *testing.T) { s.signIn(t, credSecret) }},
		{"sign-in-certificate", func(s *script, t *testing.T) { s.signIn(t, credCert) }},
		{"sweep-leftovers", (*script).sweepLeftovers},
		{"create", (*script).create},
		{"minimal-update", (*script).minimalUpdate},
		{"disable", (*script).disable},
		{"manager", (*script).manager},
		{"group-add-remove", (*script).group},
		{"delta-round-trip", (*script).deltaRoundTrip},
		{"restore-in-batch", (*script).restoreInBatch},
		{"burst", (*script).burst},
		{"engine-run", (*script).engineRun},
	}
	for i, st := range steps {
		if st.name == "create" {
			// From here on the run owns users: remove them at the end,
			// also when a scenario fails or the test is interrupted by a
			// fatal error.
			t.Cleanup(func() { s.cleanup(t, ctx) })
		}
		if !t.Run(st.name, func(t *testing.T) { st.fn(s, t) }) {
			t.Fatalf("scenario %s failed; %d later scenarios not run", st.name, len(steps)-i-1)
		}
	}
}

// signIn: the worker's credential of this kind gets a token for Graph
// carrying the app's roles, and Graph accepts it (Probe reads one user).
func (s *script) signIn(t *testing.T, kind string) {
	job, ok := s.tg.jobs[kind]
	if !ok {
		t.Skipf("no %s credential given for this tenant (set %s or %s to test both sign-ins)", kind, envSecret, envCert)
	}
	ctx := context.Background()
	c := newClient(t, s.tg, job, s.rec, s.log)
	if err := c.Probe(ctx); err != nil {
		t.Fatalf("sign-in with a %s, then GET /users: %v", kind, err)
	}
	roles, tenant, app, err := c.TokenRoles(ctx)
	if err != nil {
		t.Fatalf("token claims: %v", err)
	}
	if !strings.EqualFold(tenant, s.tg.tenantID) || !strings.EqualFold(app, s.tg.clientID) {
		t.Errorf("token for tenant %s app %s; want tenant %s app %s", tenant, app, s.tg.tenantID, s.tg.clientID)
	}
	for _, want := range []string{"User.ReadWrite.All", "GroupMember.ReadWrite.All", "User.DeleteRestore.All"} {
		if !slices.Contains(roles, want) {
			t.Errorf("the token lacks the application permission %s (roles %v): grant it and give admin consent", want, roles)
		}
	}
	t.Logf("signed in with a %s: roles %v", kind, roles)
	if s.c == nil || kind == credSecret {
		s.c = c
	}
}

// sweepLeftovers removes users of earlier runs that did not clean up
// (killed, or the permanent delete refused), and nothing else.
func (s *script) sweepLeftovers(t *testing.T) {
	ctx := context.Background()
	if s.tg.plantLeftovers != nil {
		s.tg.plantLeftovers(t)
	}
	gone := sweep(t, ctx, s.tg, s.c, markerBase)
	t.Logf("swept %d leftover users of earlier runs", len(gone))
	if s.tg.plantLeftovers != nil && len(gone) != 2 {
		t.Errorf("swept %v; want the two planted leftovers", gone)
	}
	eventually(t, s.tg, "no user carries the marker after the sweep", func() error {
		live, err := liveWithPrefix(ctx, s.c, markerBase)
		if err != nil {
			return err
		}
		deleted, err := deletedWithPrefix(ctx, s.c, markerBase)
		if err != nil {
			return err
		}
		if len(live)+len(deleted) > 0 {
			return fmt.Errorf("left: live %v, deleted %v", live, deleted)
		}
		return nil
	})
	if s.tg.sim != nil {
		if _, ok := s.tg.sim.User(s.tg.tenantID, "entraprov-config@"+s.tg.domain); !ok {
			t.Error("the sweep removed a user without the marker")
		}
	}
}

// cleanup deletes this run's users for good and checks none is left.
func (s *script) cleanup(t *testing.T, ctx context.Context) {
	if s.c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*s.tg.patience+time.Minute)
	defer cancel()
	gone := sweep(t, ctx, s.tg, s.c, s.run)
	t.Logf("clean-up: %d users of this run deleted permanently", len(gone))
	live, err1 := liveWithPrefix(ctx, s.c, s.run)
	deleted, err2 := deletedWithPrefix(ctx, s.c, s.run)
	if s.tg.sim != nil {
		// The emulator has no replication lag to excuse a leftover.
		for _, u := range s.tg.sim.Users(s.tg.tenantID) {
			if strings.Contains(strings.ToLower(u.UserPrincipalName), s.run) {
				t.Errorf("clean-up left %s (%s, deleted %v)", u.UserPrincipalName, u.ID, u.Deleted)
			}
		}
		return
	}
	if err1 != nil || err2 != nil || len(live) > 0 || len(deleted) > 0 {
		// Replication may still show a just-purged user; the next run's
		// sweep removes whatever really is left.
		t.Logf("after clean-up the directory still lists: live %v, deleted %v (%v %v)", live, deleted, err1, err2)
	}
}

// userOp is the create of one of this run's users.
func (s *script) userOp(t *testing.T, key int64, role string, extra map[string]any) directory.Operation {
	pw, err := esync.NewPassword(20)
	if err != nil {
		t.Fatal(err)
	}
	f := map[string]any{
		"userPrincipalName": s.tg.upn(s.run, role), "mailNickname": s.run + role,
		"displayName": "entraprov conformance " + role, "givenName": "Conformance", "surname": role,
		"accountEnabled": true, "usageLocation": "DE",
	}
	for k, v := range extra {
		f[k] = v
	}
	return directory.Operation{Key: key, Kind: directory.OpCreate, Fields: f, Password: pw, ForceChangePassword: true}
}

// create: three users in one Execute (POST /users steps in a $batch); each
// is then readable by UPN with the properties sent.
func (s *script) create(t *testing.T) {
	ctx := context.Background()
	roles := []string{roleLead, roleStaff, roleRehire}
	var ops []directory.Operation
	for i, r := range roles {
		ops = append(ops, s.userOp(t, int64(i), r, map[string]any{"jobTitle": "Conformance test", "department": "QA", "officeLocation": "Lab 1"}))
	}
	res := execute(t, ctx, s.c, ops...)
	for i, r := range roles {
		got := res[int64(i)]
		if got.Outcome != directory.Succeeded || got.HTTPStatus != http.StatusCreated || got.ObjectID == "" {
			t.Fatalf("create %s: %s HTTP %d id %q: %v", r, got.Outcome, got.HTTPStatus, got.ObjectID, got.Err)
		}
		s.ids[r] = got.ObjectID
	}
	for _, r := range roles {
		eventually(t, s.tg, "created user "+r+" readable", func() error {
			u, err := findOne(ctx, s.c, s.tg.upn(s.run, r))
			if err != nil {
				return err
			}
			if u.ObjectID != s.ids[r] || u.Get(profile.DisplayName) != "entraprov conformance "+r || u.Get(profile.JobTitle) != "Conformance test" ||
				u.Get(profile.Department) != "QA" || u.Get(profile.OfficeLocation) != "Lab 1" || u.Get(profile.UsageLocation) != "DE" || !u.AccountEnabled {
				return fmt.Errorf("read back %+v", u)
			}
			return nil
		})
	}
}

// minimalUpdate: a PATCH carrying one changed and one cleared property
// leaves the others as they were.
func (s *script) minimalUpdate(t *testing.T) {
	ctx := context.Background()
	mustSucceed(t, ctx, s.c, directory.Operation{Key: 1, Kind: directory.OpUpdate, ObjectID: s.ids[roleLead],
		Fields: map[string]any{"jobTitle": "Conformance lead", "officeLocation": nil}})
	eventually(t, s.tg, "update visible", func() error {
		u, err := findOne(ctx, s.c, s.tg.upn(s.run, roleLead))
		if err != nil {
			return err
		}
		if u.Get(profile.JobTitle) != "Conformance lead" || u.Get(profile.OfficeLocation) != "" || u.Get(profile.Department) != "QA" || u.Get(profile.DisplayName) != "entraprov conformance "+roleLead {
			return fmt.Errorf("read back %+v", u)
		}
		return nil
	})
}

// disable: accountEnabled false through a PATCH.
func (s *script) disable(t *testing.T) {
	ctx := context.Background()
	mustSucceed(t, ctx, s.c, directory.Operation{Key: 1, Kind: directory.OpUpdate, ObjectID: s.ids[roleStaff],
		Fields: map[string]any{"accountEnabled": false}})
	eventually(t, s.tg, "disable visible", func() error {
		u, err := findOne(ctx, s.c, s.tg.upn(s.run, roleStaff))
		if err != nil {
			return err
		}
		if u.AccountEnabled {
			return fmt.Errorf("%s still enabled", u.UPN())
		}
		return nil
	})
}

// manager: PUT and DELETE manager/$ref, read back with GET …/manager.
func (s *script) manager(t *testing.T) {
	ctx := context.Background()
	staff, lead := s.ids[roleStaff], s.ids[roleLead]
	mustSucceed(t, ctx, s.c, directory.Operation{Key: 1, Kind: directory.OpSetManager, ObjectID: staff, RelatedID: lead})
	eventually(t, s.tg, "manager set", func() error {
		if m, err := managerOf(ctx, s.c, staff); err != nil || m != lead {
			return fmt.Errorf("manager %q (%v), want %s", m, err, lead)
		}
		return nil
	})
	mustSucceed(t, ctx, s.c, directory.Operation{Key: 2, Kind: directory.OpRemoveManager, ObjectID: staff})
	eventually(t, s.tg, "manager removed", func() error {
		if m, err := managerOf(ctx, s.c, staff); err != nil || m != "" {
			return fmt.Errorf("manager %q (%v), want none", m, err)
		}
		return nil
	})
}

// group: POST members/$ref, then DELETE members/{id}/$ref, on the test
// group; read back through the user's memberOf.
func (s *script) group(t *testing.T) {
	ctx := context.Background()
	lead, g := s.ids[roleLead], s.tg.groupID
	mustSucceed(t, ctx, s.c, directory.Operation{Key: 1, Kind: directory.OpAddMember, ObjectID: lead, RelatedID: g})
	eventually(t, s.tg, "member added", func() error {
		if gs, err := groupsOf(ctx, s.c, lead); err != nil || !slices.Contains(gs, g) {
			return fmt.Errorf("memberOf %v (%v), want %s in it", gs, err, g)
		}
		return nil
	})
	mustSucceed(t, ctx, s.c, directory.Operation{Key: 2, Kind: directory.OpRemoveMember, ObjectID: lead, RelatedID: g})
	eventually(t, s.tg, "member removed", func() error {
		if gs, err := groupsOf(ctx, s.c, lead); err != nil || slices.Contains(gs, g) {
			return fmt.Errorf("memberOf %v (%v), want %s gone", gs, err, g)
		}
		return nil
	})
}

// deltaRoundTrip: a full delta read sees this run's users; after an update
// and a soft delete, the next rounds from the delta link bring both: the
// new department, and the deleted user with @removed.
func (s *script) deltaRoundTrip(t *testing.T) {
	ctx := context.Background()
	var link string
	eventually(t, s.tg, "full delta read lists the run's users", func() error {
		seen := map[string]bool{}
		l, full, err := s.c.Delta(ctx, "", nil, func(u directory.User) error {
			if strings.HasPrefix(strings.ToLower(u.UPN()), s.run) {
				seen[u.ObjectID] = true
			}
			return nil
		})
		if err != nil {
			return err
		}
		if !full || l == "" {
			return fmt.Errorf("full read: full=%v, delta link returned %v", full, l != "")
		}
		for r, id := range s.ids {
			if !seen[id] {
				return fmt.Errorf("%s (%s) not in the full read", r, id)
			}
		}
		link = l
		return nil
	})
	mustSucceed(t, ctx, s.c,
		directory.Operation{Key: 1, Kind: directory.OpUpdate, ObjectID: s.ids[roleLead], Fields: map[string]any{"department": "QA delta"}},
		directory.Operation{Key: 2, Kind: directory.OpDelete, ObjectID: s.ids[roleRehire]})
	var updated, removed bool
	rounds := 0
	eventually(t, s.tg, "delta rounds bring the update and the delete", func() error {
		rounds++
		l, full, err := s.c.Delta(ctx, link, nil, func(u directory.User) error {
			switch {
			case u.ObjectID == s.ids[roleLead] && !u.Deleted && !u.Purged && u.Get(profile.Department) == "QA delta":
				updated = true
			case u.ObjectID == s.ids[roleRehire] && (u.Deleted || u.Purged):
				removed = true
			}
			return nil
		})
		if err != nil {
			return err
		}
		if full {
			return fmt.Errorf("the delta link was rejected and a full read made instead")
		}
		link = l
		if !updated || !removed {
			return fmt.Errorf("update seen %v, delete seen %v", updated, removed)
		}
		return nil
	})
	t.Logf("delta: update and delete seen after %d incremental rounds", rounds)
}

// restoreInBatch: the user deleted above is in deleted items, and its
// restore — POST /directory/deletedItems/{id}/restore as a $batch step,
// next to another write — brings it back with the same id.
func (s *script) restoreInBatch(t *testing.T) {
	ctx := context.Background()
	id := s.ids[roleRehire]
	eventually(t, s.tg, "deleted user listed in deleted items", func() error {
		found, err := s.c.DeletedUsers(ctx, []string{id})
		if err != nil {
			return err
		}
		if len(found) != 1 || !found[0].Deleted {
			return fmt.Errorf("DeletedUsers = %+v", found)
		}
		return nil
	})
	s.rec.reset()
	mustSucceed(t, ctx, s.c,
		directory.Operation{Key: 1, Kind: directory.OpRestore, ObjectID: id},
		directory.Operation{Key: 2, Kind: directory.OpUpdate, ObjectID: s.ids[roleStaff], Fields: map[string]any{"jobTitle": "Restored alongside"}})
	_, batches := s.rec.snapshot()
	shared := false
	for _, b := range batches {
		if len(b) > 1 && slices.ContainsFunc(b, func(step string) bool { return strings.HasSuffix(step, "/restore") }) {
			shared = true
		}
	}
	if !shared {
		t.Errorf("the restore did not travel in a $batch with another step: %v", batches)
	}
	eventually(t, s.tg, "restored user readable", func() error {
		u, err := findOne(ctx, s.c, s.tg.upn(s.run, roleRehire))
		if err != nil {
			return err
		}
		if u.ObjectID != id || u.Get(profile.DisplayName) != "entraprov conformance "+roleRehire {
			return fmt.Errorf("read back %+v, want id %s", u, id)
		}
		found, err := s.c.DeletedUsers(ctx, []string{id})
		if err != nil || len(found) != 0 {
			return fmt.Errorf("still in deleted items: %+v (%v)", found, err)
		}
		return nil
	})
}

// burst: 60 writes as fast as the executor sends them; every one succeeds
// exactly once, and the throttling headers seen are logged. graphsim is
// squeezed so the burst meets 429s and the headers must be there; a real
// tenant is not expected to throttle 60 writes, so there they are only
// recorded.
func (s *script) burst(t *testing.T) {
	ctx := context.Background()
	if s.tg.squeeze != nil {
		defer s.tg.squeeze(t)()
	}
	s.rec.reset()
	roles := []string{roleLead, roleStaff, roleRehire}
	var ops []directory.Operation
	for i := range 60 {
		ops = append(ops, directory.Operation{Key: int64(i), Kind: directory.OpUpdate, ObjectID: s.ids[roles[i%3]],
			Fields: map[string]any{"jobTitle": fmt.Sprintf("Burst %02d", i)}})
	}
	before := s.c.Stats()
	start := time.Now()
	mustSucceed(t, ctx, s.c, ops...)
	after := s.c.Stats()
	answers, _ := s.rec.snapshot()
	report, throttled := throttleReport(answers)
	t.Logf("burst of %d writes in %s: %d $batch requests, %d steps sent, %d throttled (client stats)\nthrottling headers seen:\n%s",
		len(ops), time.Since(start).Round(time.Millisecond), after.Batches-before.Batches, after.Steps-before.Steps,
		after.Throttled-before.Throttled, report)
	if s.tg.squeeze != nil {
		if throttled == 0 {
			t.Errorf("the squeezed emulator never answered 429")
		}
		for _, a := range answers {
			if a.status == http.StatusTooManyRequests && a.headers["retry-after"] == "" {
				t.Errorf("429 without Retry-After at %s: %v", a.where, a.headers)
			}
		}
	}
	if throttled == 0 {
		t.Logf("no 429 in the burst: the service had quota to spare (expected of a real tenant at this size)")
	}
}
