package jobs

import (
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	utc := time.Date(2026, 3, 10, 1, 59, 30, 0, time.UTC)
	tests := []struct {
		name string
		spec string
		from time.Time
		want time.Time // zero: the spec must be refused
	}{
		{"five fields run on the minute", "0 2 * * *", utc, time.Date(2026, 3, 10, 2, 0, 0, 0, time.UTC)},
		{"optional seconds field", "45 59 1 * * *", utc, time.Date(2026, 3, 10, 1, 59, 45, 0, time.UTC)},
		{"CRON_TZ prefix sets the zone", "CRON_TZ=Europe/Paris 0 3 * * *", utc, time.Date(2026, 3, 10, 2, 0, 0, 0, time.UTC)},
		{"TZ prefix sets the zone", "TZ=America/New_York 0 0 * * *", utc, time.Date(2026, 3, 10, 4, 0, 0, 0, time.UTC)},
		{"descriptor with a zone", "CRON_TZ=UTC @daily", utc, time.Date(2026, 3, 11, 0, 0, 0, 0, time.UTC)},
		{"every is aligned to the clock", "@every 10s", utc.Add(3*time.Second + 250*time.Millisecond), time.Date(2026, 3, 10, 1, 59, 40, 0, time.UTC)},
		{"every 6h is aligned to UTC midnight", "@every 6h", utc, time.Date(2026, 3, 10, 6, 0, 0, 0, time.UTC)},
		{"time zone prefix without a spec is refused", "CRON_TZ=UTC", utc, time.Time{}},
		{"unknown zone is refused", "CRON_TZ=Mars/Olympus 0 2 * * *", utc, time.Time{}},
		{"four fields are refused", "0 2 * *", utc, time.Time{}},
		{"seven fields are refused", "0 0 2 * * * 2026", utc, time.Time{}},
		{"empty is refused", " ", utc, time.Time{}},
		{"unknown descriptor is refused", "@fortnightly", utc, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.spec)
			if tt.want.IsZero() {
				if err == nil {
					t.Fatalf("Parse(%q) accepted", tt.spec)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.spec, err)
			}
			if got := s.Next(tt.from); !got.Equal(tt.want) {
				t.Errorf("Next(%v) = %v, want %v", tt.from, got, tt.want)
			}
		})
	}
}

// Two processes started at different moments must agree on @every
// occurrences, or the unique (job, scheduled_for) cannot deduplicate them.
func TestEveryAgreesAcrossProcessStarts(t *testing.T) {
	s, err := Parse("@every 10s")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := s.Next(base.Add(1200 * time.Millisecond))
	b := s.Next(base.Add(7900 * time.Millisecond))
	if !a.Equal(b) || !a.Equal(base.Add(10*time.Second)) {
		t.Fatalf("starts at +1.2s and +7.9s give %v and %v; want both %v", a, b, base.Add(10*time.Second))
	}
}

func TestLastActivation(t *testing.T) {
	at := func(h, m, s int) time.Time { return time.Date(2026, 3, 10, h, m, s, 0, time.UTC) }
	tests := []struct {
		name       string
		spec       string
		last, now  time.Time
		want       time.Time
		wantMissed bool
	}{
		{"nightly run recorded, next not due", "0 2 * * *", at(2, 0, 0), at(13, 0, 0), time.Time{}, false},
		{"down over the nightly time", "0 2 * * *", at(2, 0, 0).Add(-24 * time.Hour), at(13, 0, 0), at(2, 0, 0), true},
		{"down over several nights: only the latest", "0 2 * * *", at(2, 0, 0).Add(-96 * time.Hour), at(13, 0, 0), at(2, 0, 0), true},
		{"activation exactly now counts", "0 2 * * *", at(2, 0, 0).Add(-24 * time.Hour), at(2, 0, 0), at(2, 0, 0), true},
		{"every second over a day of downtime", "@every 1s", at(13, 0, 0).Add(-24 * time.Hour), at(13, 0, 0).Add(400 * time.Millisecond), at(13, 0, 0), true},
		{"every 10s, last one recorded", "@every 10s", at(13, 0, 0), at(13, 0, 9), time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			got, missed := lastActivation(s, tt.last, tt.now)
			if missed != tt.wantMissed || !got.Equal(tt.want) {
				t.Errorf("lastActivation = %v, %v; want %v, %v", got, missed, tt.want, tt.wantMissed)
			}
		})
	}
}
