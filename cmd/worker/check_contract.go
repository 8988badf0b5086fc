package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/store"
)

// duplicateExamples is how many duplicated external_ids check names.
const duplicateExamples = 5

// checkSourceContract checks what a run would otherwise only find row by
// row: that the source holds one row per external_id, and which groups the
// job may touch. usesGroups says whether the source or the links name any
// group.
//
// A duplicated external_id fails the check (not a warning): it is a defect
// of the view's key (a JOIN matching twice), not of one HR record; the
// worker can never act on those users until it is fixed, and the same
// fault tends to grow with the joined table. An unset allowed_groups is a
// warning: the job works as it always did, but any group id in the source
// is honoured.
func checkSourceContract(ctx context.Context, job config.Job, st *store.Store, rep *checkReport, usesGroups bool) {
	dups, err := st.FindSourceDuplicates(ctx, job.Source, duplicateExamples)
	switch {
	case err != nil:
		rep.add(checkItem{Name: "source_ids", Job: job.Name, Status: checkWarn, Detail: "could not look for duplicate external_id: " + err.Error()})
	case dups.IDs > 0:
		ex := make([]string, len(dups.Examples))
		for i, d := range dups.Examples {
			ex[i] = fmt.Sprintf("%s ×%d", d.ExternalID, d.Rows)
		}
		more := ""
		if dups.IDs > len(dups.Examples) {
			more = ", …"
		}
		rep.add(checkItem{Name: "source_ids", Job: job.Name, Status: checkFail,
			Detail: fmt.Sprintf("%d external_id(s) appear more than once in %s (%d rows): %s%s",
				dups.IDs, job.Source, dups.Rows, strings.Join(ex, ", "), more),
			Advice: "make the view return one row per external_id (usually a JOIN that matches more than one row); " +
				"until then every row of these ids fails and nothing is written for those users"})
	default:
		rep.add(checkItem{Name: "source_ids", Job: job.Name, Status: checkOK, Detail: "every external_id appears once in " + job.Source})
	}

	switch {
	case job.AllowedGroups == nil && usesGroups:
		rep.add(checkItem{Name: "groups", Job: job.Name, Status: checkWarn,
			Detail: "allowed_groups is not set: any group id in the source is honoured (users added to and removed from it)",
			Advice: fmt.Sprintf("set %s to the object ids of the groups this job manages", jobKey(job, "allowed_groups"))})
	case job.AllowedGroups != nil:
		n, err := st.CountRowsOutsideGroups(ctx, job.Source, job.AllowedGroups)
		switch {
		case err != nil:
			rep.add(checkItem{Name: "groups", Job: job.Name, Status: checkWarn, Detail: err.Error()})
		case n > 0:
			rep.add(checkItem{Name: "groups", Job: job.Name, Status: checkWarn,
				Detail: fmt.Sprintf("%d source row(s) name a group outside allowed_groups (%d groups); those users fail at every run", n, len(job.AllowedGroups)),
				Advice: fmt.Sprintf("fix the rows' groups, or add the groups to %s", jobKey(job, "allowed_groups"))})
		default:
			rep.add(checkItem{Name: "groups", Job: job.Name, Status: checkOK,
				Detail: fmt.Sprintf("the job may manage only the %d group(s) of allowed_groups; every source row keeps to them", len(job.AllowedGroups))})
		}
	}
}

// jobKey is the key path of a job's key in the configuration file. A job
// expanded from a template has no entry of its own there: the key is the
// template's, and applies to each of its tenants (group object ids are
// GUIDs, so a template lists its tenants' groups together).
func jobKey(job config.Job, key string) string {
	if job.Template != "" {
		return fmt.Sprintf("jobs[%s].%s (the template's, for every tenant of it)", job.Template, key)
	}
	return fmt.Sprintf("jobs[%s].%s", job.Name, key)
}
