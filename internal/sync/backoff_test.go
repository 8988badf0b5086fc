package sync

import (
	"math/rand/v2"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/store"
)

func mustSchedule(t *testing.T, spec string) BackoffPolicy {
	t.Helper()
	p := BackoffPolicyFor(config.Job{Schedule: spec, UserBackoff: config.UserBackoff{AfterFailures: 3,
		Max: config.Duration{Duration: 7 * 24 * time.Hour}}})
	if p.Schedule == nil {
		t.Fatalf("schedule %q did not resolve", spec)
	}
	return p
}

func TestBackoffNextAttempt(t *testing.T) {
	at := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC) // a Tuesday
	fri := time.Date(2026, 12, 4, 2, 0, 0, 0, time.UTC)
	if at.Weekday() != time.Tuesday || fri.Weekday() != time.Friday {
		t.Fatal("test dates moved")
	}
	hourly := BackoffPolicy{AfterFailures: 3, Base: time.Hour, Max: 7 * 24 * time.Hour}
	jittered := hourly
	jittered.Jitter = 5 * time.Minute
	daily := mustSchedule(t, "0 2 * * *")
	weekdays := mustSchedule(t, "0 2 * * 1-5")
	for _, tt := range []struct {
		name     string
		p        BackoffPolicy
		failures int
		from     time.Time
		want     time.Time
	}{
		{"off_never_waits", BackoffPolicy{Base: time.Hour, Max: time.Hour}, 10, at, at},
		{"first_failure_is_retried_next_run", hourly, 1, at, at},
		{"below_threshold_is_retried_next_run", hourly, 2, at, at},
		{"threshold_waits_two_bases_a_tenth_early", hourly, 3, at, at.Add(2*time.Hour - 6*time.Minute)},
		{"each_further_failure_doubles", hourly, 4, at, at.Add(4*time.Hour - 6*time.Minute)},
		{"fifth_failure_waits_eight_bases", hourly, 5, at, at.Add(8*time.Hour - 6*time.Minute)},
		{"capped_at_max", hourly, 12, at, at.Add(7*24*time.Hour - 6*time.Minute)},
		{"huge_count_does_not_overflow", hourly, 1 << 20, at, at.Add(7*24*time.Hour - 6*time.Minute)},
		{"jitter_makes_it_earlier", jittered, 3, at, at.Add(2*time.Hour - 11*time.Minute)},
		{"daily_schedule_sits_out_one_run", daily, 3, at, at.Add(48*time.Hour - 144*time.Minute)},
		{"daily_schedule_then_three_runs", daily, 4, at, at.Add(4*24*time.Hour - 144*time.Minute)},
		{"daily_schedule_capped_at_a_week", daily, 5, at, at.Add(7*24*time.Hour - 144*time.Minute)},
		{"late_start_counts_from_the_next_occurrence", daily, 3, at.Add(7 * time.Minute), at.Add(48*time.Hour - 144*time.Minute)},
		// Friday's failure skips Monday's run, not the weekend's none.
		{"weekday_schedule_skips_a_run_not_a_day", weekdays, 3, fri, fri.Add(4*24*time.Hour - 144*time.Minute)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.NextAttempt(tt.failures, tt.from); !got.Equal(tt.want) {
				t.Fatalf("NextAttempt(%d, %s) = %s; want %s", tt.failures, tt.from.Format(time.RFC3339),
					got.Format(time.RFC3339), tt.want.Format(time.RFC3339))
			}
		})
	}
}

// A user failing every attempt of a nightly job (runs starting up to 10
// minutes late) is tried on 3 nights in a row, then sits out 1 run, 3, and
// then waits a week at most, whatever the jitter.
func TestBackoffNightlyAttemptDays(t *testing.T) {
	p := mustSchedule(t, "0 2 * * *")
	p.Jitter = 10 * time.Minute
	day0 := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 20 {
		var attempts []int
		var b *store.UserBackoff
		for day := range 30 {
			now := day0.Add(time.Duration(day)*24*time.Hour + time.Duration(rng.Int64N(int64(p.Jitter))))
			if b != nil && now.Before(b.NextAttemptAt) {
				continue
			}
			attempts = append(attempts, day)
			nb := nextBackoff(b, "nightly", "E1", "h", failure{httpStatus: 400, code: "Request_BadRequest"}, int64(day), now, p)
			b = &nb
		}
		if want := []int{0, 1, 2, 4, 8, 15, 22, 29}; !slices.Equal(attempts, want) {
			t.Fatalf("trial %d: attempted on days %v; want %v", trial, attempts, want)
		}
	}
}

func TestNextBackoff(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	now := t0.Add(72 * time.Hour)
	p := BackoffPolicy{AfterFailures: 3, Base: time.Hour, Max: 7 * 24 * time.Hour}
	bad := failure{action: "create", httpStatus: 400, code: "Request_BadRequest", message: "invalid", requestID: "req-9"}
	prev := &store.UserBackoff{Job: "j", ExternalID: "E1", DesiredHash: "h", Action: "create", HTTPStatus: 400,
		ErrorCode: "Request_BadRequest", Failures: 2, FirstFailedAt: t0, LastFailedAt: t0, NextAttemptAt: t0}
	for _, tt := range []struct {
		name       string
		prev       *store.UserBackoff
		hash       string
		f          failure
		failures   int
		firstAt    time.Time
		backingOff bool
	}{
		{"first_failure_starts_at_one", nil, "h", bad, 1, now, false},
		{"same_hash_and_error_counts_on", prev, "h", bad, 3, t0, true},
		{"changed_row_starts_again", prev, "h2", bad, 1, now, false},
		{"other_error_code_starts_again", prev, "h", failure{httpStatus: 400, code: "Request_ResourceNotFound"}, 1, now, false},
		{"other_status_starts_again", prev, "h", failure{httpStatus: 403, code: "Request_BadRequest"}, 1, now, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := nextBackoff(tt.prev, "j", "E1", tt.hash, tt.f, 42, now, p)
			if b.Failures != tt.failures || !b.FirstFailedAt.Equal(tt.firstAt) || !b.LastFailedAt.Equal(now) ||
				b.DesiredHash != tt.hash || b.LastRunID != 42 || b.HTTPStatus != tt.f.httpStatus || b.ErrorCode != tt.f.code {
				t.Fatalf("nextBackoff = %+v; want %d failures since %s", b, tt.failures, tt.firstAt)
			}
			if got := b.NextAttemptAt.After(now); got != tt.backingOff {
				t.Fatalf("next attempt %s after now %s = %v; want %v", b.NextAttemptAt, now, got, tt.backingOff)
			}
		})
	}
}

