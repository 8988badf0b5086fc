#!/usr/bin/env bash
# systest.sh — the product under faults, as an operator meets it (make systest).
#
# Real processes only: the worker and graphsim binaries (built once), a
# throwaway PostgreSQL (scripts/with-postgres). Scenarios, in run order:
#   1. kill -9 of `worker sync` at random points of a SYSTEST_USERS-user
#      initial run (SYSTEST_KILLS times), restart each time; then
#      `worker audit` is clean, graphsim holds no duplicate user, every
#      history operation is final and every killed run is "interrupted".
#   2. churn (changes, leavers, hires) while graphsim answers 10% 5xx and
#      drops 1% of answers: the audit sees the drift first, then converges.
#   3. bad input: 200 malformed rows among the good ones (only they fail,
#      each message naming the column), a source view with a wrong type, a
#      database migrated by a newer worker: each a clear message.
#  3b. duplicate ids: a source view whose UNION ALL repeats 50 external_ids
#      (for half of them the twin says account_enabled = false): both rows
#      of each fail naming the count, Graph gets no write for them (none is
#      disabled as a leaver), the other changes go through, `worker check`
#      fails naming the ids.
#   4. two `worker sync` of the same job started together: one runs, the
#      other does nothing and says so.
#   5. the client secret is rotated in the emulator between runs
#      (/_sim/secrets, directory kept): the run fails with the AADSTS
#      advice; once the configuration points at the new secret the next run
#      succeeds and the audit is clean.
#   6. a garbage configuration file: exit 78 naming the bad key.
#   7. throttle storm: churn while the quota is cut to 10% for a minute
#      (/_sim/quota) and 10% of requests are 5xx: converges; 429 share.
#   8. graphsim unreachable for a few seconds mid-run (/_sim/outage,
#      shorter than the worker's retries): the run still succeeds.
#   9. graphsim unreachable mid-run for longer than the worker's retries
#      (SYSTEST_OUTAGE s): the run ends by itself saying why, nothing is
#      recorded succeeded that graphsim did not apply, the next run
#      converges. It starts before scenario 1 and the others run while it
#      waits (each on its own emulator and job).
#  10. PostgreSQL restarted mid-run: the worker ends by itself, the next run
#      converges, no half-written link (last: it would cut scenario 9).
#  11. (runs after 6) vanishing source: a view over a volatile function
#      returns every user to the change budget's read and none to the apply
#      pass: at most the bound is disabled, the run ends blocked, the rest
#      is withheld; with the source back the next run re-enables them.
#  12. lock lost (runs after scenario 4): the session holding a `worker
#      sync`'s job lock is terminated mid-run (pg_terminate_backend) and a
#      second `worker sync` of the job starts at once: graphsim's creation
#      times show no write of the first after the second's first; the first
#      ends interrupted with the cause; no duplicate; audit clean.
# Every scenario is bounded in time; the figures go to stdout and, with
# SYSTEST_REPORT=FILE, to FILE as markdown rows (docs/reliability.md).
#
# Environment: SYSTEST_USERS (10000), SYSTEST_KILLS (10), SYSTEST_SEED
# (random), SYSTEST_TIME_SCALE (20: the emulator's throttle windows,
# Retry-After and latency shrink by this factor), SYSTEST_CHURN_USERS
# (3000: users of scenarios 7-9), SYSTEST_OUTAGE (130: seconds of the long
# outage; the worker retries a step 8 times over 61-123 s), SYSTEST_QUOTA_FOR
# (60s: the quota cut, real time), GRAPHSIM_CONSISTENCY_DELAY (2: seconds a
# new user stays invisible to reads and reference writes, replication lag as
# on Entra ID; see scripts/lib/harness.sh), SYSTEST_ONLY="lock lost" runs the
# setup and that scenario alone, SYSTEST_KEEP=1 keeps the temporary
# directory. Needs jq, psql and curl.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ "${ENTRAPROV_SYSTEST_INNER:-}" != 1 ]]; then
	exec env -u DATABASE_URL ENTRAPROV_SYSTEST_INNER=1 scripts/with-postgres -- "$0" "$@"
fi

users=${SYSTEST_USERS:-10000}
kills=${SYSTEST_KILLS:-10}
seed=${SYSTEST_SEED:-$RANDOM}
scale=${SYSTEST_TIME_SCALE:-20}
# The worker paces to Graph's write budgets shrunk like the emulator's.
export ENTRAPROV_GRAPH_TIME_SCALE=$scale
churn_users=${SYSTEST_CHURN_USERS:-3000}
outage_long=${SYSTEST_OUTAGE:-130}
quota_for=${SYSTEST_QUOTA_FOR:-60s}
RANDOM=$seed
started=$SECONDS

harness_name=systest harness_keep=${SYSTEST_KEEP:-} harness_logs='worker-*.log'
# shellcheck source=scripts/lib/harness.sh
. scripts/lib/harness.sh
harness_init
worker() { "$tmp/bin/worker" --config "$tmp/config.yaml" "$@"; }
note "seed $seed, $users users, $kills kills, emulator time scale $scale"

tenant=7e2d4c36-0c4b-4b7a-9a55-3f3f8a0b5e01
client=0b6c2f7e-8d1a-4c1e-b6a3-2f4e9d0c7a11
domain=contoso.example

# start_sim NAME SECRET [PORT]: graphsim with one tenant and one app using
# SECRET; sets sim_admin, sim_authority, sim_graph. Its CA goes to
# $tmp/NAME-ca.pem (the same path across restarts).
start_sim() {
	local name=$1 secret=$2
	cat >"$tmp/$name-seed.json" <<EOF
{"tenants":[{"id":"$tenant","domains":["$domain"],
  "apps":[{"client_id":"$client","display_name":"entraprov","client_secret":"$secret",
           "roles":["User.ReadWrite.All","GroupMember.ReadWrite.All"]}]}]}
EOF
	start_graphsim "$name" "$tmp/$name-seed.json" "${3:-0}"
}

sim_get() { curl -fsS --cacert "$2" "$1$3"; }

# writes_of ADMIN CA: the writes graphsim has accepted so far.
writes_of() { sim_get "$1" "$2" counters | jq .writes; }

# await_writes PID ADMIN CA TARGET [POLL]: wait, at most 600 polls of POLL
# seconds (0.05), until graphsim has accepted TARGET writes in all or the
# worker PID has ended. True if the worker is still running then: the
# scenarios' way of striking (kill -9, outage, restart) mid-run.
await_writes() {
	local pid=$1 admin=$2 ca=$3 target=$4 poll=${5:-0.05}
	for _ in $(seq 1 600); do
		kill -0 "$pid" 2>/dev/null || return 1
		(($(writes_of "$admin" "$ca") >= target)) && return 0
		sleep "$poll"
	done
	kill -0 "$pid" 2>/dev/null
}

# bg_sync JOB LOG: `worker sync --job JOB` in the background, output to
# $tmp/LOG; the binary itself (not the worker function), so that bg_pid is
# the worker's pid and kill -9 reaches it.
bg_sync() {
	"$tmp/bin/worker" --config "$tmp/config.yaml" sync --job "$1" >"$tmp/$2" 2>&1 &
	bg_pid=$!
	pids+=("$bg_pid")
}

# await_end PID SECONDS MESSAGE: wait up to SECONDS for the worker PID to end
# by itself, else kill -9 it and die with MESSAGE; its exit code goes to rc.
await_end() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$1" 2>/dev/null; then kill -9 "$1"; die "$3"; fi
	rc=0
	wait "$1" || rc=$?
}

# users_table TABLE ID NAME N [DEPARTMENT]: TABLE, shaped like
# entraprov.desired_users, with N enabled clerks in DE: external_id and
# employee_id ID000001…, UPN NAME000001@$domain, display name "Name i"
# (NAME capitalised), and DEPARTMENT when given.
users_table() {
	local dept_col='' dept_val=''
	[[ -n "${5:-}" ]] && dept_col=' department,' dept_val=" '$5',"
	psql_q <<SQL
CREATE TABLE $1 (LIKE entraprov.desired_users INCLUDING DEFAULTS);
INSERT INTO $1 (external_id, user_principal_name, display_name, job_title,$dept_col employee_id, usage_location, account_enabled)
SELECT '$2' || lpad(i::text, 6, '0'), '$3' || lpad(i::text, 6, '0') || '@$domain', '${3^} ' || i, 'Clerk',$dept_val
       '$2' || lpad(i::text, 6, '0'), 'DE', true
  FROM generate_series(1, $4) AS i;
SQL
}

