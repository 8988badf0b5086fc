package store

import (
	"time"

	"github.com/entraprov/entraprov/internal/profile"
)

// DesiredUser is one row of a job's source relation (the contract of
// entraprov.desired_users): ExternalID, Attrs (the managed attributes),
// AccountEnabled, ManagerExternalID and Groups. An empty value means NULL:
// "no value wanted" (a clear, for a managed attribute).
type DesiredUser = profile.User

// Link ties a source external_id to a directory object for one job. It is
// what makes the worker touch only users it manages.
type Link struct {
	Job        string
	ExternalID string
	// ObjectID is empty while State is LinkCreating (a create was sent and
	// its answer is not known yet).
	ObjectID string
	// UserPrincipalName is the UPN last applied (or sent with a create).
	UserPrincipalName string
	State             LinkState
	AppliedHash       string // hash of the attributes last applied
	ManagerObjectID   string // manager last applied ("" none)
	Groups            []string
	DisabledAt        *time.Time
	DeletedAt         *time.Time
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

// LinkState is the state of a link (directory_links.state).
type LinkState string

// Link states.
const (
	LinkCreating LinkState = "creating"
	LinkActive   LinkState = "active"
	LinkDisabled LinkState = "disabled"
	LinkDeleted  LinkState = "deleted"
)

// DirectoryUser is the mirror of a user in the directory (from
// /users/delta): ObjectID, Attrs, Mail, AccountEnabled, ManagerObjectID,
// ManagerKnown and Deleted.
type DirectoryUser = profile.User

// SourceRow is one row of the ordered FULL OUTER JOIN
// source ⋈ directory_links ⋈ directory_users for a job. Any of Desired,
// Link and Current may be nil.
type SourceRow struct {
	ExternalID string
	Desired    *DesiredUser   // nil: the user left the source
	Link       *Link          // nil: never provisioned by this job
	Current    *DirectoryUser // mirror of Link.ObjectID; nil: unknown to the mirror
	// Candidate is an unlinked directory user whose UPN or employeeId equals
	// the desired one: adopted only if the job's matching rule allows it,
	// otherwise a conflict. Set only when Link is nil or LinkCreating.
	Candidate *DirectoryUser
	// ManagerObjectID is the object id linked (by this job) to
	// Desired.ManagerExternalID; "" when that manager is not provisioned yet.
	ManagerObjectID string
	// DuplicateUPN is true when another source row of the job wants the same
	// userPrincipalName (case-insensitive): both rows fail validation.
	DuplicateUPN bool
	// SourceRows is how many rows of the source relation carry this
	// external_id (0 when Desired is nil). More than 1 breaks the source
	// contract: the planner fails every one of them and writes nothing.
	SourceRows int
	// ClaimedByInvalid, on a link whose external_id is not in the source,
	// names (quoted, or NULL) a source row with an invalid external_id (NULL,
	// empty, padded with whitespace) that trims to this link's id or wants
	// its UPN: the row is refused, and this user is not a leaver either
	// until the source is fixed.
	ClaimedByInvalid string
	// CandidateOwner and CandidateOwnerID name another job that links
	// Candidate, and the external_id it links it under: a job never adopts
	// an account another job manages.
	CandidateOwner, CandidateOwnerID string
	// RekeyFrom, when set, is the external_id Link is stored under: HR
	// re-keyed the person. The source row (ExternalID) has no usable link of
	// its own and wants the UPN or employeeId of the account linked under
	// RekeyFrom, which left the source; the stream joins the two, and the
	// planner decides whether the job's matching rule lets the link move
	// (RekeyLink). Link.ExternalID is already ExternalID.
	RekeyFrom string
	// UPNReleasedBy, on a rename, is the external_id of another user of this
	// job that holds the wanted UPN in the mirror and whose own row wants
	// another UPN: a swap or chain of renames inside one run, ordered by the
	// planner through a temporary UPN.
	UPNReleasedBy string
	// SharedWith names another job (and its external_id, "job/id") that
	// links Link's object too: left from before a job stopped adopting
	// other jobs' accounts, or made by hand before migration 009 made the
	// database refuse a second link (legacy_shared). Neither job acts on it.
	SharedWith string
}

// Run is a sync_runs row.
type Run struct {
	ID           int64
	Job          string
	TenantID     string
	Trigger      string // schedule | catchup | manual | startup
	Mode         string // apply | plan
	ScheduledFor *time.Time
	StartedAt    time.Time
	FinishedAt   *time.Time
	Status       RunStatus
	Counts       RunCounts
	Stats        RunStats
	ErrorSummary string
	Host         string
	PID          int
}

// RunStats are the Graph traffic figures of a run.
type RunStats struct {
	Requests  int
	Batches   int
	Throttled int
	Retried   int
}

// RunStatus is the status of a run (sync_runs.status).
type RunStatus string

// Run statuses.
const (
	RunRunning     RunStatus = "running"
	RunSucceeded   RunStatus = "succeeded"
	RunPartial     RunStatus = "partial"
	RunFailed      RunStatus = "failed"
	RunBlocked     RunStatus = "blocked"
	RunInterrupted RunStatus = "interrupted"
	RunSkipped     RunStatus = "skipped"
)

// Operation is a sync_operations row: one planned action for one user.
type Operation struct {
	RunID int64
	// Seq numbers the operations of one run from 1; (RunID, Seq) is the
	// key, so the engine can CopyFrom them and use Seq as the executor Key.
	Seq        int64
	ExternalID string
	ObjectID   string
	Action     string         // create | update | disable | enable | delete | restore | manager | group_add | group_remove | adopt | skip
	Changes    map[string]any // changed fields, never a secret
	Status     OpStatus
	HTTPStatus int
	ErrorCode  string
	Message    string
	RequestID  string
	Attempts   int
	LatencyMS  int
	At         time.Time
	// DesiredHash fingerprints what the user's planned steps try to apply
	// (never a secret); user_backoff compares it to tell the same failure
	// from a new attempt. "" for rows of workers before schema 3.
	DesiredHash string
}

// OpStatus is the status of an operation (sync_operations.status).
type OpStatus string

// Operation statuses.
const (
	OpPlanned     OpStatus = "planned" // plan mode: recorded, never sent
	OpPending     OpStatus = "pending" // sent or about to be; not final
	OpSucceeded   OpStatus = "succeeded"
	OpFailed      OpStatus = "failed"
	OpSkipped     OpStatus = "skipped"
	OpNotStarted  OpStatus = "not_started"
	OpInterrupted OpStatus = "interrupted"
)

// OpStatuses lists every operation status.
var OpStatuses = []OpStatus{OpPlanned, OpPending, OpSucceeded, OpFailed, OpSkipped, OpNotStarted, OpInterrupted}

// JobState is the job_state row of a job: where its delta sync stands and
// whether it is quarantined after repeated failures.
type JobState struct {
	Job                 string
	DeltaLink           string // "" : next mirror refresh is a full read
	LastSuccessAt       *time.Time
	LastRunID           int64
	QuarantinedUntil    *time.Time
	QuarantineReason    string
	ConsecutiveFailures int
}
