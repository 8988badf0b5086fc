package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"

	"github.com/entraprov/entraprov/internal/directory"
)

// graphTimeScaleEnv tells the worker that its Graph is graphsim running at
// that time scale (the systest and soak harnesses set it), so the write
// budgets it paces to shrink their windows like the emulator's. Unset in
// production: Graph's documented budgets apply.
const graphTimeScaleEnv = "ENTRAPROV_GRAPH_TIME_SCALE"

// processPacing is the one write-budget registry of the process: every job
// the daemon or `worker sync` runs builds its Graph client on it, so jobs
// of one app share the app's budgets instead of discovering them through
// 429s (directory.Pacing).
var processPacing = sync.OnceValues(func() (*directory.Pacing, error) {
	b := directory.GraphBudgets()
	if v := os.Getenv(graphTimeScaleEnv); v != "" {
		s, err := strconv.ParseFloat(v, 64)
		if err != nil || s < 1 {
			return nil, fmt.Errorf("%s=%q: want the emulator's time scale, a number ≥ 1 (unset it against Microsoft Graph)", graphTimeScaleEnv, v)
		}
		b = b.Scaled(1, s)
	}
	return directory.NewPacing(b), nil
})
