package main

// Tests of the real `worker run` binary: separate processes, real signals,
// the real engine talking TLS to graphsim, real PostgreSQL.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/graphsim"
	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/synctest"
	"github.com/entraprov/entraprov/internal/testdb"
)

// buildWorker compiles this command into dir (cached by the go build cache,
// so the second call only links).
func buildWorker(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "worker")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// simJob starts graphsim (default tenant, consented certificate app) and
// returns a job section pointing at it.
func simJob(t testing.TB, opts graphsim.Options, name, schedule string) (string, *graphsim.Sim) {
	t.Helper()
	sim := graphsim.New(opts)
	dir := t.TempDir()
	_, seeded, err := sim.SeedDefaultFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := graphsim.StartTestTLS(t, sim)
	ten := seeded.Tenants[0]
	app := ten.Apps[0]
	return simJobYAML{Name: name, Tenant: ten.ID, Authority: srv.AuthorityHost, GraphURL: srv.GraphURL, CAFile: srv.CAFile,
		ClientID: app.ClientID, CertFile: app.CertificateFile, KeyFile: app.KeyFile,
		Schedule: schedule, Domain: graphsim.DefaultDomain, Extra: []string{"catch_up: false"}}.String(), sim
}

func seedDesired(t *testing.T, st *store.Store, n int) {
	t.Helper()
	_, err := st.Pool().Exec(context.Background(), `
INSERT INTO entraprov.desired_users (external_id, user_principal_name, display_name, employee_id)
SELECT 'E' || lpad(i::text, 5, '0'), 'user' || i || '@`+graphsim.DefaultDomain+`', 'User ' || i, i::text
  FROM generate_series(1, $1) AS i`, n)
	if err != nil {
		t.Fatal(err)
	}
}

type workerProc struct {
	cmd  *exec.Cmd
	logs *synctest.Buffer
	done chan error
}

func startWorkerProc(t *testing.T, bin, cfgPath string, args ...string) *workerProc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"run", "--config", cfgPath}, args...)...)
	cmd.Env = append(os.Environ(), "DATABASE_URL=", "ENTRAPROV_DATABASE_URL=", "NOTIFY_SOCKET=", "WATCHDOG_USEC=")
	p := &workerProc{cmd: cmd, logs: &synctest.Buffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

// term sends SIGTERM and returns the exit code once the process ended.
func (p *workerProc) term(t *testing.T, within time.Duration) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
		p.done <- nil // for the cleanup
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("worker did not exit within %v of SIGTERM; log:\n%s", within, p.logs.String())
		return -1
	}
}

func waitLog(t *testing.T, p *workerProc, want string, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if strings.Contains(p.logs.String(), want) {
			return
		}
	}
	t.Fatalf("no %s in the log within %v:\n%s", want, within, p.logs.String())
}

// A hot standby: two `worker run` processes on one database run every
// scheduled occurrence exactly once between them, and create each user once.
func TestTwoWorkerProcessesRunEachOccurrenceOnce(t *testing.T) {
	bin := buildWorker(t)
	dbURL := testdb.NewURL(t)
	st := openStore(t, dbURL)
	seedDesired(t, st, 50)
	job, sim := simJob(t, graphsim.Options{}, "standby", "@every 2s")
	cfgPath := writeConfig(t, dbURL, job, metricsOff)

	a := startWorkerProc(t, bin, cfgPath)
	b := startWorkerProc(t, bin, cfgPath)
	// Both must be up for the race to be real; then let a few occurrences
	// pass (polling: a loaded machine is slow).
	for _, p := range []*workerProc{a, b} {
		waitLog(t, p, `"msg":"worker ready"`, 30*time.Second)
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		var n int
		_ = st.Pool().QueryRow(context.Background(),
			`SELECT count(DISTINCT scheduled_for) FROM entraprov.sync_runs WHERE job = 'standby' AND status NOT IN ('running', 'skipped')`).Scan(&n)
		if n >= 4 {
			break
		}
	}
	for _, p := range []*workerProc{a, b} {
		if code := p.term(t, 20*time.Second); code != 0 {
			t.Errorf("exit %d after SIGTERM; log:\n%s", code, p.logs.String())
		}
	}

	var occurrences, rows, bySecond int
	err := st.Pool().QueryRow(context.Background(), `
SELECT count(DISTINCT scheduled_for), count(*), count(DISTINCT (host, pid))
  FROM entraprov.sync_runs WHERE job = 'standby' AND status <> 'skipped'`).Scan(&occurrences, &rows, &bySecond)
	if err != nil {
		t.Fatal(err)
	}
	if occurrences < 4 {
		t.Fatalf("%d occurrences run in 30s of @every 2s, want >= 4\nA:\n%s\nB:\n%s", occurrences, a.logs.String(), b.logs.String())
	}
	if rows != occurrences {
		t.Fatalf("%d runs for %d occurrences: an occurrence ran twice", rows, occurrences)
	}
	if n := len(sim.Users(graphsim.DefaultTenantID)); n != 50 {
		t.Errorf("directory holds %d users after the runs, want 50 (each created once)", n)
	}
	t.Logf("%d occurrences, %d runs, run by %d process(es)", occurrences, rows, bySecond)
}

// SIGTERM during a run: the worker stops within the stop timeout, exits 0,
// and the run is recorded interrupted (not left "running").
func TestSIGTERMDuringRunInterruptsAndExitsZero(t *testing.T) {
	bin := buildWorker(t)
	dbURL := testdb.NewURL(t)
	st := openStore(t, dbURL)
	seedDesired(t, st, 600)
	// Each $batch takes a second: the first run lasts well past the signal.
	job, _ := simJob(t, graphsim.Options{Latency: graphsim.Latency{Batch: time.Second}}, "slow", "@every 1s")
	cfgPath := writeConfig(t, dbURL, job, metricsOff)

	p := startWorkerProc(t, bin, cfgPath, "--stop-timeout", "20s")
	deadline := time.Now().Add(30 * time.Second)
	var runID int64
	for runID == 0 && time.Now().Before(deadline) {
		_ = st.Pool().QueryRow(context.Background(),
			`SELECT coalesce(max(id), 0) FROM entraprov.sync_runs WHERE job = 'slow' AND status = 'running'`).Scan(&runID)
		time.Sleep(100 * time.Millisecond)
	}
	if runID == 0 {
		t.Fatalf("no run started; log:\n%s", p.logs.String())
	}
	time.Sleep(1500 * time.Millisecond) // batches in flight
	t0 := time.Now()
	if code := p.term(t, 25*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0; log:\n%s", code, p.logs.String())
	}
	stopped := time.Since(t0)
	run, err := st.GetRun(context.Background(), runID)
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != store.RunInterrupted {
		t.Fatalf("run %d is %q after SIGTERM, want interrupted; log:\n%s", runID, run.Status, p.logs.String())
	}
	var pending int
	_ = st.Pool().QueryRow(context.Background(),
		`SELECT count(*) FROM entraprov.sync_operations WHERE run_id = $1 AND status = 'pending'`, runID).Scan(&pending)
	if pending != 0 {
		t.Errorf("%d operations left pending after the stop", pending)
	}
	if !strings.Contains(p.logs.String(), `"msg":"worker stopped"`) {
		t.Errorf("no clean stop in the log:\n%s", p.logs.String())
	}
	t.Logf("stopped %v after SIGTERM; run %d: %s (%s)", stopped.Round(time.Millisecond), runID, run.Status, run.ErrorSummary)
}
