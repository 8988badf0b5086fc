package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/jobs"
	"github.com/entraprov/entraprov/internal/store"
	"github.com/entraprov/entraprov/internal/synctest"
	"github.com/entraprov/entraprov/internal/testdb"
)

// fakeEngine follows the engine's database protocol (job lock, unique
// occurrence row, finish; interrupted on cancellation) without Graph: the
// daemon tests are about scheduling, signals and systemd, and the engine
// has its own tests against graphsim.
type fakeEngine struct {
	st *store.Store
	// stuck, if set, makes "long" runs ignore cancellation until closed.
	stuck chan struct{}

	mu   sync.Mutex
	runs map[string]int
}

func (f *fakeEngine) Run(ctx context.Context, job config.Job, occ jobs.Occurrence) (store.Run, error) {
	unlock, ok, err := f.st.TryLockJob(ctx, job.Name)
	if err != nil {
		return store.Run{}, err
	}
	if !ok {
		return store.Run{}, jobs.ErrTaken
	}
	defer unlock()
	at := occ.ScheduledFor
	run := store.Run{Job: job.Name, TenantID: job.TenantID, Trigger: string(occ.Trigger), Mode: "apply", ScheduledFor: &at}
	if err := f.st.StartRun(ctx, &run); err != nil {
		if errors.Is(err, store.ErrOccurrenceTaken) {
			return store.Run{}, fmt.Errorf("%w: %w", jobs.ErrTaken, err)
		}
		return store.Run{}, err
	}
	f.mu.Lock()
	f.runs[job.Name]++
	f.mu.Unlock()
	run.Status = store.RunSucceeded
	run.Counts = store.CountsFromMap(map[string]int{"create/succeeded": 2})
	run.Stats = store.RunStats{Requests: 1, Batches: 1}
	if strings.HasPrefix(job.Name, "long") {
		if f.stuck != nil {
			<-f.stuck // a run that does not honour cancellation
			return run, nil
		}
		<-ctx.Done() // a run that lasts until the worker stops
		time.Sleep(50 * time.Millisecond)
		run.Status, run.ErrorSummary = store.RunInterrupted, "interrupted: the worker is stopping"
	}
	err = f.st.FinishRun(context.WithoutCancel(ctx), &run)
	return run, err
}

func (f *fakeEngine) count(job string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.runs[job]
}

// notifySocket stands in for systemd: it collects sd_notify datagrams.
type notifySocket struct {
	mu   sync.Mutex
	msgs []string
	conn *net.UnixConn
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	n := &notifySocket{conn: conn}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	return n
}

// waitFor waits until a message after index from contains want; it returns
// the index just past it.
func (n *notifySocket) waitFor(t *testing.T, from int, want string, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		n.mu.Lock()
		for i := from; i < len(n.msgs); i++ {
			if strings.Contains(n.msgs[i], want) {
				n.mu.Unlock()
				return i + 1
			}
		}
		n.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	t.Fatalf("no sd_notify message containing %q after #%d within %v; got:\n%s", want, from, timeout, strings.Join(n.msgs, "\n---\n"))
	return 0
}

func (n *notifySocket) len() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.msgs)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// daemonConfig renders a configuration with one job per name:schedule.
func daemonConfig(dbURL string, port int, jobSpecs ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "database:\n  url: %q\nmetrics:\n  listen: 127.0.0.1:%d\nlog:\n  format: json\n  level: debug\njobs:\n", dbURL, port)
	for _, js := range jobSpecs {
		name, sched, _ := strings.Cut(js, "=")
		fmt.Fprintf(&b, `  - name: %s
    tenant_id: 00000000-0000-0000-0000-00000000000a
    auth:
      method: secret
      client_id: 00000000-0000-0000-0000-0000000000c1
      client_secret: {env: ENTRAPROV_TEST_SECRET}
    schedule: %q
    catch_up: false
    allowed_domains: [contoso.example]
`, name, sched)
	}
	return b.String()
}

