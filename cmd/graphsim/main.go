// Command graphsim serves the Microsoft identity platform token endpoint
// and Microsoft Graph emulator (internal/graphsim) over TLS on loopback,
// for demos, manual tests and benchmarks of entraprov. It prints one JSON
// line describing where it listens and what it seeded, then runs until
// SIGINT/SIGTERM.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/entraprov/entraprov/internal/graphsim"
)

type line struct {
	AuthorityHost string                  `json:"authority_host"`
	GraphURL      string                  `json:"graph_url"`
	CAFile        string                  `json:"ca_file"`
	AdminURL      string                  `json:"admin_url"`
	Tenants       []graphsim.SeededTenant `json:"tenants"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "graphsim:", err)
		if errors.Is(err, flag.ErrHelp) { // --help: the usage was asked for
			os.Exit(0)
		}
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ error }

// run serves until ctx ends. It writes the JSON line to stdout and logs to
// stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("graphsim", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve TLS on (loopback only unless --allow-remote)")
	allowRemote := fs.Bool("allow-remote", false, "allow a non-loopback --listen address")
	seedFile := fs.String("seed", "", "seed file (JSON, see internal/graphsim/README.md); default: one tenant, one app")
	timeScale := fs.Float64("time-scale", 1, "shrink throttle windows, Retry-After and latency by this factor")
	latency := fs.String("latency", "real", `latency model: real (40ms reads, 120ms writes, ±50%), none, or "read=40ms,write=120ms,batch=20ms,token=80ms,jitter=0.5"`)
	faults := fs.String("faults", "none", `fault injection: none or "5xx=0.01,drop=0.001,commit=0.5"`)
	tokenLifetime := fs.Duration("token-lifetime", time.Hour, "access token lifetime")
	throttling := fs.Bool("throttling", true, "enforce the identity service throttling limits")
	tenantSize := fs.String("tenant-size", "", `tenant size class for the resource-unit quota: S, M, L ("" = by user count)`)
	consistency := fs.Duration("consistency-delay", 0, "hide new users from reads and reference writes for this long")
	shuffle := fs.Bool("shuffle-batch", false, "answer $batch steps in random order")
	randSeed := fs.Int64("random-seed", 1, "seed of faults, jitter and shuffling")
	caFile := fs.String("ca-file", "", "write the CA certificate here (default: a temp file)")
	certDir := fs.String("cert-dir", "", "directory for seeded app certificates and keys, created when missing (default: a temp dir)")
	writeConfig := fs.String("write-config", "", "write a worker config (YAML) for the first tenant and app here, its client secret in a 0600 file beside it, and the CA next to it unless --ca-file")
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err // main exits 0: help was asked for, not a mistake
		}
		return usageError{err}
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		return usageError{fmt.Errorf("--listen %q: %w", *listen, err)}
	}
	if ip := net.ParseIP(host); !*allowRemote && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return usageError{fmt.Errorf("--listen %q is not a loopback address; pass --allow-remote to serve beyond this machine", *listen)}
	}
	lat, err := graphsim.ParseLatency(*latency)
	if err != nil {
		return usageError{err}
	}
	flt, err := graphsim.ParseFaults(*faults)
	if err != nil {
		return usageError{err}
	}
	switch *tenantSize {
	case "", "S", "M", "L":
	default:
		return usageError{fmt.Errorf("--tenant-size %q: want S, M, L or empty", *tenantSize)}
	}
	sim := graphsim.New(graphsim.Options{
		TimeScale: *timeScale, Throttling: *throttling, TenantSize: *tenantSize, TokenLifetime: *tokenLifetime,
		Latency: lat, Faults: flt, ConsistencyDelay: *consistency, ShuffleBatch: *shuffle, Seed: *randSeed,
		Logger: log, // runtime knobs (quota, secrets, outage) are logged; never a secret value
	})

	dir := *certDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "graphsim-certs-*"); err != nil {
			return fmt.Errorf("cert dir: %w", err)
		}
		defer os.RemoveAll(dir)
	} else {
		if err := os.MkdirAll(dir, 0o700); err != nil { // it holds private keys
			return usageError{fmt.Errorf("--cert-dir: %w", err)}
		}
		// Absolute, so the paths in the JSON line and a written config
		// work from any directory.
		if dir, err = filepath.Abs(dir); err != nil {
			return fmt.Errorf("--cert-dir: %w", err)
		}
	}
	var seeded graphsim.SeedResult
	if *seedFile != "" {
		f, err := os.Open(*seedFile)
		if err != nil {
			return usageError{fmt.Errorf("--seed: %w", err)}
		}
		sf, err := graphsim.LoadSeedFile(f)
		f.Close()
		if err != nil {
			return usageError{err}
		}
		if seeded, err = sim.ApplySeed(sf, dir); err != nil {
			return err
		}
	} else if _, seeded, err = sim.SeedDefaultFiles(dir); err != nil {
		return err
	}

	srv, err := graphsim.StartTLS(sim, *listen)
	if err != nil {
		return err
	}
	ca := srv.CAFile
	if *caFile == "" && *writeConfig != "" {
		// The temp CA file goes with this process; the config's ca_file
		// should name a file the operator can see beside the config.
		*caFile = filepath.Join(filepath.Dir(*writeConfig), "graphsim-ca.pem")
		if err := os.MkdirAll(filepath.Dir(*caFile), 0o755); err != nil {
			srv.Close()
			return fmt.Errorf("--write-config: %w", err)
		}
	}
	if *caFile != "" {
		if err := os.WriteFile(*caFile, srv.CAPEM, 0o644); err != nil {
			srv.Close()
			return fmt.Errorf("--ca-file: %w", err)
		}
		ca = *caFile
		if abs, err := filepath.Abs(ca); err == nil {
			ca = abs
		}
	}
	l := line{AuthorityHost: srv.AuthorityHost, GraphURL: srv.GraphURL, CAFile: ca, AdminURL: srv.URL + "/_sim/", Tenants: seeded.Tenants}
	if *writeConfig != "" {
		if err := writeWorkerConfig(*writeConfig, l); err != nil {
			srv.Close()
			return err
		}
		log.Info("wrote a worker config", "path", *writeConfig)
	}
	out, _ := json.Marshal(l)
	fmt.Fprintln(stdout, string(out))
	log.Info("graphsim serving", "addr", srv.Addr(), "time_scale", *timeScale, "throttling", *throttling)

	<-ctx.Done()
	log.Info("graphsim stopping")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