func TestCountsForBackoff(t *testing.T) {
	for _, tt := range []struct {
		name        string
		status      int
		justCreated bool
		want        bool
	}{
		{"bad_request_counts", 400, false, true},
		{"conflict_counts", 409, false, true},
		{"forbidden_counts_here_save_filters_it", 403, false, true},
		{"not_found_counts", 404, false, true},
		{"not_found_right_after_create_is_lag", 404, true, false},
		{"unauthorized_is_the_jobs", 401, false, false},
		{"throttled_is_grahs_load", 429, false, false},
		{"timeout_says_nothing", 408, false, false},
		{"server_error_is_transient", 503, false, false},
		{"no_answer_is_transient", 0, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := countsForBackoff(tt.status, tt.justCreated); got != tt.want {
				t.Fatalf("countsForBackoff(%d, %v) = %v; want %v", tt.status, tt.justCreated, got, tt.want)
			}
		})
	}
}

func TestDesiredHash(t *testing.T) {
	update := func(title string, msg string, from string) Decision {
		return Decision{Steps: []Step{{Action: ActUpdate, Kind: directory.OpUpdate, ObjectID: "0bJ-1",
			Fields:  map[string]any{"jobTitle": title, "department": nil},
			Changes: map[string]any{"jobTitle": change(from, title)}, Message: msg}}}
	}
	h := DesiredHash(update("Engineer", "", "x"))
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(h) {
		t.Fatalf("hash %q; want 32 hex digits", h)
	}
	if DesiredHash(update("Engineer", "renamed", "y")) != h {
		t.Error("message or recorded old value changed the hash; they are not what is asked of Graph")
	}
	if DesiredHash(update("Senior Engineer", "", "x")) == h {
		t.Error("another desired value kept the hash; a fixed source row must be tried again")
	}
	objCase := update("Engineer", "", "x")
	objCase.Steps[0].ObjectID = "0BJ-1"
	if DesiredHash(objCase) != h {
		t.Error("object id case changed the hash")
	}
	withGroup := update("Engineer", "", "x")
	withGroup.Steps = append(withGroup.Steps, Step{Action: ActGroupAdd, Kind: directory.OpAddMember, ObjectID: "obj-1", RelatedID: "g1"})
	if DesiredHash(withGroup) == h {
		t.Error("an extra step kept the hash")
	}
	if DesiredHash(Decision{}) != "" {
		t.Error("an unchanged user has a hash")
	}
}

func TestSendable(t *testing.T) {
	for _, tt := range []struct {
		name  string
		steps []Step
		want  bool
	}{
		{"update_is_sent", []Step{{Action: ActUpdate, Kind: directory.OpUpdate}}, true},
		{"validation_failure_is_not", []Step{{Action: ActCreate, Failure: "bad"}}, false},
		{"adoption_without_patch_is_not", []Step{{Action: ActAdopt}}, false},
		{"deferred_only_waits_for_pass_2", []Step{{Action: ActManager, Deferred: true}}, false},
		{"create_with_deferred_groups_is_sent", []Step{{Action: ActCreate, Kind: directory.OpCreate}, {Action: ActGroupAdd, Deferred: true}}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := sendable(Decision{Steps: tt.steps}); got != tt.want {
				t.Fatalf("sendable = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestBackoffWrites(t *testing.T) {
	bad := store.UserBackoff{ExternalID: "E1", HTTPStatus: 400, Failures: 1}
	denied := store.UserBackoff{ExternalID: "E2", HTTPStatus: 403, Failures: 1}
	rows := map[string]store.UserBackoff{"E1": bad, "E3": {ExternalID: "E3"}, "E4": {ExternalID: "E4"}}
	seen := map[string]bool{"E1": true, "E3": true}
	for _, tt := range []struct {
		name               string
		complete, anyWrite bool
		saves              []string
		deletes            []string
	}{
		{"forbidden_counts_when_other_writes_succeeded_and_unseen_rows_go", true, true, []string{"E1", "E2"}, []string{"E3", "E4"}},
		{"forbidden_everywhere_is_the_jobs_permission", true, false, []string{"E1"}, []string{"E3", "E4"}},
		{"an_incomplete_pass_keeps_unseen_rows", false, true, []string{"E1", "E2"}, []string{"E3"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			saves, dels := backoffWrites([]store.UserBackoff{bad, denied}, []string{"E3", "E3"}, rows, seen, tt.complete, tt.anyWrite)
			var ids []string
			for _, b := range saves {
				ids = append(ids, b.ExternalID)
			}
			if !slices.Equal(ids, tt.saves) || !slices.Equal(dels, tt.deletes) {
				t.Fatalf("saves %v, deletes %v; want %v, %v", ids, dels, tt.saves, tt.deletes)
			}
		})
	}
}
