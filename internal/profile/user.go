package profile

// User is a user on either side of a job: a row of its source (the desired
// state) or a directory object (a mirror row, a Graph read). Attrs holds
// the table-driven attributes; the fields beside it are identity and
// relationships, which the planner handles by their own rules.
type User struct {
	// ObjectID is the directory object id ("" for a source row).
	ObjectID string
	// ExternalID is the source's key ("" for a directory user).
	ExternalID string
	Attrs      Values
	// Mail is the directory's read-only primary SMTP address.
	Mail string
	// ManagerExternalID is the source's manager (desired side).
	ManagerExternalID string
	// ManagerObjectID is the directory's manager (directory side).
	ManagerObjectID string
	// Groups are the desired group object ids (source side).
	Groups []string

	// The flags last, together: a row streams millions of these, and
	// scattered bools would each cost a padded word.

	// AccountEnabled: false in the source puts the user on leave (disabled,
	// kept); in the directory it is the account's state.
	AccountEnabled bool
	// ManagerKnown says ManagerObjectID is what the directory holds ("" then
	// means no manager). False for rows read without the manager (an
	// incremental delta item without manager@delta, a lookup): the planner
	// then trusts the link's record of the manager it applied.
	ManagerKnown bool
	// Deleted is true for a soft-deleted user, restorable for 30 days (a
	// delta "@removed" entry with reason "changed", a deleted item).
	Deleted bool
	// Purged is true for a delta "@removed" entry with reason "deleted":
	// gone for good.
	Purged bool
}

// Get is attribute i's value.
func (u *User) Get(i int) string { return u.Attrs.Get(i) }

// UPN is the userPrincipalName.
func (u *User) UPN() string { return u.Attrs.Get(UserPrincipalName) }

// Set sets attribute i's value.
func (u *User) Set(i int, v string) { u.Attrs = u.Attrs.With(i, v) }
