package sync

import (
	"fmt"
	"strings"

	"github.com/entraprov/entraprov/internal/store"
)

// planSwap orders a rename whose UPN another user of the job holds and
// releases in this run (a swap, a cycle or a chain of renames). Sent as
// is, each PATCH would meet the other's UPN (400) run after run. Instead
// the user first takes a temporary UPN of its own in the wanted (allowed)
// domain, with its other changes; its final rename is a deferred step,
// planned again in the second pass against the directory as the first
// left it, when the holder has moved away. A cycle thus completes in one
// run; history records the temporary UPN.
func planSwap(st Step, row store.SourceRow, d *store.DesiredUser) []Step {
	c := row.Current
	temp := tempUPN(row.Link.ObjectID, d.UPN())
	if strings.EqualFold(c.UPN(), temp) {
		// Already parked (the holder's rename failed last time): only the
		// other changes go now.
		delete(st.Fields, "userPrincipalName")
		delete(st.Changes, "userPrincipalName")
	} else {
		st.Fields["userPrincipalName"] = temp
		st.Changes["userPrincipalName"] = change(c.UPN(), temp)
	}
	st.Message = fmt.Sprintf("UPN swap: %s is held by external_id %q, which this run renames away; "+
		"renamed from %s to the temporary %s first, to %s once it is free", d.UPN(), row.UPNReleasedBy,
		c.UPN(), temp, d.UPN())
	final := Step{Action: ActUpdate, ObjectID: row.Link.ObjectID, Deferred: true,
		Changes: map[string]any{"userPrincipalName": change(temp, d.UPN())},
		Message: "the rename from the temporary UPN, once the holder moved away"}
	if len(st.Fields) == 0 {
		return []Step{final}
	}
	return []Step{st, final}
}

// tempUPN is the parking UPN of an object during a swap: unique to the
// object, deterministic (the planner is pure), in the wanted domain.
func tempUPN(objectID, wanted string) string {
	domain := wanted[strings.LastIndexByte(wanted, '@')+1:]
	return fmt.Sprintf("rn-%s@%s", strings.ToLower(objectID), domain)
}
