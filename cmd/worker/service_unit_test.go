package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const unitFile = "../../configs/entraprov-worker.service"

// maxExposure is systemd-analyze security's "OK" bound; the unit must stay
// at or under it as directives are added.
const maxExposure = 2.5

// The unit must pass `systemd-analyze verify` and rate "OK" or better in
// `systemd-analyze security`. systemd-analyze is part of systemd; on a host
// without it there is nothing to run.
func TestServiceUnitVerifiesAndIsHardened(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (apt-get install systemd)")
	}
	unit, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	// verify insists that ExecStart's binary exists: point it at one that
	// does, leaving every other line as shipped.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(unit), "ExecStart=/usr/local/bin/worker ", "ExecStart="+self+" ", 1)
	if text == string(unit) {
		t.Fatal("unit has no ExecStart=/usr/local/bin/worker line")
	}
	path := filepath.Join(t.TempDir(), "entraprov-worker.service")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	out, err = exec.Command(analyze, "security", "--offline=yes", "--no-pager", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+) (\S+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	exposure, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security: exposure %.1f %s", exposure, m[2])
	if exposure > maxExposure {
		t.Errorf("exposure %.1f %s > %.1f; the unit lost hardening:\n%s", exposure, m[2], maxExposure, out)
	}
}

// What the daemon relies on from its unit.
func TestServiceUnitContract(t *testing.T) {
	unit, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"Type=notify", "NotifyAccess=main", "WatchdogSec=", "TimeoutStopSec=60s",
		"ExecStart=/usr/local/bin/worker run --config /etc/entraprov/config.yaml",
		"ExecReload=/bin/kill -HUP $MAINPID", "LoadCredential=graph-secret:",
		"RestartPreventExitStatus=78", "DynamicUser=yes", "StateDirectory=entraprov",
	} {
		if !strings.Contains(string(unit), "\n"+line) {
			t.Errorf("unit lacks %q", line)
		}
	}
	// --stop-timeout's default must leave the run time to record itself
	// interrupted before systemd's SIGKILL.
	cmd := newRunCommand()
	if d := cmd.Flags().Lookup("stop-timeout").DefValue; d != "45s" {
		t.Errorf("--stop-timeout default %s; keep it below TimeoutStopSec=60s", d)
	}
}