# sim_users ADMIN CA: graphsim's /_sim/users answer for the tenant.
sim_users() { sim_get "$1" "$2" "users?tenant=$tenant"; }

# audit_clean JOB WHAT: once the replication lag has passed (a user created
# just now is not yet visible to the audit), `worker audit --job JOB` must
# be clean; else die with WHAT and the audit's first lines.
audit_clean() {
	settle
	worker audit --job "$1" >"$tmp/audit-$1.txt" 2>&1 || die "$2: $(head -n 5 "$tmp/audit-$1.txt")"
}

# last_run JOB: JOB's latest run as "id status".
last_run() { psql_q -c "SELECT id || ' ' || status FROM entraprov.sync_runs WHERE job = '$1' ORDER BY id DESC LIMIT 1"; }

# job_yaml NAME SOURCE SECRET_FILE AUTHORITY GRAPH CA
job_yaml() {
	cat <<EOF
  - name: $1
    tenant_id: $tenant
    authority_host: $4
    graph_url: $5
    ca_file: $6
    auth:
      method: secret
      client_id: $client
      client_secret:
        file: $3
    schedule: "0 2 * * *"
    source: $2
    allowed_domains: [$domain]
    leaver:
      action: disable
    batch_size: 20
    max_concurrency: 4
EOF
}

