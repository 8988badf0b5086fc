package graphsim

import (
	"maps"
	"strconv"
	"strings"
	"sync"
)

// Counters are what the emulator saw, for assertions and benchmark
// figures. Keys of Requests and Steps are "METHOD pattern status", e.g.
// "PATCH /v1.0/users/{id} 204"; Requests counts HTTP requests (a $batch is
// one), Steps counts the steps inside batches.
type Counters struct {
	Requests        map[string]int64            `json:"requests"`
	Steps           map[string]int64            `json:"steps"`
	Batches         int64                       `json:"batches"`
	BatchSteps      int64                       `json:"batch_steps"`
	Writes          int64                       `json:"writes"`         // successful writes (direct and in batches)
	ResourceUnits   int64                       `json:"resource_units"` // RU charged to admitted calls
	Throttled       int64                       `json:"throttled"`      // 429 answers (direct and steps)
	Faults          int64                       `json:"faults"`         // injected 5xx
	Dropped         int64                       `json:"dropped"`        // dropped connections
	LowPriority     int64                       `json:"low_priority"`   // calls with x-ms-throttle-priority: low
	Unauthenticated int64                       `json:"unauthenticated"`
	TokensIssued    int64                       `json:"tokens_issued"`
	TokenErrors     map[string]int64            `json:"token_errors"` // by "AADSTSnnn"
	Patches         map[string][]map[string]any `json:"patches"`      // user id → PATCH bodies (passwords redacted)
	Created         map[string]int              `json:"created"`      // lower(UPN) → successful creates
}

// Calls sums Requests and Steps for a method and pattern over all
// statuses (status "" ) or one status.
func (c Counters) Calls(method, pattern, status string) int64 {
	var n int64
	for _, m := range []map[string]int64{c.Requests, c.Steps} {
		for k, v := range m {
			parts := strings.SplitN(k, " ", 3)
			if len(parts) == 3 && parts[0] == method && parts[1] == pattern && (status == "" || parts[2] == status) {
				n += v
			}
		}
	}
	return n
}

// GraphRequests counts the HTTP requests to Graph (/v1.0/…), not those to
// the token endpoint; a $batch is one request.
func (c Counters) GraphRequests() int64 {
	var n int64
	for k, v := range c.Requests {
		if strings.Contains(k, " /v1.0/") {
			n += v
		}
	}
	return n
}

// Duplicates lists UPNs created more than once.
func (c Counters) Duplicates() []string {
	var out []string
	for upn, n := range c.Created {
		if n > 1 {
			out = append(out, upn)
		}
	}
	return out
}

type counterSet struct {
	mu sync.Mutex
	c  Counters
}

func newCounterSet() *counterSet {
	cs := &counterSet{}
	cs.reset()
	return cs
}

func (cs *counterSet) reset() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.c = Counters{Requests: map[string]int64{}, Steps: map[string]int64{}, TokenErrors: map[string]int64{},
		Patches: map[string][]map[string]any{}, Created: map[string]int{}}
}

func (cs *counterSet) snapshot() Counters {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c := cs.c
	c.Requests = maps.Clone(cs.c.Requests)
	c.Steps = maps.Clone(cs.c.Steps)
	c.TokenErrors = maps.Clone(cs.c.TokenErrors)
	c.Created = maps.Clone(cs.c.Created)
	c.Patches = make(map[string][]map[string]any, len(cs.c.Patches))
	for k, v := range cs.c.Patches {
		c.Patches[k] = append([]map[string]any(nil), v...)
	}
	return c
}

func (cs *counterSet) with(f func(c *Counters)) {
	cs.mu.Lock()
	f(&cs.c)
	cs.mu.Unlock()
}

func (cs *counterSet) addRequest(key string, status int) {
	cs.with(func(c *Counters) { c.Requests[key]++ })
}
func (cs *counterSet) addStep(key string, status int) {
	cs.with(func(c *Counters) { c.Steps[key]++; c.BatchSteps++ })
}
func (cs *counterSet) addBatch()           { cs.with(func(c *Counters) { c.Batches++ }) }
func (cs *counterSet) addWrite()           { cs.with(func(c *Counters) { c.Writes++ }) }
func (cs *counterSet) addRU(n int64)       { cs.with(func(c *Counters) { c.ResourceUnits += n }) }
func (cs *counterSet) addThrottled()       { cs.with(func(c *Counters) { c.Throttled++ }) }
func (cs *counterSet) addFault()           { cs.with(func(c *Counters) { c.Faults++ }) }
func (cs *counterSet) addDropped()         { cs.with(func(c *Counters) { c.Dropped++ }) }
func (cs *counterSet) addLowPriority()     { cs.with(func(c *Counters) { c.LowPriority++ }) }
func (cs *counterSet) addUnauthenticated() { cs.with(func(c *Counters) { c.Unauthenticated++ }) }
func (cs *counterSet) addToken()           { cs.with(func(c *Counters) { c.TokensIssued++ }) }
func (cs *counterSet) addTokenError(code int) {
	cs.with(func(c *Counters) { c.TokenErrors["AADSTS"+strconv.Itoa(code)]++ })
}
func (cs *counterSet) addCreated(upn string) {
	cs.with(func(c *Counters) { c.Created[strings.ToLower(upn)]++ })
}
func (cs *counterSet) addPatch(id string, body map[string]any) {
	cs.with(func(c *Counters) { c.Patches[id] = append(c.Patches[id], body) })
}

// Counters returns a snapshot of what the emulator saw.
func (s *Sim) Counters() Counters { return s.ctr.snapshot() }

// ResetCounters zeroes the counters (state and throttle buckets stay).
func (s *Sim) ResetCounters() { s.ctr.reset() }

// ResetThrottling refills every throttle bucket.
func (s *Sim) ResetThrottling() { s.thr.reset() }
