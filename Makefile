# entraprov — `make help` lists the targets (from the ## comments below).

GO      ?= go
# The Go release builds are made with: 1.27.3 carries the standard-library
# security fixes released after 1.26.8 (x509 among them). The go command
# fetches it from the module proxy once (~76 MB); a machine's own Go ignores
# go.mod's toolchain line, so it is exported here and in every script.
GOTOOLCHAIN ?= go1.27.3
export GOTOOLCHAIN
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# -s -w: no symbol table or DWARF (smaller binary; panics still print
# file:line stack traces).
LDFLAGS := -s -w -X main.version=$(VERSION)
# Throwaway PostgreSQL for tests unless DATABASE_URL is set (see the script).
WITH_PG := scripts/with-postgres --

.DEFAULT_GOAL := help
.PHONY: help build test lint bench bench-history demo fuzz systest soak conformance clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build bin/worker and bin/graphsim (version from git describe)
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/ ./cmd/...

test: ## Unit + integration tests with -race against a real (throwaway) PostgreSQL
	$(WITH_PG) $(GO) test -race -count=1 ./...

lint: ## gofmt (must list nothing) and go vet
	@out=$$(gofmt -l cmd internal); \
	if [ -n "$$out" ]; then echo "gofmt -l: these files need gofmt -w:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

bench: ## Benchmarks: emulator throughput (2s each), then each scenario once (figures are printed per benchmark)
	$(GO) test -run '^$$' -bench . -benchtime 2s ./internal/graphsim/
	$(WITH_PG) $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m $$($(GO) list ./... | grep -v '/internal/graphsim$$')

bench-history: ## History at 20M operation rows: worker history/user query p50/p99, prune of 10M under a live run, monthly partitions (~5 min, ~15 GB in /tmp)
	ENTRAPROV_HISTORY_ROWS=$(or $(HISTORY_ROWS),20000000) $(WITH_PG) $(GO) test -run '^$$' -bench '^BenchmarkHistoryAtScale$$' -benchtime 1x -timeout 90m -v ./internal/store/

demo: ## Throwaway Postgres + Graph emulator + sample users, then check/plan/sync/history
	scripts/demo.sh

# Each target: package. go test fuzzes one target per invocation.
FUZZ_TARGETS := FuzzLoad:./internal/config FuzzValidate:./internal/sync \
	FuzzParseGraphError:./internal/directory FuzzDecodeBatch:./internal/directory

fuzz: ## Fuzz config loader, row validator, Graph error and batch response parsers, 30s each (FUZZTIME=2m to change)
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "== $${t%%:*}"; \
		$(GO) test -run '^$$' -fuzz "^$${t%%:*}$$" -fuzztime $(or $(FUZZTIME),30s) $${t#*:}; \
	done

systest: ## Real worker + graphsim + Postgres under faults: kill -9, Graph outage, quota cut, secret rotation, PG restart, 5xx, bad input; then the ISV walkthrough (~6 min)
	scripts/systest.sh
	scripts/isv-walkthrough.sh

soak: ## Two worker daemons, two jobs, 32 scheduled cycles of HR churn (re-keys, UPN swaps, moves between jobs, bad rows), faults and kill -9, audits after each (~8 min; SOAK_CYCLES, SOAK_SEED)
	scripts/soak.sh

# The suite's skip is an "ok" to go test, so the target says it out loud.
# Without ENTRAPROV_CONF_TENANT_ID the test skips before any database use,
# so no throwaway PostgreSQL is started for nothing.
conformance: ## Worker scenarios against a real Entra tenant (ENTRAPROV_CONF_* variables, README "Verify against your tenant", ~2-5 min); CONFORMANCE_TARGET=graphsim: against the emulator
	@target=$${CONFORMANCE_TARGET:-tenant}; pg="$(WITH_PG)"; \
	if [ "$$target" = tenant ] && [ -z "$${ENTRAPROV_CONF_TENANT_ID:-}" ]; then pg=; fi; \
	out=$$(mktemp); trap 'rm -f "$$out" "$$out.rc"' EXIT; \
	{ CONFORMANCE_TARGET=$$target $$pg $(GO) test -count=1 -v -timeout 30m -run '^TestConformance$$' ./internal/conformance/ 2>&1; \
	  echo $$? > "$$out.rc"; } | tee "$$out"; rc=$$(cat "$$out.rc"); \
	if grep -q -- '--- SKIP: TestConformance ' "$$out"; then \
		echo; echo "conformance: SKIPPED - nothing was verified against a tenant; set the variables listed above"; \
	elif [ "$$rc" = 0 ]; then echo; echo "conformance: PASSED against $$target"; \
	else echo; echo "conformance: FAILED against $$target (exit $$rc)"; fi; \
	exit $$rc

clean: ## Remove bin/
	rm -rf bin
