package jobs_test

import (
	"fmt"
	"time"

	"github.com/entraprov/entraprov/internal/jobs"
)

// Schedules accept cron specs with an optional seconds field and time zone
// (without one, the worker's local zone), and descriptors. @every is aligned to the clock, so every worker process
// computes the same occurrences whenever it started.
func ExampleParse() {
	now := time.Date(2026, 3, 10, 13, 7, 42, 0, time.UTC)
	for _, spec := range []string{
		"TZ=UTC 0 2 * * *",
		"CRON_TZ=Europe/Paris 0 2 * * *",
		"30 */15 * * * *",
		"@every 10m",
	} {
		s, err := jobs.Parse(spec)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%-32s next %s\n", spec, s.Next(now).UTC().Format(time.DateTime))
	}
	// Output:
	// TZ=UTC 0 2 * * *                 next 2026-03-11 02:00:00
	// CRON_TZ=Europe/Paris 0 2 * * *   next 2026-03-11 01:00:00
	// 30 */15 * * * *                  next 2026-03-10 13:15:30
	// @every 10m                       next 2026-03-10 13:10:00
}
