package main

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// A bad ENTRAPROV_GRAPH_TIME_SCALE stops the worker at start-up with exit
// 78, naming the variable; a good one is accepted (the command then goes
// on to the configuration file, missing here). Through the binary: the
// registry is built once per process.
func TestGraphTimeScaleIsCheckedAtStartUp(t *testing.T) {
	bin := buildWorker(t)
	for _, tc := range []struct {
		value, want string
	}{
		{"fast", graphTimeScaleEnv + `="fast": want the emulator's time scale`},
		{"0.5", graphTimeScaleEnv + `="0.5"`},
		{"20", "no such file"},
	} {
		cmd := exec.Command(bin, "plan", "--config", "/nonexistent/worker.yaml")
		cmd.Env = []string{"PATH=/usr/bin:/bin", graphTimeScaleEnv + "=" + tc.value}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitConfig || !strings.Contains(string(out), tc.want) {
			t.Errorf("%s=%s: %v, output %q; want exit %d and %q", graphTimeScaleEnv, tc.value, err, out, exitConfig, tc.want)
		}
		if tc.value == "20" && strings.Contains(string(out), graphTimeScaleEnv) {
			t.Errorf("%s=20 refused: %s", graphTimeScaleEnv, out)
		}
	}
}