# scenario_lock_lost: scenario 12, on its own emulator (latency at real
# time, so the first run is still writing when its lock goes) and job lk.
scenario_lock_lost() {
	local n=1500 lk_admin lk_ca wa wb rca=0 rcb=0 lockpid at_strike ra rb a_row b_row gap overlap
	local scale=1 # start_graphsim reads it: real-time latency for this emulator
	say "Scenario 11: the job lock's session terminated mid-run while a second worker starts"
	start_sim lk "$secret1"
	lk_admin=$sim_admin lk_ca=$tmp/lk-ca.pem
	users_table public.lk_users L lk "$n"
	job_yaml lk public.lk_users "$tmp/hr-secret" "$sim_authority" "$sim_graph" "$lk_ca" |
		sed 's/max_concurrency: 4/max_concurrency: 2/' >>"$tmp/config.yaml"
	bg_sync lk worker-lk-a.log
	wa=$bg_pid
	await_writes "$wa" "$lk_admin" "$lk_ca" $((n / 5)) || die "lock lost: the run ended before its lock could be taken away"
	lockpid=$(psql_q -c "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
	                     AND objid = hashtext('lk')::oid AND objsubid = 2")
	[[ -n "$lockpid" ]] || die "lock lost: no session holds job lk's lock"
	# With a timeout it waits until the session is gone, its lock with it.
	[[ $(psql_q -c "SELECT pg_terminate_backend($lockpid, 10000)") == t ]] || die "lock lost: session $lockpid did not end"
	at_strike=$(writes_of "$lk_admin" "$lk_ca")
	bg_sync lk worker-lk-b.log
	wb=$bg_pid
	wait "$wa" || rca=$?
	wait "$wb" || rcb=$?
	ra=$(psql_q -c "SELECT min(id) FROM entraprov.sync_runs WHERE job = 'lk'")
	rb=$(psql_q -c "SELECT max(id) FROM entraprov.sync_runs WHERE job = 'lk'")
	a_row=$(psql_q -c "SELECT status || ' | ' || left(coalesce(error_summary, ''), 160) FROM entraprov.sync_runs WHERE id = $ra")
	b_row=$(psql_q -c "SELECT status FROM entraprov.sync_runs WHERE id = $rb")
	# Who wrote what, from graphsim's own clock: every user is created once
	# (checked below), by run B if B's history says so, else by run A.
	sim_users "$lk_admin" "$lk_ca" | jq -r '.[] | [.ID, .CreatedAt] | @tsv' >"$tmp/lk-created.tsv"
	IFS='|' read -r gap overlap < <(psql_q <<SQL
CREATE TEMP TABLE created (object_id text, at timestamptz);
\copy created FROM '$tmp/lk-created.tsv'
CREATE TEMP TABLE by_b AS SELECT c.* FROM created c JOIN entraprov.sync_operations o
    ON o.object_id = c.object_id AND o.run_id = $rb AND o.action = 'create' AND o.status = 'succeeded';
SELECT round(extract(epoch FROM (SELECT min(at) FROM by_b) - (SELECT max(at) FROM created WHERE object_id NOT IN (SELECT object_id FROM by_b))) * 1000),
       (SELECT count(*) FROM created WHERE object_id NOT IN (SELECT object_id FROM by_b) AND at >= (SELECT min(at) FROM by_b));
SQL
	)
	local by_a by_b live dups audit_rc=0
	by_b=$(psql_q -c "SELECT count(*) FROM entraprov.sync_operations WHERE run_id = $rb AND action = 'create' AND status = 'succeeded'")
	live=$(sim_users "$lk_admin" "$lk_ca" | live_users)
	by_a=$((live - by_b))
	dups=$(sim_get "$lk_admin" "$lk_ca" counters | dup_created)
	settle # replication lag: a user created just now is not yet visible to the audit
	worker audit --job lk --json >"$tmp/audit-lk.json" 2>&1 || audit_rc=$?
	note "lock session $lockpid terminated after $at_strike writes; run A (exit $rca) $a_row"
	note "run B (exit $rcb) $b_row; creates by A $by_a, by B $by_b; B's first create came ${gap} ms after A's last; A creates after B's first: $overlap"
	note "directory users $live (want $n), UPNs created twice $dups, audit exit $audit_rc"
	[[ "$a_row" == "interrupted | "*"job lock lost"* && $rca -ne 0 ]] || die "lock lost: run A $a_row (exit $rca); want interrupted by the lost job lock"
	[[ "$b_row" == succeeded && $rcb -eq 0 ]] || die "lock lost: run B $b_row (exit $rcb); want succeeded"
	[[ "$overlap" == 0 && -n "$gap" && "$gap" -gt 0 && $by_b -gt 0 ]] || die "lock lost: two writers: $overlap creates of A at or after B's first (gap $gap ms, B created $by_b)"
	[[ "$live" == "$n" && "$dups" == 0 && $audit_rc -eq 0 ]] || die "lock lost: $live users (want $n), $dups created twice, audit exit $audit_rc"
	row "lock lost" "initial sync of $n users (graphsim at real-time latency); after $at_strike writes the session holding the job lock is terminated (\`pg_terminate_backend\`) and a second \`worker sync --job lk\` starts at once" \
		"graphsim's creation time of every user, attributed to run A or B by B's history; run statuses; duplicates; \`worker audit\`" \
		"A stopped (exit $rca), recorded \`${a_row#* | }\`; A created $by_a, B $by_b (exit 0, succeeded); B's first create ${gap} ms after A's last, 0 overlapping; $live users, 0 created twice; audit clean"
}

# --------------------------------------------------------------------------
say "Setup: graphsim and $users desired users for job hr"
secret1=$(new_secret Sys)
printf '%s\n' "$secret1" >"$tmp/hr-secret"
chmod 600 "$tmp/hr-secret"
start_sim hr "$secret1"
hr_admin=$sim_admin hr_ca=$tmp/hr-ca.pem
{
	printf 'database:\n  url: "%s"\nlog:\n  format: text\n  level: info\njobs:\n' "$DATABASE_URL"
	job_yaml hr entraprov.desired_users "$tmp/hr-secret" "$sim_authority" "$sim_graph" "$hr_ca"
} >"$tmp/config.yaml"
worker migrate up >/dev/null
psql_q <<SQL
INSERT INTO entraprov.desired_users
       (external_id, user_principal_name, display_name, given_name, surname, job_title, department,
        company_name, employee_id, usage_location, account_enabled, manager_external_id)
SELECT 'E' || lpad(i::text, 6, '0'), 'user' || lpad(i::text, 6, '0') || '@$domain', 'User ' || i,
       'User', 'N' || i, (ARRAY['Engineer','Analyst','Manager'])[1 + i % 3],
       (ARRAY['R&D','Sales','Ops','Finance'])[1 + i % 4], 'Contoso', 'E' || lpad(i::text, 6, '0'), 'DE', true,
       CASE WHEN i > 100 THEN 'E' || lpad((1 + i % 100)::text, 6, '0') END
  FROM generate_series(1, $users) AS i;
SQL

if [[ "${SYSTEST_ONLY:-}" == "lock lost" ]]; then
	scenario_lock_lost
	say "Scenario 12 (lock lost) passed in $((SECONDS - started)) s"
	printf '%s\n' "${report_rows[@]}"
	exit 0
fi

# --------------------------------------------------------------------------
# Scenario 9 starts first: its outage outlasts the worker's retries (about
# two minutes), and scenarios 1-8 run meanwhile, each on its own emulator
# and job (the PostgreSQL restart waits until it is over).
say "Scenario 9 (starts now, checked after scenario 8): graphsim unreachable for $outage_long s in the middle of a $churn_users-change run"
start_sim out "$secret1"
out_admin=$sim_admin out_ca=$tmp/out-ca.pem
users_table public.out_users O out "$churn_users"
job_yaml out public.out_users "$tmp/hr-secret" "$sim_authority" "$sim_graph" "$out_ca" >>"$tmp/config.yaml"
worker sync --job out >"$tmp/worker-out-0.log" 2>&1 || die "out: the initial sync failed: $(tail -n 5 "$tmp/worker-out-0.log")"
psql_q -c "UPDATE public.out_users SET job_title = 'Clerk after outage'"
out_writes=$(writes_of "$out_admin" "$out_ca")
out_cut=$((churn_users / 10))
bg_sync out worker-out-1.log
out_wp=$bg_pid
await_writes "$out_wp" "$out_admin" "$out_ca" $((out_writes + out_cut)) ||
	die "out: the run ended before graphsim could be taken down"
curl -fsS --cacert "$out_ca" -X POST -d "{\"for\":\"${outage_long}s\"}" "${out_admin}outage" >/dev/null
out_t0=$(date +%s.%N)
note "graphsim 'out' goes down for $outage_long s after $out_cut of the run's writes; the worker keeps running"

# --------------------------------------------------------------------------
say "Scenario 1: kill -9 during a $users-user initial sync"
t1=$SECONDS
killed=0
attempt=0
while ((killed < kills)); do
	attempt=$((attempt + 1))
	((attempt <= kills * 3)) || die "could not catch a run in progress $kills times"
	bg_sync hr "worker-$attempt.log"
	wp=$bg_pid
	# Wait for this process's run to be recorded, then let it work a while.
	for _ in $(seq 1 200); do
		[[ $(psql_q -c "SELECT count(*) FROM entraprov.sync_runs WHERE status = 'running' AND pid = $wp") == 1 ]] && break
		kill -0 "$wp" 2>/dev/null || break
		sleep 0.05
	done
	# The kill point: a random number of further writes accepted by the
	# emulator (so every restart has made progress), wherever the run is
	# then (creates, manager references, history writes).
	step=$((100 + RANDOM % 1900))
	target=$(($(writes_of "$hr_admin" "$hr_ca") + step))
	t0=$(date +%s%N)
	await_writes "$wp" "$hr_admin" "$hr_ca" "$target" || true
	ms=$((($(date +%s%N) - t0) / 1000000))
	if kill -0 "$wp" 2>/dev/null; then
		kill -9 "$wp"
		wait "$wp" 2>/dev/null || true
		killed=$((killed + 1))
		live=$(sim_users "$hr_admin" "$hr_ca" | live_users)
		note "kill $killed: after $step more writes ($ms ms into the run's work); directory holds $live users"
	else
		wait "$wp" || true
		note "run finished before the kill point ($step more writes); not counted"
		break
	fi
done
worker sync --job hr >"$tmp/worker-final.log" 2>&1 || die "the final sync failed: $(tail -n 5 "$tmp/worker-final.log")"
t1=$((SECONDS - t1))
note "final sync: $(grep -v '^\s*$' "$tmp/worker-final.log" | grep -m1 -i 'status\|succeeded' | head -c 200)"

audit_rc=0
settle
worker audit --job hr --json >"$tmp/audit-hr.json" 2>"$tmp/audit-hr.err" || audit_rc=$?
findings=$(jq '.findings | length' "$tmp/audit-hr.json" 2>/dev/null || echo "?")
[[ $audit_rc -eq 0 ]] || die "worker audit exit $audit_rc, $findings finding(s): $(jq -c '.counts' "$tmp/audit-hr.json" 2>/dev/null) $(cat "$tmp/audit-hr.err")"
sim_users "$hr_admin" "$hr_ca" >"$tmp/sim-users.json"
sim_get "$hr_admin" "$hr_ca" "counters" >"$tmp/sim-counters.json"
live=$(live_users "$tmp/sim-users.json")
dup_emp=$(dup_employee_ids "$tmp/sim-users.json")
dup_created=$(dup_created "$tmp/sim-counters.json")
throttled=$(jq '.throttled' "$tmp/sim-counters.json")
steps=$(jq '.batch_steps' "$tmp/sim-counters.json")
nonfinal=$(psql_q -c "SELECT count(*) FROM entraprov.sync_operations o JOIN entraprov.sync_runs r ON r.id = o.run_id
                      WHERE r.job = 'hr' AND (o.status = 'pending' OR (o.status = 'planned' AND r.mode = 'apply'))")
interrupted=$(psql_q -c "SELECT count(*) FROM entraprov.sync_runs WHERE job = 'hr' AND status = 'interrupted'")
running=$(psql_q -c "SELECT count(*) FROM entraprov.sync_runs WHERE job = 'hr' AND status = 'running'")
int_ops=$(psql_q -c "SELECT count(*) FROM entraprov.sync_operations o JOIN entraprov.sync_runs r ON r.id = o.run_id
                     WHERE r.status = 'interrupted' AND o.status = 'interrupted'")
failed_ops=$(psql_q -c "SELECT count(*) FROM entraprov.sync_operations o JOIN entraprov.sync_runs r ON r.id = o.run_id
                        WHERE r.job = 'hr' AND o.status = 'failed'")
note "audit findings $findings; directory users $live (want $users); duplicate employeeIds $dup_emp; UPNs created twice $dup_created"
note "non-final operations $nonfinal; interrupted runs $interrupted (want $killed); running $running; interrupted operations $int_ops; failed operations $failed_ops"
note "graphsim: $steps batch steps, $throttled throttled (429)"
[[ "$live" == "$users" ]] || die "directory holds $live users; want $users"
[[ "$dup_emp" == 0 && "$dup_created" == 0 ]] || die "duplicates: $dup_emp employeeIds, $dup_created UPNs created twice"
[[ "$nonfinal" == 0 ]] || die "$nonfinal operations are not final"
[[ "$interrupted" == "$killed" && "$running" == 0 ]] || die "$interrupted interrupted and $running running runs; want $killed and 0"
share=$(share_429 "$throttled" "$steps")
row "kill -9 during initial sync" "$users users (all but 100 with a manager); worker killed $killed times at random points (each after 100–2,000 more writes accepted by graphsim, seed $seed), restarted each time, then one full run; ${t1} s in all" \
	"\`worker audit\` (live directory vs source); graphsim users, employeeIds and creates per UPN; operations not final; runs interrupted" \
	"audit clean (0 findings); $live users, 0 duplicates; 0 non-final operations; $interrupted/$killed killed runs interrupted ($int_ops operations interrupted); 429 share $share ($throttled of $steps steps)"

# audit_counts audits job hr: its counts as compact JSON in counts, its exit
# code in audit_rc (not in a subshell, so both survive).
audit_counts() {
	audit_rc=0
	settle
	worker audit --job hr --json >"$tmp/audit.json" 2>"$tmp/audit.err" || audit_rc=$?
	counts=$(jq -c '.counts' "$tmp/audit.json" 2>/dev/null || cat "$tmp/audit.err")
}
nonfinal_sql="SELECT count(*) FROM entraprov.sync_operations o JOIN entraprov.sync_runs r ON r.id = o.run_id
              WHERE r.job = 'hr' AND (o.status = 'pending' OR (o.status = 'planned' AND r.mode = 'apply'))"

# --------------------------------------------------------------------------
say "Scenario 2: churn under 10% 5xx and 1% dropped answers"
chg=$((users / 10)) lv=$((users / 50))
psql_q <<SQL
UPDATE entraprov.desired_users SET department = 'Moved ' || department
 WHERE external_id BETWEEN 'E000101' AND 'E' || lpad((100 + $chg)::text, 6, '0');
DELETE FROM entraprov.desired_users WHERE external_id LIKE 'E%' AND external_id > 'E' || lpad(($users - $lv)::text, 6, '0');
INSERT INTO entraprov.desired_users
       (external_id, user_principal_name, display_name, employee_id, usage_location, account_enabled, manager_external_id)
SELECT 'H' || lpad(i::text, 6, '0'), 'hire' || lpad(i::text, 6, '0') || '@$domain', 'Hire ' || i,
       'H' || lpad(i::text, 6, '0'), 'FR', true, 'E' || lpad((1 + i % 100)::text, 6, '0')
  FROM generate_series(1, $lv) AS i;
SQL
audit_counts
before=$counts
[[ $audit_rc -eq 1 ]] || die "audit after churn: exit $audit_rc; want 1 (drift)"
[[ $(jq -c '[.drift, .extra, .missing]' <<<"$before") == "[$chg,$lv,$lv]" ]] || die "audit after churn: $before; want drift $chg, extra $lv, missing $lv"
note "audit before the run: exit 1, $before"
curl -fsS --cacert "$hr_ca" -X POST -d '{"rate_5xx":0.1,"drop_rate":0.01,"commit_before_fault":0.5}' "${hr_admin}faults" >/dev/null
curl -fsS --cacert "$hr_ca" -X POST "${hr_admin}reset" >/dev/null
t4=$SECONDS
runs4=0 statuses=''
while :; do
	runs4=$((runs4 + 1))
	worker sync --job hr >"$tmp/worker-faults-$runs4.log" 2>&1 || true
	statuses+="$(psql_q -c "SELECT status FROM entraprov.sync_runs WHERE job = 'hr' ORDER BY id DESC LIMIT 1") "
	audit_counts
	after=$counts
	[[ $audit_rc -eq 0 ]] && break
	((runs4 < 4)) || die "no convergence after $runs4 runs under faults: $after"
done
t4=$((SECONDS - t4))
statuses=${statuses% }
sim_get "$hr_admin" "$hr_ca" "counters" >"$tmp/sim-counters.json"
sim_users "$hr_admin" "$hr_ca" >"$tmp/sim-users.json"
curl -fsS --cacert "$hr_ca" -X POST -d '{}' "${hr_admin}faults" >/dev/null
faults=$(jq '.faults' "$tmp/sim-counters.json")
dropped=$(jq '.dropped' "$tmp/sim-counters.json")
throttled=$(jq '.throttled' "$tmp/sim-counters.json")
steps=$(jq '.batch_steps' "$tmp/sim-counters.json")
dup_emp=$(dup_employee_ids "$tmp/sim-users.json")
enabled=$(enabled_users "$tmp/sim-users.json")
nonfinal=$(psql_q -c "$nonfinal_sql")
[[ "$dup_emp" == 0 && "$nonfinal" == 0 && "$enabled" == "$users" ]] || die "after faults: $dup_emp duplicate employeeIds, $nonfinal non-final operations, $enabled enabled users (want $users)"
share=$(share_429 "$throttled" "$steps")
note "converged in $runs4 run(s) ($statuses) in $t4 s; $faults injected 5xx, $dropped dropped answers; audit clean; 0 duplicates; 429 share $share"
row "churn under 5xx and dropped answers" "$chg department changes, $lv leavers, $lv hires (\`worker audit\` before: exit 1, $before); graphsim answering 10% of requests 5xx and dropping 1% (half of the faults after committing the write); \`worker sync\` until the audit is clean" \
	"\`worker audit\`; graphsim users, employeeIds; operations not final" \
	"converged in $runs4 run(s) ($statuses) in $t4 s through $faults injected 5xx and $dropped dropped answers; audit clean; $enabled enabled users, 0 duplicate employeeIds; 0 non-final operations; 429 share $share"

# --------------------------------------------------------------------------
say "Scenario 3: bad input — malformed rows, a source of wrong types, a newer schema"
psql_q <<SQL
INSERT INTO entraprov.desired_users (external_id, user_principal_name, display_name, usage_location, account_enabled)
SELECT 'B' || lpad(i::text, 6, '0'),
       CASE i % 4 WHEN 0 THEN 'bad' || i || '@fabrikam.example' WHEN 1 THEN 'no-at-sign' || i
                  WHEN 2 THEN 'bad' || i || '@$domain' ELSE 'tab' || i || '@$domain' END,
       CASE i % 4 WHEN 3 THEN E'Tab\\tName' ELSE 'Bad ' || i END,
       CASE i % 4 WHEN 2 THEN 'XX' END, true
  FROM generate_series(1, 200) AS i;
SQL
rc=0
worker sync --job hr >"$tmp/worker-bad.log" 2>&1 || rc=$?
bad_run=$(last_run hr)
bad_failed=$(psql_q -c "SELECT count(*) FROM entraprov.sync_operations WHERE run_id = ${bad_run%% *} AND status = 'failed' AND external_id LIKE 'B%'")
bad_other=$(psql_q -c "SELECT count(*) FROM entraprov.sync_operations WHERE run_id = ${bad_run%% *} AND status = 'failed' AND external_id NOT LIKE 'B%'")
bad_msgs=$(psql_q -c "SELECT count(*) FROM entraprov.sync_operations WHERE run_id = ${bad_run%% *} AND status = 'failed'
                      AND (message ~ '(user_principal_name|usage_location|display_name)')")
example=$(psql_q -c "SELECT left(message, 140) FROM entraprov.sync_operations WHERE run_id = ${bad_run%% *} AND external_id = 'B000002'")
audit_counts
[[ $rc -eq 0 && "${bad_run#* }" == partial ]] || die "malformed rows: exit $rc, run $bad_run; want exit 0, partial"
[[ "$bad_failed" == 200 && "$bad_other" == 0 && "$bad_msgs" == 200 ]] || die "malformed rows: $bad_failed failed (want 200), $bad_other good rows failed, $bad_msgs messages name the column"
[[ $(jq -c '[.invalid, (. | length)]' <<<"$counts") == '[200,1]' ]] || die "audit with malformed rows: $counts; want invalid 200 and nothing else"
note "200 malformed rows: run $bad_run, exit 0; 200 failed operations naming the column, 0 good rows failed; audit: $counts"
note "e.g. B000002: $example"
psql_q -c "DELETE FROM entraprov.desired_users WHERE external_id LIKE 'B%'"
# A source whose column has the wrong type.
psql_q -c "CREATE VIEW public.typed_wrong AS SELECT external_id, user_principal_name, display_name, mail_nickname, given_name, surname,
             job_title, 42 AS department, office_location, company_name, employee_id, employee_type, usage_location, mobile_phone,
             account_enabled, manager_external_id, groups FROM entraprov.desired_users"
sed 's#source: entraprov.desired_users#source: public.typed_wrong#' "$tmp/config.yaml" >"$tmp/config-typed.yaml"
rc=0
"$tmp/bin/worker" --config "$tmp/config-typed.yaml" sync --job hr >"$tmp/worker-typed.log" 2>&1 || rc=$?
[[ $rc -ne 0 ]] && grep -q 'department' "$tmp/worker-typed.log" || die "wrong-typed source: exit $rc: $(tail -n 3 "$tmp/worker-typed.log")"
typed_msg=$(grep -m1 -o 'department[^"]*' "$tmp/worker-typed.log" | head -c 160)
note "wrong-typed source: exit $rc: $typed_msg"
# A database migrated by a newer worker.
version=$(psql_q -c "SELECT version FROM entraprov.schema_version")
psql_q -c "UPDATE entraprov.schema_version SET version = version + 1"
rc=0
worker sync --job hr >"$tmp/worker-newer.log" 2>&1 || rc=$?
psql_q -c "UPDATE entraprov.schema_version SET version = $version"
[[ $rc -ne 0 ]] && grep -qi 'schema version' "$tmp/worker-newer.log" || die "newer schema: exit $rc: $(tail -n 3 "$tmp/worker-newer.log")"
newer_msg=$(grep -m1 -io 'the database is at schema version[^"]*' "$tmp/worker-newer.log" | head -c 160)
note "newer schema: exit $rc: $newer_msg"
audit_clean hr "audit after the bad-input scenario is not clean"
row "bad input" "200 malformed rows (domain not allowed, no @, usage location XX, a tab in the name) among $users good ones; a source view whose department is an integer; the schema version raised by one" \
	"the run's status and exit code, the failed operations and their messages, \`worker audit\`; the exit code and message of a sync on the wrong source and on the newer schema" \
	"run $bad_run, exit 0: exactly the 200 bad rows failed, each message naming the column (e.g. \`$example\`), 0 good rows failed; audit: invalid 200 and nothing else. Wrong types: exit $rc, \`$typed_msg\`. Newer schema: exit $rc, \`$newer_msg\`. Audit clean afterwards"

# --------------------------------------------------------------------------
say "Scenario 3b: duplicate ids — a source view whose UNION ALL repeats 50 external_ids"
# Half of the second rows also say account_enabled = false: taken alone
# they would make leavers of active users. 10 other users change.
psql_q <<SQL
CREATE TABLE public.dup_extra (LIKE entraprov.desired_users INCLUDING DEFAULTS);
INSERT INTO public.dup_extra
SELECT external_id, 'twin.' || user_principal_name, 'Twin ' || display_name, mail_nickname, given_name, surname,
       job_title, department, office_location, company_name, employee_id, employee_type, usage_location, mobile_phone,
       external_id > 'E000125', manager_external_id, groups
  FROM entraprov.desired_users WHERE external_id BETWEEN 'E000101' AND 'E000150';
CREATE VIEW public.people_dup AS
SELECT * FROM entraprov.desired_users UNION ALL SELECT * FROM public.dup_extra;
UPDATE entraprov.desired_users SET job_title = 'Duplicate-scenario title' WHERE external_id BETWEEN 'E000201' AND 'E000210';
SQL
sed 's#source: entraprov.desired_users#source: public.people_dup#' "$tmp/config.yaml" >"$tmp/config-dup.yaml"
dup_writes0=$(writes_of "$hr_admin" "$hr_ca")
rc=0
"$tmp/bin/worker" --config "$tmp/config-dup.yaml" sync --job hr >"$tmp/worker-dup.log" 2>&1 || rc=$?
dup_writes=$(($(writes_of "$hr_admin" "$hr_ca") - dup_writes0))
dup_run=$(last_run hr)
dup_failed=$(psql_q -c "SELECT count(*) FROM entraprov.sync_operations WHERE run_id = ${dup_run%% *} AND status = 'failed'
                        AND external_id BETWEEN 'E000101' AND 'E000150' AND message ~ '^external_id E0001[0-9]{2} appears 2 times in public.people_dup'")
dup_other=$(psql_q -c "SELECT count(*) FROM entraprov.sync_operations WHERE run_id = ${dup_run%% *}
                       AND (status = 'failed') <> (external_id BETWEEN 'E000101' AND 'E000150')")
dup_sent=$(psql_q -c "SELECT count(*) FROM entraprov.sync_operations WHERE run_id = ${dup_run%% *} AND status = 'succeeded'")
dup_links=$(psql_q -c "SELECT count(*) FROM entraprov.directory_links WHERE job = 'hr' AND state = 'active'
                       AND external_id BETWEEN 'E000101' AND 'E000150'")
dup_example=$(psql_q -c "SELECT left(message, 120) FROM entraprov.sync_operations WHERE run_id = ${dup_run%% *} AND external_id = 'E000101' LIMIT 1")
check_rc=0
"$tmp/bin/worker" --config "$tmp/config-dup.yaml" check --job hr --json >"$tmp/check-dup.json" 2>"$tmp/check-dup.err" || check_rc=$?
dup_check=$(jq -r '.checks[] | select(.name == "source_ids") | .status + ": " + .detail' "$tmp/check-dup.json" 2>/dev/null || echo "?")
note "run $dup_run, exit $rc; $dup_failed failed operations naming the count (want 100), $dup_other others failed or duplicates not failed; $dup_sent succeeded, $dup_writes Graph writes (want 10); $dup_links of 50 duplicated users still active"
note "e.g. E000101: $dup_example"
note "worker check: exit $check_rc, $dup_check"
[[ $rc -eq 0 && "${dup_run#* }" == partial && "$dup_failed" == 100 && "$dup_other" == 0 ]] ||
	die "duplicate ids: exit $rc, run $dup_run, $dup_failed duplicate rows failed (want 100), $dup_other wrong outcomes"
[[ "$dup_writes" == 10 && "$dup_sent" == 10 && "$dup_links" == 50 ]] ||
	die "duplicate ids: $dup_writes writes and $dup_sent successes (want 10 each), $dup_links of 50 links active"
[[ $check_rc -ne 0 && "$dup_check" == "fail: 50 external_id(s) appear more than once in public.people_dup (100 rows): "* ]] ||
	die "duplicate ids: worker check exit $check_rc: $dup_check"
psql_q -c "DROP VIEW public.people_dup; DROP TABLE public.dup_extra"
audit_clean hr "audit after the duplicate-ids scenario is not clean"
row "duplicate ids" "a source view whose \`UNION ALL\` repeats 50 of $users external_ids (a renamed twin row; for 25 of them the twin has \`account_enabled = false\`); 10 other users changed" \
	"the run's status and exit code, the failed operations and their messages, graphsim's writes, the duplicated users' links, \`worker check\`" \
	"run $dup_run, exit $rc: both rows of each of the 50 ids failed (\`$dup_example…\`), 0 other failures; $dup_writes Graph writes (the 10 changes), none for the duplicated ids, their 50 links still active (none treated as a leaver); \`worker check\` exit $check_rc: \`${dup_check:0:110}…\`. Audit clean afterwards"

# --------------------------------------------------------------------------
say "Scenario 4: two workers start the same job at once"
psql_q -c "UPDATE entraprov.desired_users SET office_location = 'Lyon' WHERE external_id <= 'E' || lpad('$((users / 10))', 6, '0')"
runs_before=$(psql_q -c "SELECT count(*) FROM entraprov.sync_runs WHERE job = 'hr'")
bg_sync hr worker-twin-a.log
wa=$bg_pid
bg_sync hr worker-twin-b.log
wb=$bg_pid
rca=0 rcb=0
wait "$wa" || rca=$?
wait "$wb" || rcb=$?
runs_new=$(($(psql_q -c "SELECT count(*) FROM entraprov.sync_runs WHERE job = 'hr'") - runs_before))
skipped=$(cat "$tmp/worker-twin-a.log" "$tmp/worker-twin-b.log" | grep -c 'another worker is running this job' || true)
patched=$(psql_q -c "SELECT count(*) FROM entraprov.sync_operations o JOIN entraprov.sync_runs r ON r.id = o.run_id
                     WHERE r.job = 'hr' AND r.id > (SELECT max(id) - $runs_new FROM entraprov.sync_runs) AND o.action = 'update' AND o.status = 'succeeded'")
audit_counts
note "exit codes $rca and $rcb; $runs_new run(s) recorded; $skipped told another worker holds the job; $patched updates; audit $counts"
[[ "$runs_new" == 1 && "$skipped" == 1 && $((rca + rcb)) == 1 && "$patched" == "$((users / 10))" && $audit_rc == 0 ]] ||
	die "two workers at once: exits $rca/$rcb, $runs_new runs, $skipped skipped, $patched updates (want $((users / 10))), audit $counts"
row "two workers at once" "$((users / 10)) office changes; two \`worker sync --job hr\` started together" \
	"exit codes, runs recorded, updates sent, \`worker audit\`" \
	"one run recorded and applied the $patched updates (exit 0); the other did nothing and said \`another worker is running this job; nothing was done\` (exit 1); audit clean"

scenario_lock_lost

# --------------------------------------------------------------------------
say "Scenario 5: the client secret rotated between runs"
rot_old=$(new_secret Old)
rot_new=$(new_secret New)
printf '%s\n' "$rot_old" >"$tmp/rot-secret-old"
printf '%s\n' "$rot_new" >"$tmp/rot-secret-new"
chmod 600 "$tmp"/rot-secret-*
start_sim rot "$rot_old"
rot_admin=$sim_admin rot_ca=$tmp/rot-ca.pem
psql_q -c "CREATE VIEW public.rot_users AS SELECT * FROM entraprov.desired_users WHERE external_id <= 'E000200'"
job_yaml rot public.rot_users "$tmp/rot-secret-old" "$sim_authority" "$sim_graph" "$rot_ca" >>"$tmp/config.yaml"
worker sync --job rot >"$tmp/worker-rot-1.log" 2>&1 || die "rot: first sync failed: $(tail -n 5 "$tmp/worker-rot-1.log")"
note "old secret: run succeeded"
# Rotation without a restart: the app gets the new secret and loses the
# old one; its directory stays. The values go through files, never on a
# command line.
jq -n --arg c "$client" --rawfile a "$tmp/rot-secret-new" --rawfile r "$tmp/rot-secret-old" \
	'{client_id: $c, add: ($a | rtrimstr("\n")), revoke: ($r | rtrimstr("\n"))}' >"$tmp/rot-rotation.json"
curl -fsS --cacert "$rot_ca" -X POST --data-binary @"$tmp/rot-rotation.json" "${rot_admin}secrets" >"$tmp/rot-rotation-answer.json" ||
	die "rot: /_sim/secrets refused the rotation"
rm -f "$tmp/rot-rotation.json"
[[ $(jq -c '[.added, .revoked, .secrets]' "$tmp/rot-rotation-answer.json") == '[true,true,1]' ]] ||
	die "rot: rotation answered $(cat "$tmp/rot-rotation-answer.json")"
rc=0
worker sync --job rot >"$tmp/worker-rot-2.log" 2>&1 || rc=$?
[[ $rc -eq 1 ]] || die "rot: with the revoked secret, exit $rc; want 1"
grep -q 'AADSTS7000215' "$tmp/worker-rot-2.log" || die "rot: no AADSTS7000215 in: $(tail -n 5 "$tmp/worker-rot-2.log")"
grep -q "rot-secret-old" "$tmp/worker-rot-2.log" || die "rot: the advice does not name the secret's source: $(tail -n 5 "$tmp/worker-rot-2.log")"
for v in "$rot_old" "$rot_new"; do
	grep -qF "$v" "$tmp"/worker-rot-*.log "$tmp/rot.log" "$tmp/rot-rotation-answer.json" && die "rot: a secret value was printed"
done
advice=$(grep -m1 -o 'sign-in failed (AADSTS7000215)[^"]*' "$tmp/worker-rot-2.log" |
	sed -E "s#$tmp#\$TMP#g; s/for app [0-9a-f-]+ in tenant [0-9a-f-]+/for app … in tenant …/")
failed_status=$(psql_q -c "SELECT status FROM entraprov.sync_runs WHERE job = 'rot' ORDER BY id DESC LIMIT 1")
note "revoked secret: exit 1, run $failed_status: $advice"
sed -i "s#$tmp/rot-secret-old#$tmp/rot-secret-new#" "$tmp/config.yaml"
worker sync --job rot >"$tmp/worker-rot-3.log" 2>&1 || die "rot: sync with the new secret failed: $(tail -n 5 "$tmp/worker-rot-3.log")"
rot_creates=$(psql_q -c "SELECT count(*) FROM entraprov.sync_operations WHERE action = 'create' AND run_id =
                         (SELECT max(id) FROM entraprov.sync_runs WHERE job = 'rot')")
rot_live=$(sim_users "$rot_admin" "$rot_ca" | live_users)
audit_clean rot "rot: audit after rotation"
[[ "$rot_creates" == 0 && "$rot_live" == 200 ]] || die "rot: the directory was not kept: $rot_creates creates, $rot_live users"
note "new secret: run succeeded with $rot_creates creates (directory kept: $rot_live users), audit clean; no secret value in any output"
row "client secret rotated" "job of 200 users synced with secret A; then \`POST /_sim/secrets\` added B and revoked A (no restart: the directory is kept); sync; config pointed at B; sync" \
	"exit codes, the run's status and message, that neither secret value appears in the worker's output, graphsim's log or answer, \`worker audit\`" \
	"with A: exit 1, run $failed_status: \`$advice\`; with B: exit 0, $rot_creates creates ($rot_live users kept), audit clean"

# --------------------------------------------------------------------------
say "Scenario 6: a garbage configuration file"
printf 'database:\n  url: "%s"\njobs:\n  - name: hr\n    batch_size: lots\n    sauce: ketchup\n' "$DATABASE_URL" >"$tmp/garbage.yaml"
rc=0
"$tmp/bin/worker" --config "$tmp/garbage.yaml" sync --job hr >"$tmp/garbage.log" 2>&1 || rc=$?
[[ $rc -eq 78 ]] || die "garbage config: exit $rc; want 78: $(cat "$tmp/garbage.log")"
grep -q 'batch_size' "$tmp/garbage.log" || die "garbage config: batch_size not named: $(cat "$tmp/garbage.log")"
msg=$(grep -m1 'batch_size' "$tmp/garbage.log" | sed 's/^ *//' | head -c 200)
note "exit 78: $msg"
row "garbage configuration" "\`batch_size: lots\` and an unknown key \`sauce\` in a job" "exit code and message" "exit 78; the message names batch_size: $msg"

# --------------------------------------------------------------------------
say "Scenario 11: the source vanishes between the change budget's read and the apply pass"
vanish_users=1000
start_sim vanish "$secret1"
vanish_admin=$sim_admin vanish_ca=$tmp/vanish-ca.pem
# The function returns the rows to the two reads before the plan (the one
# aggregate of which profile columns the source fills and whether the job
# manages groups, then the planning read) and none after. It must count
# its calls across transactions and sessions from inside the worker's
# read-only source transaction, where nextval() and UPDATE are refused:
# session advisory locks, one key per call, taken on the worker's pooled
# connections and released when the worker exits, do.
users_table public.vanish_users V vanish "$vanish_users"
psql_q <<SQL
CREATE FUNCTION public.vanishing_users() RETURNS SETOF public.vanish_users LANGUAGE plpgsql VOLATILE AS \$fn\$
DECLARE calls int;
BEGIN
    SELECT count(*) INTO calls FROM pg_locks
     WHERE locktype = 'advisory' AND classid = 4242 AND objid IN (1, 2) AND objsubid = 2
       AND database = (SELECT oid FROM pg_database WHERE datname = current_database());
    IF calls >= 2 THEN
        RETURN; -- after the planning read: the source is empty
    END IF;
    PERFORM pg_advisory_lock(4242, calls + 1);
    RETURN QUERY SELECT * FROM public.vanish_users;
END \$fn\$;
CREATE VIEW public.vanishing AS SELECT * FROM public.vanishing_users();
SQL
job_yaml vanish public.vanish_users "$tmp/hr-secret" "$sim_authority" "$sim_graph" "$vanish_ca" >>"$tmp/config.yaml"
worker sync --job vanish >"$tmp/worker-vanish-1.log" 2>&1 || die "vanish: first sync failed: $(tail -n 5 "$tmp/worker-vanish-1.log")"
# Nights apart in production: the users just created have replicated
# before the next run touches them (a 404 on an object this run did not
# create fails after one short retry).
settle
sed 's#source: public.vanish_users#source: public.vanishing#' "$tmp/config.yaml" >"$tmp/config-vanish.yaml"
disabled_in_sim() { sim_users "$vanish_admin" "$vanish_ca" | jq '[.[] | select(.AccountEnabled | not)] | length'; }
rc=0
"$tmp/bin/worker" --config "$tmp/config-vanish.yaml" sync --job vanish >"$tmp/worker-vanish-2.log" 2>&1 || rc=$?
vanish_disabled=$(disabled_in_sim)
vanish_run=$(last_run vanish)
vanish_withheld=$(psql_q -c "SELECT count(*) FROM entraprov.sync_operations WHERE run_id = ${vanish_run%% *} AND status = 'planned' AND message LIKE 'withheld:%'")
vanish_msg=$(psql_q -c "SELECT left(error_summary, 150) FROM entraprov.sync_runs WHERE id = ${vanish_run%% *}")
note "vanishing source: exit $rc, run $vanish_run, $vanish_disabled of $vanish_users disabled, $vanish_withheld withheld: $vanish_msg"
[[ $rc -eq 1 && "${vanish_run#* }" == blocked && "$vanish_disabled" == $((vanish_users / 10)) && "$vanish_withheld" == $((vanish_users - vanish_users / 10)) ]] ||
	die "vanishing source: exit $rc, run $vanish_run, $vanish_disabled disabled, $vanish_withheld withheld; want exit 1, blocked, $((vanish_users / 10)) disabled (the default bound), the rest withheld"
# The source is back: the next ordinary run wants everyone and enables the
# users the vanishing read disabled.
worker sync --job vanish >"$tmp/worker-vanish-3.log" 2>&1 || die "vanish: the run after the source came back failed: $(tail -n 5 "$tmp/worker-vanish-3.log")"
vanish_after=$(disabled_in_sim)
audit_clean vanish "vanish: audit after recovery"
[[ "$vanish_after" == 0 ]] || die "vanish: $vanish_after users still disabled after the source came back"
note "source back: next run re-enabled them, audit clean"
row "vanishing source" "job of $vanish_users users synced; its source then switched to a view over a VOLATILE plpgsql function returning every row to the reads before the plan and none after (no snapshot covers it); \`worker sync\`; the ordinary source again; sync" \
	"exit code, the run's status and message, users disabled in graphsim, operations withheld, \`worker audit\`" \
	"exit $rc, run ${vanish_run#* }: \`$vanish_msg…\`; $vanish_disabled of $vanish_users disabled (the default bound, 10 %), $vanish_withheld withheld (recorded planned, never sent); next run re-enabled them, audit clean"

# applied RUN STATUS USERS_JSON TITLE: of RUN's update operations with
# STATUS, how many graphsim holds with jobTitle TITLE ("applied/total").
applied() {
	psql_q -c "SELECT external_id FROM entraprov.sync_operations WHERE run_id = $1 AND action = 'update' AND status = '$2'" >"$tmp/ops-$2.txt"
	jq -r --rawfile ids "$tmp/ops-$2.txt" --arg v "$4" '
		([.[] | select(.Deleted | not) | {key: .EmployeeID, value: (.Properties.jobTitle // "")}] | from_entries) as $m
		| ($ids | split("\n") | map(select(. != ""))) as $s
		| "\([$s[] | select($m[.] == $v)] | length)/\($s | length)"' "$3"
}
# run_figures JOB: the latest run of JOB as "id|status|seconds|error".
run_figures() {
	psql_q -c "SELECT id, status, round(extract(epoch FROM finished_at - started_at)), coalesce(left(error_summary, 240), '')
	             FROM entraprov.sync_runs WHERE job = '$1' ORDER BY id DESC LIMIT 1"
}
op_counts() {
	psql_q -c "SELECT coalesce(string_agg(n || ' ' || status, ', ' ORDER BY status DESC), 'none')
	             FROM (SELECT status, count(*) n FROM entraprov.sync_operations WHERE run_id = $1 GROUP BY status) x"
}

# --------------------------------------------------------------------------
say "Scenario 7: throttle storm — quota cut to 10% for $quota_for and 10% 5xx during churn"
start_sim storm "$secret1"
storm_admin=$sim_admin storm_ca=$tmp/storm-ca.pem
s_chg=$((churn_users / 2)) s_lv=$((churn_users / 10))
users_table public.storm_users S storm "$churn_users" Ops
job_yaml storm public.storm_users "$tmp/hr-secret" "$sim_authority" "$sim_graph" "$storm_ca" >>"$tmp/config.yaml"
worker sync --job storm >"$tmp/worker-storm-0.log" 2>&1 || die "storm: the initial sync failed: $(tail -n 5 "$tmp/worker-storm-0.log")"
# Churn: department changes, leavers, hires (each with a manager): about
# 2,400 writes, what the cut quota admits in its minute (300 + 40/s at time
# scale 20) less the 5xx retries, so the run meets the cut nearly all along.
psql_q <<SQL
UPDATE public.storm_users SET department = 'Field Ops' WHERE external_id <= 'S' || lpad('$s_chg', 6, '0');
DELETE FROM public.storm_users WHERE external_id > 'S' || lpad('$((churn_users - s_lv))', 6, '0');
INSERT INTO public.storm_users (external_id, user_principal_name, display_name, job_title, department, employee_id, usage_location, account_enabled, manager_external_id)
SELECT 'T' || lpad(i::text, 6, '0'), 'stormhire' || lpad(i::text, 6, '0') || '@$domain', 'Storm hire ' || i, 'Clerk', 'Ops',
       'T' || lpad(i::text, 6, '0'), 'FR', true, 'S' || lpad((1 + i % 50)::text, 6, '0')
  FROM generate_series(1, $s_lv) AS i;
SQL
curl -fsS --cacert "$storm_ca" -X POST -d '{"rate_5xx":0.1,"commit_before_fault":0.5}' "${storm_admin}faults" >/dev/null
curl -fsS --cacert "$storm_ca" -X POST "${storm_admin}reset" >/dev/null
curl -fsS --cacert "$storm_ca" -X POST -d "{\"factor\":0.1,\"for\":\"$quota_for\"}" "${storm_admin}quota" >/dev/null
t7=$SECONDS
runs7=0 statuses=''
while :; do
	runs7=$((runs7 + 1))
	worker sync --job storm >"$tmp/worker-storm-$runs7.log" 2>&1 || true
	IFS='|' read -r s_run s_status s_secs _ <<<"$(run_figures storm)"
	statuses+="$s_status in $s_secs s, "
	[[ $runs7 == 1 ]] && cut_left=$(sim_get "$storm_admin" "$storm_ca" quota | jq -r .left)
	rc=0
	settle # replication lag: a user created just now is not yet visible to the audit
	worker audit --job storm --json >"$tmp/audit-storm.json" 2>"$tmp/audit-storm.err" || rc=$?
	[[ $rc -eq 0 ]] && break
	((runs7 < 4)) || die "storm: no convergence after $runs7 runs: $(jq -c .counts "$tmp/audit-storm.json" 2>/dev/null) $(head -c 300 "$tmp/audit-storm.err")"
done
t7=$((SECONDS - t7))
statuses=${statuses%, }
sim_get "$storm_admin" "$storm_ca" counters >"$tmp/storm-counters.json"
sim_users "$storm_admin" "$storm_ca" >"$tmp/storm-users.json"
curl -fsS --cacert "$storm_ca" -X POST -d '{}' "${storm_admin}faults" >/dev/null
curl -fsS --cacert "$storm_ca" -X POST -d '{"factor":1}' "${storm_admin}quota" >/dev/null
throttled=$(jq '.throttled' "$tmp/storm-counters.json")
steps=$(jq '.batch_steps' "$tmp/storm-counters.json")
faults=$(jq '.faults' "$tmp/storm-counters.json")
writes=$(jq '.writes' "$tmp/storm-counters.json")
share=$(share_429 "$throttled" "$steps")
dup_emp=$(dup_employee_ids "$tmp/storm-users.json")
enabled=$(enabled_users "$tmp/storm-users.json")
nonfinal=$(psql_q -c "SELECT count(*) FROM entraprov.sync_operations o JOIN entraprov.sync_runs r ON r.id = o.run_id
                      WHERE r.job = 'storm' AND o.status IN ('pending', 'planned')")
note "converged in $runs7 run(s) ($statuses), $t7 s in all; cut still in force after the first run: $cut_left"
note "graphsim: $writes writes, $steps batch steps, $throttled throttled (429 share $share), $faults injected 5xx; $enabled enabled users, $dup_emp duplicate employeeIds, $nonfinal non-final operations"
[[ "$dup_emp" == 0 && "$nonfinal" == 0 && "$enabled" == "$churn_users" ]] ||
	die "storm: $dup_emp duplicate employeeIds, $nonfinal non-final operations, $enabled enabled users (want $churn_users)"
((throttled > 0)) || die "storm: no 429 under a 10% quota; the cut did not bite"
row "throttle storm" "$churn_users users; $s_chg department changes, $s_lv leavers, $s_lv hires with a manager; graphsim's quota cut to 10% for $quota_for real time (\`POST /_sim/quota\`: 300 writes per 7.5 s at time scale $scale) and 10% of requests 5xx (half after committing the write); \`worker sync\` until the audit is clean" \
	"\`worker audit\`; run statuses and durations; graphsim's 429s per batch step; users, employeeIds; operations not final" \
	"converged in $runs7 run(s) ($statuses), $t7 s in all; $writes writes accepted; 429 share $share ($throttled of $steps steps), $faults injected 5xx; audit clean, $enabled enabled users, 0 duplicates, 0 non-final operations"

# --------------------------------------------------------------------------
say "Scenario 8: graphsim unreachable for 10 s mid-run (shorter than the worker's retries)"
psql_q -c "UPDATE public.storm_users SET job_title = 'Clerk after blip'"
w0=$(writes_of "$storm_admin" "$storm_ca")
blip_cut=$((churn_users / 10))
bg_sync storm worker-blip.log
wp=$bg_pid
await_writes "$wp" "$storm_admin" "$storm_ca" $((w0 + blip_cut)) 0.02 ||
	die "blip: the run ended before graphsim could be taken down"
curl -fsS --cacert "$storm_ca" -X POST -d '{"for":"10s"}' "${storm_admin}outage" >/dev/null
await_end "$wp" 180 "blip: the worker did not end within 180 s"
IFS='|' read -r b_run b_status b_secs b_err <<<"$(run_figures storm)"
b_retried=$(psql_q -c "SELECT retried FROM entraprov.sync_runs WHERE id = $b_run")
sim_users "$storm_admin" "$storm_ca" >"$tmp/storm-users.json"
b_applied=$(applied "$b_run" succeeded "$tmp/storm-users.json" 'Clerk after blip')
b_ops=$(op_counts "$b_run")
audit_rc=0
settle # replication lag: a user created just now is not yet visible to the audit
worker audit --job storm >"$tmp/audit-blip.txt" 2>&1 || audit_rc=$?
note "worker exit $rc, run $b_status in $b_secs s ($b_ops; $b_retried step attempts retried); succeeded updates applied in graphsim: $b_applied; audit exit $audit_rc"
[[ $rc -eq 0 && "$b_status" == succeeded && $audit_rc -eq 0 ]] || die "blip: exit $rc, run $b_status ($b_err), audit exit $audit_rc"
[[ "${b_applied%/*}" == "${b_applied#*/}" ]] || die "blip: succeeded updates not applied: $b_applied"
row "graphsim unreachable briefly" "$churn_users job-title changes; after $blip_cut writes of the run, \`POST /_sim/outage {\"for\":\"10s\"}\`: listener and open connections closed (connection refused/reset, token endpoint included), then back with the same state" \
	"exit code, run status and duration, retries, succeeded operations vs graphsim's users, \`worker audit\`" \
	"exit 0, run succeeded in $b_secs s ($b_ops; $b_retried attempts retried); $b_applied succeeded updates found applied in graphsim; audit clean"

# --------------------------------------------------------------------------
say "Scenario 9 (continued): the run that met the $outage_long s outage"
while kill -0 "$out_wp" 2>/dev/null; do
	if (($(date +%s) - ${out_t0%.*} > outage_long + 300)); then
		kill -9 "$out_wp"
		die "out: the worker did not end within $((outage_long + 300)) s of the outage's start"
	fi
	sleep 0.5
done
out_rc=0
wait "$out_wp" || out_rc=$?
IFS='|' read -r o_run o_status o_secs o_err <<<"$(run_figures out)"
o_end=$(psql_q -c "SELECT round(extract(epoch FROM finished_at) - $out_t0) FROM entraprov.sync_runs WHERE id = $o_run")
o_said=$(grep -m1 -E '^ *error ' "$tmp/worker-out-1.log" | sed 's/^ *error *//' | head -c 240 || true)
for _ in $(seq 1 600); do sim_get "$out_admin" "$out_ca" counters >/dev/null 2>&1 && break; sleep 0.5; done
sim_users "$out_admin" "$out_ca" >"$tmp/out-users.json" || die "out: graphsim did not come back"
o_ops=$(op_counts "$o_run")
o_nonfinal=$(psql_q -c "SELECT count(*) FROM entraprov.sync_operations WHERE run_id = $o_run AND status IN ('pending', 'planned')")
o_ok=$(applied "$o_run" succeeded "$tmp/out-users.json" 'Clerk after outage')
o_failed=$(applied "$o_run" failed "$tmp/out-users.json" 'Clerk after outage')
o_lost=$((${o_ok#*/} - ${o_ok%/*}))
note "worker exit $out_rc; run $o_run $o_status, ended $o_end s after the outage began (${o_secs} s run): $o_err"
note "operations: $o_ops; non-final $o_nonfinal; succeeded updates applied in graphsim $o_ok (lost $o_lost); failed updates applied anyway (answer lost) $o_failed"
[[ "$o_nonfinal" == 0 ]] || die "out: $o_nonfinal operations not final"
[[ "$o_lost" == 0 ]] || die "out: $o_lost operations recorded succeeded that graphsim did not apply"
case $o_status in
succeeded) [[ $out_rc -eq 0 ]] || die "out: run succeeded but exit $out_rc" ;;
partial | failed)
	grep -Eqi 'connection refused|connection reset|EOF|dial tcp' <<<"$o_err" || die "out: run $o_status without naming the cause: $o_err"
	[[ $o_status == partial || $out_rc -ne 0 ]] || die "out: run failed but exit 0"
	;;
*) die "out: run ended $o_status: $o_err" ;;
esac
worker sync --job out >"$tmp/worker-out-2.log" 2>&1 || die "out: the next run failed: $(tail -n 5 "$tmp/worker-out-2.log")"
IFS='|' read -r o2_run o2_status o2_secs _ <<<"$(run_figures out)"
o2_updates=$(psql_q -c "SELECT count(*) FROM entraprov.sync_operations WHERE run_id = $o2_run AND action = 'update' AND status = 'succeeded'")
audit_clean out "out: audit after the next run"
note "next run $o2_status in $o2_secs s with $o2_updates updates; audit clean"
o_quote=$(sed -E 's#127\.0\.0\.1:[0-9]+#127.0.0.1:PORT#g' <<<"${o_err:-$o_said}")
row "graphsim unreachable beyond the retries" "$churn_users job-title changes; after $out_cut writes of the run, \`POST /_sim/outage {\"for\":\"${outage_long}s\"}\` (longer than a step's 8 attempts, 61–123 s of backoff); the other scenarios ran meanwhile; then one more \`worker sync\`" \
	"the run ends by itself with a clear status and message; exit code; every operation final; succeeded updates vs graphsim's users (recorded done but not done = lost); the next run and \`worker audit\`" \
	"run $o_status, exit $out_rc, ended $o_end s after the outage began: \`$o_quote\`; operations $o_ops, 0 non-final; $o_ok succeeded updates found applied (lost = $o_lost); $o_failed failed updates had been applied anyway (answer lost in the outage); next run $o2_status ($o2_updates updates), audit clean"

# --------------------------------------------------------------------------
say "Scenario 10: PostgreSQL restarted mid-run"
pg_ctl_bin=$(command -v pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n 1)
pg_as() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
retitled=$users cut=$((users / 10))
psql_q -c "UPDATE entraprov.desired_users SET job_title = 'Senior ' || coalesce(job_title, 'Staff') WHERE external_id <= 'E' || lpad('$retitled', 6, '0')"
bg_sync hr worker-pg-1.log
wp=$bg_pid
target=$(($(writes_of "$hr_admin" "$hr_ca") + cut))
await_writes "$wp" "$hr_admin" "$hr_ca" "$target" || die "the run ended before PostgreSQL could be restarted"
pg_as "$pg_ctl_bin" -D "$WITH_POSTGRES_DIR/data" -m fast -w -t 60 restart >/dev/null
note "PostgreSQL restarted after $cut writes of the run"
await_end "$wp" 120 "the worker did not end within 120 s of the restart"
first=$(psql_q -c "SELECT status || ': ' || left(replace(coalesce(error_summary, ''), E'\n', ' '), 140) FROM entraprov.sync_runs WHERE job = 'hr' ORDER BY id DESC LIMIT 1")
said=$(grep -m1 '^worker:' "$tmp/worker-pg-1.log" | head -c 200 || true)
note "the run during the restart: exit $rc, recorded as $first; the worker said: $said"
worker sync --job hr >"$tmp/worker-pg-2.log" 2>&1 || die "the next run failed: $(tail -n 5 "$tmp/worker-pg-2.log")"
audit_counts
after=$counts
[[ $audit_rc -eq 0 ]] || die "audit after the PostgreSQL restart: $after"
halfway=$(psql_q -c "SELECT count(*) FROM entraprov.directory_links WHERE job = 'hr' AND (state = 'creating' OR (state <> 'deleted' AND object_id IS NULL))")
running=$(psql_q -c "SELECT count(*) FROM entraprov.sync_runs WHERE status = 'running'")
nonfinal=$(psql_q -c "$nonfinal_sql")
[[ "$halfway" == 0 && "$running" == 0 && "$nonfinal" == 0 ]] || die "after the restart: $halfway half-written links, $running running runs, $nonfinal non-final operations"
runs_after=$(psql_q -c "SELECT status FROM entraprov.sync_runs WHERE job = 'hr' ORDER BY id DESC LIMIT 2" | tac | tr '\n' ' ')
note "next run succeeded; audit clean; 0 half-written links; runs: $runs_after"
row "PostgreSQL restarted mid-run" "$retitled job-title changes; \`pg_ctl restart -m fast\` after $cut writes of the run; then one more \`worker sync\`" \
	"the worker ends by itself (≤120 s) with a clear status; \`worker audit\`; links left \`creating\` or without object; runs left running; operations not final" \
	"worker exit $rc: \`${said#worker: }\`; run row ${first%%:*} (runs in order: ${runs_after% }); next run succeeded; audit clean; 0 half-written links, 0 running runs, 0 non-final operations"

# --------------------------------------------------------------------------
say "All scenarios passed in $((SECONDS - started)) s"
if [[ -n "${SYSTEST_REPORT:-}" ]]; then
	printf '%s\n' "${report_rows[@]}" >"$SYSTEST_REPORT"
	note "rows written to $SYSTEST_REPORT"
fi
printf '%s\n' "${report_rows[@]}"
