package testdb_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/entraprov/entraprov/internal/testdb"
)

// Each New is a separate, migrated database: what one test writes another
// never sees.
func TestNewGivesIsolatedMigratedDatabases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := testdb.New(t), testdb.New(t)
	for _, st := range []interface {
		CheckSchema(context.Context) error
	}{a, b} {
		if err := st.CheckSchema(ctx); err != nil {
			t.Fatalf("CheckSchema: %v", err)
		}
	}
	if _, err := a.Pool().Exec(ctx, `INSERT INTO entraprov.desired_users (external_id) VALUES ('E1')`); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := b.Pool().QueryRow(ctx, `SELECT count(*) FROM entraprov.desired_users`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("second database sees %d rows (%v); want 0", n, err)
	}
}

// The database of a finished test is dropped, so a long test run does not
// fill the server.
func TestDatabaseIsDroppedAfterTheTest(t *testing.T) {
	t.Parallel()
	var name string
	t.Run("inner", func(t *testing.T) {
		st := testdb.New(t)
		if err := st.Pool().QueryRow(context.Background(), `SELECT current_database()`).Scan(&name); err != nil {
			t.Fatal(err)
		}
	})
	probe := testdb.New(t)
	var exists bool
	err := probe.Pool().QueryRow(context.Background(),
		`SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists)
	if err != nil || exists || name == "" {
		t.Fatalf("database %q exists after its test = %v (%v); want dropped", name, exists, err)
	}
}

// scriptPath is scripts/with-postgres from this package's directory.
func scriptPath(t *testing.T) string {
	p, err := filepath.Abs("../../scripts/with-postgres")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// envWithout returns the environment minus the named variables.
func envWithout(names ...string) []string {
	var env []string
next:
	for _, kv := range os.Environ() {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue next
			}
		}
		env = append(env, kv)
	}
	return env
}

var dirLine = regexp.MustCompile(`(?m)^dir=(\S+)$`)

// with-postgres starts a real throwaway server, hands the command its URL,
// propagates the command's exit code and always removes the cluster.
func TestWithPostgresScript(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	t.Parallel()
	script := scriptPath(t)

	t.Run("runs_command_against_fresh_cluster_and_propagates_exit_code", func(t *testing.T) {
		cmd := exec.Command(script, "--", "sh", "-c",
			`echo "url=$DATABASE_URL"; echo "dir=$WITH_POSTGRES_DIR"; psql -XAtc "SELECT current_database()"; exit 7`)
		cmd.Env = envWithout("DATABASE_URL")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 7 {
			t.Fatalf("exit = %v; want 7\n%s", err, out)
		}
		if !regexp.MustCompile(`url=postgres://postgres@127\.0\.0\.1:\d+/entraprov\?sslmode=disable`).Match(out) ||
			!bytes.Contains(out, []byte("\nentraprov\n")) {
			t.Fatalf("output lacks the URL or the query result:\n%s", out)
		}
		m := dirLine.FindSubmatch(out)
		if m == nil {
			t.Fatalf("no dir in output:\n%s", out)
		}
		if _, err := os.Stat(string(m[1])); !os.IsNotExist(err) {
			t.Fatalf("cluster directory %s still there after exit (%v)", m[1], err)
		}
	})

	t.Run("sigterm_stops_command_and_removes_cluster", func(t *testing.T) {
		cmd := exec.Command(script, "--", "sh", "-c", `echo "dir=$WITH_POSTGRES_DIR"; exec sleep 60`)
		cmd.Env = envWithout("DATABASE_URL")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		pipe, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = cmd.Stdout // the pipe's write end: one ordered stream
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer // read by this goroutine only, until done closes
		found := make(chan string, 1)
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(pipe)
			for sc.Scan() {
				out.WriteString(sc.Text() + "\n")
				if m := dirLine.FindStringSubmatch(sc.Text()); m != nil {
					found <- m[1]
				}
			}
		}()
		var dir string
		select {
		case dir = <-found:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("cluster did not start:\n%s", out.String())
		}
		start := time.Now()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-done // EOF: the script and its children closed the pipe
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 143 {
			t.Fatalf("exit after SIGTERM = %v; want 143\n%s", err, out.String())
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Fatalf("took %s to stop after SIGTERM", d)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("cluster directory %s still there after SIGTERM (%v)", dir, err)
		}
	})

	t.Run("uses_DATABASE_URL_when_set", func(t *testing.T) {
		cmd := exec.Command(script, "--", "sh", "-c", `echo "url=$DATABASE_URL dir=${WITH_POSTGRES_DIR:-none}"`)
		cmd.Env = append(envWithout("DATABASE_URL", "WITH_POSTGRES_DIR"), "DATABASE_URL=postgres://elsewhere/db")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "url=postgres://elsewhere/db dir=none") {
			t.Fatalf("with DATABASE_URL set: %v\n%s", err, out)
		}
	})
}