// startDaemon runs `worker run` in-process; cancelling the returned context
// is what SIGTERM does (main wires SIGTERM/SIGINT into the root context).
func startDaemon(t *testing.T, eng *fakeEngine, args ...string) (stop context.CancelFunc, done <-chan error, logs *synctest.Buffer) {
	// The environment overrides database.url; the test's database is in the file.
	t.Setenv("DATABASE_URL", "")
	t.Setenv("ENTRAPROV_DATABASE_URL", "")
	t.Helper()
	prev := newJobRunner
	newJobRunner = func(_ context.Context, rt runtimeDeps) (jobs.Runner, error) {
		eng.st = rt.Store
		return eng, nil
	}
	globals = globalFlags{}
	root := newRootCommand()
	logs = &synctest.Buffer{}
	root.SetOut(io.Discard)
	root.SetErr(logs)
	root.SetArgs(args)
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		ch <- root.ExecuteContext(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Error("daemon did not stop")
		}
		newJobRunner = prev
	})
	return cancel, ch, logs
}

// daemonExit waits up to within for the daemon startDaemon started to
// return, and returns its error; past within it fails t with timeout.
func daemonExit(t *testing.T, done <-chan error, within time.Duration, timeout string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(within):
		t.Fatal(timeout)
		return nil
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The service lifecycle under systemd: READY after the checks, STATUS with
// the next run and the last result, watchdog pings, metrics and health,
// SIGHUP with a broken file keeps the jobs, a good file applies the diff,
// and SIGTERM interrupts the run in progress and exits 0.
func TestRunDaemonLifecycle(t *testing.T) {
	dbURL := testdb.NewURL(t)
	t.Setenv("ENTRAPROV_TEST_SECRET", "not-a-real-secret")
	t.Setenv("WATCHDOG_USEC", "200000")
	t.Setenv("WATCHDOG_PID", fmt.Sprint(os.Getpid()))
	notify := listenNotify(t)
	port := freePort(t)
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, cfgPath, daemonConfig(dbURL, port, "tick=@every 1s"))

	eng := &fakeEngine{runs: map[string]int{}}
	stop, done, logs := startDaemon(t, eng, "run", "--config", cfgPath, "--stop-timeout", "10s")

	i := notify.waitFor(t, 0, "READY=1", 15*time.Second)
	// A run's result, not a skip's: a tick during a first run slower than
	// a second is skipped, and STATUS then reads "last tick run N skipped"
	// before any run counts in /metrics. tick is the only job.
	i = notify.waitFor(t, i, " succeeded at ", 15*time.Second)
	notify.waitFor(t, 0, "WATCHDOG=1", 5*time.Second)

	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if code, body := httpGet(t, base+"/healthz"); code != 200 || !strings.Contains(body, `"database":"ok"`) || !strings.Contains(body, `"scheduler":"ok"`) {
		t.Errorf("/healthz: %d %s", code, body)
	}
	if _, body := httpGet(t, base+"/metrics"); !strings.Contains(body, `entraprov_runs_total{job="tick",status="succeeded"}`) ||
		!strings.Contains(body, `entraprov_last_success_timestamp_seconds{job="tick"}`) ||
		!strings.Contains(body, `entraprov_next_run_timestamp_seconds{job="tick"}`) {
		t.Errorf("/metrics lacks the run counters:\n%s", grepLines(body, "entraprov_"))
	}

	// SIGHUP with a broken file: refused, tick keeps running.
	writeFile(t, cfgPath, daemonConfig(dbURL, port, "tick=0 25 * * *"))
	before := eng.count("tick")
	i = notify.len()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	i = notify.waitFor(t, i, "RELOADING=1", 10*time.Second)
	i = notify.waitFor(t, i, "READY=1", 10*time.Second)
	for deadline := time.Now().Add(15 * time.Second); eng.count("tick") <= before+1 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	if eng.count("tick") <= before+1 {
		t.Fatalf("tick stopped running after a refused reload (runs %d -> %d)", before, eng.count("tick"))
	}
	if !strings.Contains(logs.String(), "reload refused") {
		t.Errorf("refused reload not logged:\n%s", logs.String())
	}

	// SIGHUP with a good file: tick removed, long added (the diff is logged).
	writeFile(t, cfgPath, daemonConfig(dbURL, port, "long=@every 1s"))
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	i = notify.waitFor(t, i, "READY=1", 10*time.Second)
	notify.waitFor(t, i, "running long", 15*time.Second)
	if l := logs.String(); !strings.Contains(l, `"msg":"configuration reloaded","added":["long"],"removed":["tick"]`) {
		t.Errorf("job diff not logged:\n%s", grepLines(l, "reloaded"))
	}

	// SIGTERM during the run of long: STOPPING, run interrupted, exit 0.
	st := openStore(t, dbURL)
	runID := waitRunning(t, st, "long") // OnStart precedes the engine's row: wait for the row
	i = notify.len()
	stop()
	if err := daemonExit(t, done, 15*time.Second, "worker run did not stop within 15s of SIGTERM"); exitCodeOf(err) != exitOK {
		t.Fatalf("worker run exited %d (%v), want 0", exitCodeOf(err), err)
	}
	notify.waitFor(t, i-1, "STOPPING=1", 10*time.Second)

	// The run ended on the cancellation itself (the engine's summary), not
	// on --stop-timeout's fallback, which records it interrupted for it.
	run, err := st.GetRun(context.Background(), runID)
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != store.RunInterrupted || run.ErrorSummary != "interrupted: the worker is stopping" {
		t.Fatalf("run of long: %q %q; want interrupted by the stop's cancellation", run.Status, run.ErrorSummary)
	}
	if strings.Contains(logs.String(), "not-a-real-secret") {
		t.Error("the client secret reached the logs")
	}
}

