package sync

import (
	"strings"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/profile"
)

// Leaver actions (config leaver.action).
const (
	LeaverDisable = "disable"
	LeaverDelete  = "delete"
	LeaverIgnore  = "ignore"
)

// Matching rules (config matching.adopt_by).
const (
	AdoptNone       = "none"
	AdoptEmployeeID = "employee_id"
	AdoptUPN        = "user_principal_name"
)

// Policy is what the planner needs to know about a job. It is derived once
// from config.Job so the planner never sees credentials or endpoints.
type Policy struct {
	// Job names the job in messages ("allowed_domains of job hr").
	Job string
	// AllowedDomains are lower-case UPN domains; empty allows none.
	AllowedDomains []string
	// LeaverAction is disable, delete or ignore.
	LeaverAction string
	// DeleteAfter is how long a leaver stays disabled before it is deleted
	// (LeaverAction delete only).
	DeleteAfter time.Duration
	// AdoptBy is none, employee_id or user_principal_name.
	AdoptBy string
	// ForceChangePassword sets forceChangePasswordNextSignIn on creates.
	ForceChangePassword bool
	// Source names the job's source relation in messages about its
	// contract (duplicate external_id).
	Source string
	// AllowedGroups, when not nil, are the lower-case group object ids the
	// job may add users to or remove them from (jobs[].allowed_groups);
	// nil honours any group id of the source (contract.go).
	AllowedGroups map[string]bool
	// Schema is the job's attribute set: the attribute table plus its
	// schema extensions, restricted to the columns its source has (the
	// engine discovers them at run start); nil manages every built-in
	// attribute.
	Schema *profile.Schema
}

// schema is p.Schema, or every built-in attribute.
func (p Policy) schema() *profile.Schema {
	if p.Schema == nil {
		return profile.Default
	}
	return p.Schema
}

// PolicyFor derives the planner policy of a job. Empty settings get the
// safe defaults (disable leavers, never adopt), so a half-filled Job never
// makes the planner delete or adopt.
func PolicyFor(job config.Job) Policy {
	p := Policy{
		Job:                 job.Name,
		LeaverAction:        strings.ToLower(strings.TrimSpace(job.Leaver.Action)),
		DeleteAfter:         job.Leaver.DeleteAfter.Duration,
		AdoptBy:             strings.ToLower(strings.TrimSpace(job.Matching.AdoptBy)),
		ForceChangePassword: job.Password.ForceChangeNextSignIn,
		Source:              job.Source,
		AllowedGroups:       allowedGroups(job.AllowedGroups),
	}
	for _, d := range job.AllowedDomains {
		if d = strings.ToLower(strings.TrimSpace(d)); d != "" {
			p.AllowedDomains = append(p.AllowedDomains, d)
		}
	}
	switch p.LeaverAction {
	case LeaverDisable, LeaverDelete, LeaverIgnore:
	default:
		p.LeaverAction = LeaverDisable
	}
	switch p.AdoptBy {
	case AdoptEmployeeID, AdoptUPN:
	default:
		p.AdoptBy = AdoptNone
	}
	return p
}

func (p Policy) domainAllowed(domain string) bool {
	domain = strings.ToLower(domain)
	for _, d := range p.AllowedDomains {
		if d == domain {
			return true
		}
	}
	return false
}
