# harness.sh — what scripts/systest.sh and scripts/soak.sh share: messages,
# a temporary directory whose children are stopped on exit, the binaries
# built once, and graphsim started from a seed file. Sourced, not run.
#
# The sourcing script sets, before calling harness_init:
#   harness_name   systest | soak (messages, temp directory name)
#   harness_keep   1 keeps the temporary directory (it is kept on failure)
#   harness_logs   glob, relative to $tmp, of the logs shown on failure
#   seed           printed on failure, to repeat the run
# and gets: $tmp, pids (append the pids of children to stop), say, note,
# die, psql_q, row/report_rows, $tmp/bin/{worker,graphsim}, start_graphsim,
# settle, new_secret, and the figures of graphsim's answers (live_users,
# enabled_users, dup_employee_ids, dup_created, share_429).
#
# Replication lag is on by default: every graphsim started here hides a new
# user from reads, lists and reference writes (manager, group member) for
# GRAPHSIM_CONSISTENCY_DELAY seconds (default 2; 0 turns it off), as Entra ID
# does while a write replicates ("a newly created object [may] return a
# 'Not Found'", Microsoft identity blog "Designing for Eventual Consistency
# for Microsoft Entra", 2026-03-24; Microsoft gives no figure beyond
# "seconds", so 2 s is the emulator's choice). It is real time, not divided
# by the time scale.
consistency_delay=${GRAPHSIM_CONSISTENCY_DELAY:-2}

export GOTOOLCHAIN="${GOTOOLCHAIN:-go1.27.3}" # see the Makefile: the Go release builds are made with

say() { printf '\n== %s\n' "$*"; }
note() { printf '   %s\n' "$*"; }
die() { printf '%s: FAIL: %s\n' "$harness_name" "$*" >&2; exit 1; }
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }

# row WHAT DONE CHECKED RESULT: one markdown row of docs/reliability.md.
report_rows=()
row() { report_rows+=("| $1 | $2 | $3 | $4 |"); }

harness_cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	for p in "${pids[@]}"; do
		if kill -0 "$p" 2>/dev/null; then kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
	done
	if [[ $rc -ne 0 ]]; then
		printf '\n%s failed (exit %d, seed %s). Last log lines:\n' "$harness_name" "$rc" "$seed" >&2
		# shellcheck disable=SC2086 # the glob is meant to expand
		tail -n 10 "$tmp"/$harness_logs 2>/dev/null >&2 || true
	fi
	if [[ "${harness_keep:-}" == 1 || $rc -ne 0 ]]; then printf 'kept %s\n' "$tmp" >&2; else rm -rf "$tmp"; fi
	exit "$rc"
}

# harness_init: check the tools, make $tmp, arm the cleanup, build the
# binaries once into $tmp/bin.
harness_init() {
	local tool
	for tool in jq psql curl; do command -v "$tool" >/dev/null || die "$tool is required"; done
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/entraprov-$harness_name.XXXXXX")
	pids=()
	trap harness_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	say "Build the worker and graphsim binaries once"
	go build -o "$tmp/bin/" ./cmd/worker ./cmd/graphsim
}

# start_graphsim NAME SEEDFILE [PORT]: graphsim on loopback (PORT, or any
# free port) at time scale $scale, its CA in $tmp/NAME-ca.pem (the same path
# across restarts), its JSON line in $tmp/NAME.json. Sets sim_pid,
# sim_admin, sim_authority, sim_graph.
start_graphsim() {
	local name=$1 seedfile=$2 listen=127.0.0.1:${3:-0}
	: >"$tmp/$name.json"
	"$tmp/bin/graphsim" --seed "$seedfile" --listen "$listen" --time-scale "$scale" \
		--consistency-delay "${consistency_delay}s" --ca-file "$tmp/$name-ca.pem" --random-seed "$seed" >"$tmp/$name.json" 2>>"$tmp/$name.log" &
	sim_pid=$!
	pids+=("$sim_pid")
	for _ in $(seq 1 100); do
		[[ -s "$tmp/$name.json" ]] && break
		kill -0 "$sim_pid" 2>/dev/null || die "graphsim exited: $(tail -n 5 "$tmp/$name.log")"
		sleep 0.1
	done
	[[ -s "$tmp/$name.json" ]] || die "graphsim printed nothing in 10s"
	sim_admin=$(jq -r .admin_url "$tmp/$name.json")
	sim_authority=$(jq -r .authority_host "$tmp/$name.json")
	sim_graph=$(jq -r .graph_url "$tmp/$name.json")
}

# settle: wait out the replication lag before a read that must see every
# write so far (an audit): a user created a moment ago is not listed yet,
# on graphsim as on Entra ID.
settle() { sleep "$consistency_delay"; }

# new_secret PREFIX: a fresh client secret (PREFIX~ and 36 hex digits).
new_secret() { printf '%s~%s' "$1" "$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"; }

# Figures of graphsim's answers, read from the file named or from stdin:
# of /_sim/users, live_users the users not deleted, enabled_users those
# enabled, dup_employee_ids the employeeIds two live users or more hold; of
# /_sim/counters, dup_created the UPNs created more than once.
live_users() { jq '[.[] | select(.Deleted | not)] | length' "$@"; }
enabled_users() { jq '[.[] | select((.Deleted | not) and .AccountEnabled)] | length' "$@"; }
dup_employee_ids() { jq '[.[] | select(.Deleted | not) | .EmployeeID] | group_by(.) | map(select(length > 1)) | length' "$@"; }
dup_created() { jq '[.created // {} | to_entries[] | select(.value > 1)] | length' "$@"; }

# share_429 THROTTLED STEPS: the share of batch steps answered 429.
share_429() { awk -v t="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.1f%%", 100 * t / s; else print "0%" }'; }