// The daemon refuses to start on a database whose migrations are pending,
// naming the command that fixes it, before it tells systemd it is ready.
func TestRunRefusesPendingMigrations(t *testing.T) {
	dbURL := testdb.NewURL(t)
	st := openStore(t, dbURL)
	// Roll the schema back to "never migrated".
	testdb.Exec(t, st, `DROP SCHEMA entraprov CASCADE`)
	st.Close()
	t.Setenv("ENTRAPROV_TEST_SECRET", "x")
	notify := listenNotify(t)
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, cfgPath, daemonConfig(dbURL, freePort(t), "tick=@every 1s"))

	_, done, _ := startDaemon(t, &fakeEngine{runs: map[string]int{}}, "run", "--config", cfgPath)
	err := daemonExit(t, done, 15*time.Second, "worker run started on an unmigrated database")
	if err == nil || !strings.Contains(err.Error(), "worker migrate up") || exitCodeOf(err) != exitFail {
		t.Fatalf("err = %v (exit %d); want exit 1 telling to run `worker migrate up`", err, exitCodeOf(err))
	}
	if notify.len() != 0 {
		t.Errorf("sd_notify before the checks passed: %v", notify.msgs)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A run that does not wind down within --stop-timeout must not keep the
// service from stopping, nor stay "running" in history: the worker records
// it interrupted itself and exits 0.
func TestRunStopTimeoutRecordsStuckRunInterrupted(t *testing.T) {
	dbURL := testdb.NewURL(t)
	t.Setenv("ENTRAPROV_TEST_SECRET", "x")
	notify := listenNotify(t)
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, cfgPath, daemonConfig(dbURL, freePort(t), "long=@every 1s"))
	eng := &fakeEngine{runs: map[string]int{}, stuck: make(chan struct{})}
	defer close(eng.stuck)
	stop, done, logs := startDaemon(t, eng, "run", "--config", cfgPath, "--stop-timeout", "1s")
	notify.waitFor(t, 0, "running long", 15*time.Second)
	st := openStore(t, dbURL)
	// OnStart comes before the engine's row: wait for the row itself.
	runID := waitRunning(t, st, "long")

	stop()
	// Within 10s, well short of the 45s default: --stop-timeout 1s holds.
	if err := daemonExit(t, done, 10*time.Second, "worker did not give up on the stuck run"); exitCodeOf(err) != exitOK {
		t.Fatalf("exit %d (%v), want 0", exitCodeOf(err), err)
	}
	run, err := st.GetRun(context.Background(), runID)
	if err != nil || run.Status != store.RunInterrupted || !strings.Contains(run.ErrorSummary, "did not wind down") {
		t.Fatalf("stuck run after stop: %+v, %v; want interrupted by the worker\n%s", run, err, logs.String())
	}
}

// waitRunning waits for job's run row in status running and returns its
// id. Not the newest row: ticks that come while the run goes on are
// recorded skipped after it.
func waitRunning(t *testing.T, st *store.Store, job string) int64 {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		runs, err := st.ListRuns(context.Background(), job, 50)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range runs {
			if r.Status == store.RunRunning {
				return r.ID
			}
		}
	}
	t.Fatalf("no run of %s started within 15s", job)
	return 0
}
