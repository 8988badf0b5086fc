package directory

import (
	"fmt"
	"time"

	"github.com/entraprov/entraprov/internal/profile"
)

// OpKind is what an Operation does to the directory.
type OpKind string

// Operation kinds. Each maps to exactly one Graph request.
const (
	OpCreate        OpKind = "create"         // POST /users
	OpUpdate        OpKind = "update"         // PATCH /users/{id} (also disable/enable: accountEnabled)
	OpDelete        OpKind = "delete"         // DELETE /users/{id} (soft delete)
	OpRestore       OpKind = "restore"        // POST /directory/deletedItems/{id}/restore
	OpSetManager    OpKind = "set_manager"    // PUT /users/{id}/manager/$ref
	OpRemoveManager OpKind = "remove_manager" // DELETE /users/{id}/manager/$ref
	OpAddMember     OpKind = "add_member"     // POST /groups/{gid}/members/$ref
	OpRemoveMember  OpKind = "remove_member"  // DELETE /groups/{gid}/members/{id}/$ref
)

// Operation is one write to the directory. The executor sends it as one
// $batch step and answers with exactly one Result carrying the same Key.
type Operation struct {
	// Key is the caller's correlation id (e.g. the sync_operations row id);
	// unique within one Execute call.
	Key      int64
	Kind     OpKind
	ObjectID string // target user; empty for OpCreate
	// RelatedID is the manager's object id (OpSetManager) or the group id
	// (OpAddMember, OpRemoveMember).
	RelatedID string
	// Fields are Graph user properties by their JSON names for OpCreate and
	// OpUpdate; a nil value clears the property.
	Fields map[string]any
	// Password is the initial password of OpCreate. It is sent in
	// passwordProfile and never logged, stored or returned.
	Password string
	// ForceChangePassword sets passwordProfile.forceChangePasswordNextSignIn.
	ForceChangePassword bool
	// Recent says the caller wrote the target object within FreshFor (an
	// earlier run created or restored it minutes ago): a 404 on it may
	// still be replication lag, retried like one this client created.
	Recent bool
}

// String never shows the password.
func (o Operation) String() string {
	return fmt.Sprintf("%s key=%d object=%s related=%s", o.Kind, o.Key, o.ObjectID, o.RelatedID)
}

// Outcome is the final state of an Operation.
type Outcome string

// Outcomes. Every operation handed to Execute ends in exactly one of them.
const (
	Succeeded  Outcome = "succeeded"
	Failed     Outcome = "failed"      // Graph refused it or retries ran out; Err says why
	NotStarted Outcome = "not_started" // never sent (context cancelled first)
)

// Result is the final answer for one Operation.
type Result struct {
	Key     int64
	Kind    OpKind
	Outcome Outcome
	// HTTPStatus of the last attempt (0 if none reached Graph).
	HTTPStatus int
	// ObjectID of the created user (OpCreate), else the target.
	ObjectID string
	// Err is set when Outcome is Failed: a *GraphError or a transport error.
	Err       error
	RequestID string
	Attempts  int
	Latency   time.Duration // from first send to final answer
	// Recovered is set when an attempt with an unknown outcome (5xx, lost
	// answer) was retried and the retry showed the first had been applied:
	// a create met its own user (ObjectID found by UPN), a delete found the
	// user gone, an add found the member present.
	Recovered bool
}

// User is a directory user as read from Graph (list, delta, lookup):
// ObjectID, Attrs (the attributes of the schema the read's context carries,
// profile.From), Mail, AccountEnabled, ManagerObjectID, ManagerKnown,
// Deleted and Purged. ManagerKnown says ManagerObjectID is the directory's answer (""
// then means no manager): the read selected the manager (ListUsers, a full
// delta read, or a delta item carrying manager@delta). An incremental delta
// item without manager@delta leaves it false: the manager did not change,
// not "none". A delta "@removed" entry sets Deleted (reason "changed":
// soft-deleted, restorable) or Purged (reason "deleted": gone for good).
type User = profile.User

// GraphError is an error answered by Microsoft Graph.
type GraphError struct {
	Status     int
	Code       string // e.g. Request_BadRequest, Authorization_RequestDenied
	Message    string
	Target     string // details[0].target, e.g. userPrincipalName
	DetailCode string // details[0].code, e.g. ObjectConflict
	RequestID  string
	// RetryAfter is the wait Graph asked for, at most MaxRetryAfter (or
	// Options.MaxRetryAfter).
	RetryAfter time.Duration
	// retryAfterAsked is the larger wait the header asked for when
	// RetryAfter was clamped; 0 otherwise.
	retryAfterAsked time.Duration
	// throttleScope is a 429's x-ms-throttle-scope: which budget ran out.
	throttleScope string
}

func (e *GraphError) Error() string {
	return fmt.Sprintf("graph: %d %s: %s (request-id %s)", e.Status, e.Code, e.Message, e.RequestID)
}
