package sync

import (
	"log/slog"
	gosync "sync"
	"time"
)

// phaseTimer times the parts of a run for its summary line, so an operator
// sees whether a slow run waited on Graph's write quota (the apply passes)
// or on its own reads and writes around them (mirror refreshes, the budget's
// planning read, the closing writes).
type phaseTimer struct {
	mu    gosync.Mutex
	start time.Time
	names []string
	d     map[string]time.Duration
	marks []phaseMark // instants since start, first one of a name wins
}

type phaseMark struct {
	name string
	at   time.Duration
}

func newPhaseTimer() *phaseTimer {
	return &phaseTimer{start: time.Now(), d: map[string]time.Duration{}}
}

// time starts phase name and returns the function that ends it; a phase
// timed twice (a second mirror refresh) adds up.
func (t *phaseTimer) time(name string) func() {
	began := time.Now()
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if _, ok := t.d[name]; !ok {
			t.names = append(t.names, name)
		}
		t.d[name] += time.Since(began)
	}
}

// mark records the first time the run reached a point (its first request
// handed to the executor, say).
func (t *phaseTimer) mark(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range t.marks {
		if m.name == name {
			return
		}
	}
	t.marks = append(t.marks, phaseMark{name, time.Since(t.start)})
}

// attr is the timings as one log attribute: each phase's duration, and
// each mark as its time since the run started ("at_" prefix).
func (t *phaseTimer) attr() slog.Attr {
	t.mu.Lock()
	defer t.mu.Unlock()
	as := make([]any, 0, len(t.names)+len(t.marks))
	for _, n := range t.names {
		as = append(as, slog.String(n, t.d[n].Round(time.Millisecond).String()))
	}
	for _, m := range t.marks {
		as = append(as, slog.String("at_"+m.name, m.at.Round(time.Millisecond).String()))
	}
	return slog.Group("phases", as...)
}
