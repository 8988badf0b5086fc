package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/entraprov/entraprov/internal/store"
)

// checkOwners lists directory objects linked by more than one job: each job
// would enable, disable or delete the account by its own source (issue 19).
// Quiet when there are none.
func checkOwners(ctx context.Context, st *store.Store, rep *checkReport) {
	shared, err := st.SharedLinks(ctx)
	if err != nil {
		rep.add(checkItem{Name: "owners", Status: checkWarn, Detail: err.Error()})
		return
	}
	if len(shared) == 0 {
		return
	}
	lines := make([]string, 0, len(shared))
	for _, s := range shared {
		lines = append(lines, fmt.Sprintf("%s linked by %s", s.ObjectID, strings.Join(s.Links, ", ")))
	}
	rep.add(checkItem{Name: "owners", Status: checkFail,
		Detail: fmt.Sprintf("%d account(s) managed by more than one job: %s", len(shared), strings.Join(lines, "; ")),
		Advice: "keep each account in one job's source; hand the others over (README, \"Moving a user between jobs\")"})
}
