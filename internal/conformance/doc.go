// Package conformance holds one script of the worker's end-to-end
// scenarios — sign-in with a client secret and with a certificate, create,
// minimal update, disable, manager set and removed, group add and remove, a
// delta round trip, restore of a deleted user inside a $batch, a small write
// burst that records the throttling headers, and one full engine run over
// PostgreSQL — and the two places it runs:
//
//   - graphsim, in-process over TLS (the default, part of `make test`), so
//     every change to the worker or to the emulator is held to the script;
//   - a real Microsoft Entra tenant named by ENTRAPROV_CONF_* variables
//     (`make conformance`), so graphsim and the real service answer the same
//     script. Without the variables that run is skipped with a message naming
//     each one to set.
//
// It drives the worker's own code: internal/directory's Client (Execute,
// FindUsers, Delta, DeletedUsers) and internal/sync's Engine, with the real
// azidentity and msgraph-sdk-go clients. Only what the worker has no call
// for goes through the SDK directly, on the same client: read-backs of a
// manager and of group membership, and the suite's bookkeeping (listing its
// users, deleting them permanently from deleted items).
//
// Against a tenant it touches only users whose userPrincipalName starts with
// the marker "entraprov-conf-" followed by a per-run random part; it removes
// them at the end, also when a scenario fails (soft delete, then permanent
// delete from deleted items), and sweeps leftovers of earlier interrupted
// runs the same way before it starts. Two runs against one tenant at the
// same time would sweep each other's users: run one at a time.
//
// The package has no non-test code; everything is in its _test.go files.
package conformance
