package jobs

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/entraprov/entraprov/internal/config"
)

// Parse parses a job's schedule with config.ParseSchedule (5 fields, an
// optional seconds field, CRON_TZ= / TZ= prefixes, descriptors such as
// @daily and @every 6h), so what validates is what runs. "@every D" is then
// aligned to the clock (every 10s fires at :00, :10, …; every 6h at 00:00,
// 06:00 … UTC) instead of counting from the process start as robfig/cron
// does: two worker processes (a hot standby) must agree on the occurrence
// times, or the unique (job, scheduled_for) could not make each occurrence
// run once.
func Parse(spec string) (cron.Schedule, error) {
	s, err := config.ParseSchedule(spec)
	if err != nil {
		return nil, fmt.Errorf("schedule: %w", err)
	}
	if every, ok := s.(cron.ConstantDelaySchedule); ok {
		return alignedEvery{every.Delay}, nil
	}
	return s, nil
}

// alignedEvery fires at the multiples of its period since the zero time.
type alignedEvery struct{ period time.Duration }

func (a alignedEvery) Next(t time.Time) time.Time {
	return t.Truncate(a.period).Add(a.period)
}

// lastActivation is the latest activation of s in (after, now], or false when
// none. It walks forward from a window before now that doubles until it
// holds an activation, so a long downtime of an @every 1s job costs a few
// dozen steps rather than one per missed second.
func lastActivation(s cron.Schedule, after, now time.Time) (time.Time, bool) {
	first := s.Next(after)
	if first.IsZero() || first.After(now) {
		return time.Time{}, false
	}
	for window := time.Minute; ; window *= 2 {
		from := now.Add(-window)
		if !from.After(after) {
			from = after
		}
		t := s.Next(from)
		if t.IsZero() || t.After(now) {
			continue // no activation in this window: widen it
		}
		for {
			n := s.Next(t)
			if n.IsZero() || n.After(now) {
				return t, true
			}
			t = n
		}
	}
}
