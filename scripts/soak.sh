#!/usr/bin/env bash
# soak.sh — scheduled cycles with churn and faults, two daemons (make soak).
#
# Real processes only: the worker and graphsim binaries (built once), a
# throwaway PostgreSQL (scripts/with-postgres). Two `worker run` daemons
# share one configuration and one database for the whole soak; one job runs
# on a seconds-scale schedule. Each cycle:
#   1. random churn in entraprov.desired_users (hires, leavers as a removed
#      row or account_enabled = false, rehires, attribute changes, manager
#      moves, group changes) and random faults in graphsim (5xx, dropped
#      answers, half of them after the write took effect; sometimes none);
#   2. wait for a run of the job scheduled after the churn to finish;
#   3. faults off, then `worker audit --job soak --json`: clean, or every
#      finding is about a user with an operation that failed in that run.
# At the end: no scheduled occurrence has two runs, both daemons ran some,
# graphsim holds no duplicate user (employeeId, UPN, UPN created twice),
# every operation is final, both daemons stop on SIGTERM with exit 0.
# Every wait is bounded; the figures go to stdout and, with SOAK_REPORT=FILE,
# to FILE as a markdown row (docs/reliability.md).
#
# Environment: SOAK_CYCLES (48), SOAK_USERS (2000), SOAK_SEED (random),
# SOAK_EVERY (3s: the job's schedule is "@every $SOAK_EVERY"), SOAK_JITTER
# (1s: the job's start jitter),
# SOAK_TIME_SCALE (20: the emulator's throttle windows, Retry-After and
# latency shrink by this factor), GRAPHSIM_CONSISTENCY_DELAY (2: seconds a
# new user stays invisible, see scripts/lib/harness.sh), SOAK_KEEP=1 keeps
# the temporary directory.
# Needs jq, psql and curl.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ "${ENTRAPROV_SOAK_INNER:-}" != 1 ]]; then
	exec env -u DATABASE_URL ENTRAPROV_SOAK_INNER=1 scripts/with-postgres -- "$0" "$@"
fi

cycles=${SOAK_CYCLES:-48}
users=${SOAK_USERS:-2000}
seed=${SOAK_SEED:-$RANDOM}
every=${SOAK_EVERY:-3s}
jitter=${SOAK_JITTER:-1s}
scale=${SOAK_TIME_SCALE:-20}
# The worker paces to Graph's write budgets shrunk like the emulator's.
export ENTRAPROV_GRAPH_TIME_SCALE=$scale
RANDOM=$seed
started=$SECONDS

harness_name=soak harness_keep=${SOAK_KEEP:-} harness_logs='daemon-*.log'
# shellcheck source=scripts/lib/harness.sh
. scripts/lib/harness.sh
[[ "$cycles" =~ ^[0-9]+$ && "$users" =~ ^[0-9]+$ && "$users" -ge 300 ]] || die "SOAK_CYCLES must be a number and SOAK_USERS a number >= 300"
harness_init
worker() { "$tmp/bin/worker" --config "$tmp/config.yaml" "$@"; }
note "seed $seed (SOAK_SEED=$seed to repeat), $cycles cycles, $users users, schedule @every $every, emulator time scale $scale"

tenant=7e2d4c36-0c4b-4b7a-9a55-3f3f8a0b5e01
client=0b6c2f7e-8d1a-4c1e-b6a3-2f4e9d0c7a11
domain=contoso.example
group1=5a0f3c1e-1111-4b7a-9a55-3f3f8a0b5e01
group2=5a0f3c1e-2222-4b7a-9a55-3f3f8a0b5e01

say "Start graphsim (one tenant, two groups) and migrate the database"
secret=$(new_secret Soak)
printf '%s\n' "$secret" >"$tmp/secret"
chmod 600 "$tmp/secret"
cat >"$tmp/sim-seed.json" <<EOF
{"tenants":[{"id":"$tenant","domains":["$domain"],
  "groups":[{"id":"$group1","display_name":"Engineering"},{"id":"$group2","display_name":"Everyone in Lyon"}],
  "apps":[{"client_id":"$client","display_name":"entraprov","client_secret":"$secret",
           "roles":["User.ReadWrite.All","GroupMember.ReadWrite.All"]}]}]}
EOF
start_graphsim sim "$tmp/sim-seed.json"
sim_ca=$tmp/sim-ca.pem
sim() { curl -fsS --max-time 30 --cacert "$sim_ca" "$@"; }
set_faults() { sim -X POST -d "$1" "${sim_admin}faults" >/dev/null || die "POST ${sim_admin}faults $1 failed"; }

# Metrics on an ephemeral loopback port: each daemon gets its own.
cat >"$tmp/config.yaml" <<EOF
database:
  url: "$DATABASE_URL"
metrics:
  listen: 127.0.0.1:0
log:
  format: json
  level: info
jobs:
  - name: soak
    tenant_id: $tenant
    authority_host: $(jq -r .authority_host "$tmp/sim.json")
    graph_url: $(jq -r .graph_url "$tmp/sim.json")
    ca_file: $sim_ca
    auth:
      method: secret
      client_id: $client
      client_secret:
        file: $tmp/secret
    schedule: "@every $every"
    # Each daemon waits a random part of a second before each occurrence,
    # so either may win it, and the loser meets the winner's job lock or,
    # when the winner already finished, the unique (job, scheduled_for).
    jitter: $jitter
    catch_up: true
    source: entraprov.desired_users
    allowed_domains: [$domain]
    leaver:
      action: disable
    batch_size: 20
    max_concurrency: 4
EOF
worker config validate >"$tmp/validate.log" 2>&1 || die "config validate: $(cat "$tmp/validate.log")"
worker migrate up >/dev/null

# The population: 20 heads without a manager, 180 middle managers under
# them, everyone else under a middle manager; some in one group or both.
# soak_leavers keeps the rows of leavers removed from the source (rehires
# come back from there).
psql_q <<SQL
INSERT INTO entraprov.desired_users
       (external_id, user_principal_name, display_name, given_name, surname, job_title, department,
        company_name, employee_id, usage_location, account_enabled, manager_external_id, groups)
SELECT 'E' || lpad(i::text, 6, '0'), 'user' || lpad(i::text, 6, '0') || '@$domain', 'User ' || i,
       'User', 'N' || i, (ARRAY['Engineer','Analyst','Manager'])[1 + i % 3],
       (ARRAY['R&D','Sales','Ops','Finance'])[1 + i % 4], 'Contoso', 'E' || lpad(i::text, 6, '0'), 'DE', true,
       CASE WHEN i > 200 THEN 'E' || lpad((21 + i % 180)::text, 6, '0')
            WHEN i > 20 THEN 'E' || lpad((1 + i % 20)::text, 6, '0') END,
       CASE WHEN i % 15 = 0 THEN ARRAY['$group1','$group2']
            WHEN i % 5 = 0 THEN ARRAY['$group1']
            WHEN i % 7 = 0 THEN ARRAY['$group2'] ELSE '{}' END
  FROM generate_series(1, $users) AS i;
CREATE TABLE public.soak_leavers (LIKE entraprov.desired_users);
SQL
in_groups=$(psql_q -c "SELECT count(*) FROM entraprov.desired_users WHERE groups <> '{}'")
note "$users desired users (all but 20 with a manager, $in_groups in a group)"

# --------------------------------------------------------------------------
say "Start two worker daemons on the same configuration"
daemon_pids=()
daemon_metrics=()
for n in 1 2; do
	"$tmp/bin/worker" --config "$tmp/config.yaml" run --stop-timeout 30s >"$tmp/daemon-$n.log" 2>&1 &
	p=$!
	pids+=("$p")
	daemon_pids+=("$p")
	ready=
	for _ in $(seq 1 300); do
		kill -0 "$p" 2>/dev/null || die "daemon $n exited at start: $(tail -n 5 "$tmp/daemon-$n.log")"
		if grep -q '"msg":"worker ready"' "$tmp/daemon-$n.log"; then ready=1; break; fi
		sleep 0.1
	done
	[[ -n "$ready" ]] || die "daemon $n not ready within 30s: $(tail -n 5 "$tmp/daemon-$n.log")"
	addr=$(jq -r 'select(.msg == "serving /metrics and /healthz") | .addr' "$tmp/daemon-$n.log" | head -n 1)
	daemon_metrics+=("$addr")
	curl -fsS --max-time 5 "http://$addr/healthz" >/dev/null || die "daemon $n: /healthz on $addr does not answer 200"
	note "daemon $n: pid $p, ready, /healthz on $addr answers 200"
done

# last_finished AFTER: "id status" of the first finished (not skipped) run of
# the job scheduled after AFTER (a timestamptz), or nothing.
first_run_after() {
	psql_q -F ' ' -c "SELECT id, status FROM entraprov.sync_runs
	                   WHERE job = 'soak' AND scheduled_for > '$1' AND status NOT IN ('running', 'skipped')
	                   ORDER BY id LIMIT 1"
}

# wait_run AFTER TIMEOUT WHAT: sets run_id and run_status of the first run
# scheduled after AFTER once it finished; dies after TIMEOUT seconds. A
# storm (storm_until > 0) is ended once SECONDS reaches storm_until.
storm_until=0
storm_secs=3
wait_run() {
	local after=$1 limit=$2 what=$3 deadline=$((SECONDS + $2)) r
	while :; do
		if ((storm_until > 0 && SECONDS >= storm_until)); then
			set_faults '{}'
			storm_until=0
		fi
		r=$(first_run_after "$after")
		if [[ -n "$r" ]]; then
			read -r run_id run_status <<<"$r"
			return 0
		fi
		for i in "${!daemon_pids[@]}"; do
			kill -0 "${daemon_pids[$i]}" 2>/dev/null || die "$what: daemon $((i + 1)) exited: $(tail -n 5 "$tmp/daemon-$((i + 1)).log")"
		done
		((SECONDS < deadline)) || die "$what: no run of job soak scheduled after $after finished within ${limit}s (quarantine: $(psql_q -c "SELECT coalesce(quarantined_until::text || ' ' || quarantine_reason, 'none') FROM entraprov.job_state WHERE job = 'soak'"); runs: $(psql_q -c "SELECT string_agg(id || ' ' || status || ' ' || coalesce(scheduled_for::text, '-'), '; ' ORDER BY id DESC) FROM (SELECT * FROM entraprov.sync_runs ORDER BY id DESC LIMIT 4) r"))"
		sleep 0.2
	done
}

# audit_check CYCLE RUN: audits job soak (faults must be off) and accepts a
# finding only when its user has an operation that failed in run RUN. Sets
# findings, explained and audit_counts; dies on an unexplained finding.
audit_check() {
	local cycle=$1 run=$2 rc=0
	settle
	timeout 120 "$tmp/bin/worker" --config "$tmp/config.yaml" audit --job soak --json \
		>"$tmp/audit-$cycle.json" 2>"$tmp/audit-$cycle.err" || rc=$?
	[[ $rc -eq 0 || $rc -eq 1 ]] || die "cycle $cycle: worker audit exit $rc: $(tail -n 3 "$tmp/audit-$cycle.err")"
	jq -e '.findings' "$tmp/audit-$cycle.json" >/dev/null 2>&1 || die "cycle $cycle: worker audit exit $rc printed no report: $(tail -n 3 "$tmp/audit-$cycle.err")"
	findings=$(jq '.findings | length' "$tmp/audit-$cycle.json")
	audit_counts=$(jq -c '.counts' "$tmp/audit-$cycle.json")
	explained=0
	((findings > 0)) || return 0
	psql_q -c "SELECT DISTINCT external_id FROM entraprov.sync_operations WHERE run_id = $run AND status = 'failed'" \
		| jq -R . | jq -s . >"$tmp/failed-$cycle.json"
	local unexplained
	unexplained=$(jq -c --slurpfile failed "$tmp/failed-$cycle.json" \
		'[.findings[] | select(.external_id as $x | ($failed[0] | index($x)) | not)]' "$tmp/audit-$cycle.json")
	if [[ "$unexplained" != "[]" ]]; then
		printf 'unexplained findings after run %s:\n' "$run" >&2
		jq '.' <<<"$unexplained" | head -n 60 >&2
		printf 'operations of run %s for these users:\n' "$run" >&2
		local ids
		ids=$(jq -r '[.[].external_id | "'"'"'" + . + "'"'"'"] | join(",")' <<<"$unexplained")
		psql_q -c "SELECT external_id, action, status, http_status, error_code, left(message, 160)
		             FROM entraprov.sync_operations WHERE run_id = $run AND external_id IN ($ids) ORDER BY seq" >&2 || true
		die "cycle $cycle: $(jq length <<<"$unexplained") audit finding(s) not explained by a failed operation of run $run ($audit_counts)"
	fi
	explained=$findings
}

# --------------------------------------------------------------------------
say "Cycle 0: the daemons provision the $users users"
t0=$(psql_q -c "SELECT clock_timestamp()")
wait_run "$t0" 300 "initial provisioning"
note "run $run_id $run_status in $(psql_q -c "SELECT round(extract(epoch FROM finished_at - started_at)::numeric, 1) FROM entraprov.sync_runs WHERE id = $run_id") s"
[[ "$run_status" == succeeded || "$run_status" == partial ]] || die "initial provisioning: run $run_id $run_status: $(psql_q -c "SELECT error_summary FROM entraprov.sync_runs WHERE id = $run_id")"
audit_check 0 "$run_id"
note "audit: $findings finding(s), all explained by failed operations of run $run_id"

# --------------------------------------------------------------------------
# churn CYCLE: one random change of the source; counters in churn_*.
hire_seq=0
tot_bad=0 tot_hires=0 tot_leavers=0 tot_rehires=0 tot_changes=0 tot_moves=0 tot_groups=0
churn() {
	local c=$1 s="$seed:$1"
	local hires=$((RANDOM % 9)) gone=$((RANDOM % 4)) off=$((RANDOM % 4)) rehires=$((RANDOM % 4))
	local changes=$((RANDOM % 25)) moves=$((RANDOM % 9)) regroup=$((RANDOM % 6)) bad=$((RANDOM % 3 == 0 ? 1 : 0))
	local first=$((hire_seq + 1))
	hire_seq=$((hire_seq + hires))
	# md5(external_id || seed:cycle) orders rows at random, reproducibly.
	psql_q >"$tmp/churn-$c.log" <<SQL
BEGIN;
-- Last cycle's bad hire is fixed by HR (it must now be created).
UPDATE entraprov.desired_users SET usage_location = 'FR' WHERE usage_location = 'XX';
UPDATE public.soak_leavers SET usage_location = 'FR' WHERE usage_location = 'XX';
-- Rehires first (so this cycle's leavers stay gone): half of the removed
-- rows come back as they were, disabled rows are enabled again.
WITH back AS (
  DELETE FROM public.soak_leavers WHERE external_id IN (
    SELECT external_id FROM public.soak_leavers ORDER BY md5(external_id || '$s') LIMIT ($rehires + 1) / 2)
  RETURNING *)
INSERT INTO entraprov.desired_users SELECT * FROM back;
UPDATE entraprov.desired_users SET account_enabled = true WHERE external_id IN (
  SELECT external_id FROM entraprov.desired_users WHERE NOT account_enabled
   ORDER BY md5(external_id || '$s') LIMIT $rehires / 2);
-- Leavers: rows removed (kept aside for a rehire), rows disabled.
WITH gone AS (
  DELETE FROM entraprov.desired_users WHERE external_id IN (
    SELECT external_id FROM entraprov.desired_users WHERE account_enabled AND external_id > 'E000020'
     ORDER BY md5(external_id || '$s' || 'gone') LIMIT $gone)
  RETURNING *)
INSERT INTO public.soak_leavers SELECT * FROM gone;
UPDATE entraprov.desired_users SET account_enabled = false WHERE external_id IN (
  SELECT external_id FROM entraprov.desired_users WHERE account_enabled AND external_id > 'E000020'
   ORDER BY md5(external_id || '$s' || 'off') LIMIT $off);
-- Hires, under a random current employee.
INSERT INTO entraprov.desired_users
       (external_id, user_principal_name, display_name, given_name, surname, job_title, department,
        company_name, employee_id, usage_location, account_enabled, manager_external_id, groups)
SELECT 'H' || lpad(i::text, 6, '0'), 'hire' || lpad(i::text, 6, '0') || '@$domain', 'Hire ' || i,
       'Hire', 'N' || i, 'Engineer', 'R&D', 'Contoso', 'H' || lpad(i::text, 6, '0'), 'FR', true,
       (SELECT external_id FROM entraprov.desired_users WHERE account_enabled
         ORDER BY md5(external_id || '$s' || i) LIMIT 1),
       CASE WHEN i % 3 = 0 THEN ARRAY['$group1'] ELSE '{}' END
  FROM generate_series($first, $hire_seq) AS i;
-- Now and then a hire HR got wrong (usage location XX): its create fails
-- validation in this cycle's run (an audit finding explained by that failed
-- operation); nobody is moved under it; it is fixed next cycle.
INSERT INTO entraprov.desired_users
       (external_id, user_principal_name, display_name, employee_id, usage_location, account_enabled, manager_external_id)
SELECT 'B' || lpad($c::text, 6, '0'), 'bad' || lpad($c::text, 6, '0') || '@$domain', 'Bad ' || $c,
       'B' || lpad($c::text, 6, '0'), 'XX', true, 'E000001'
 WHERE $bad = 1;
-- Attribute changes.
UPDATE entraprov.desired_users
   SET job_title = (ARRAY['Engineer','Analyst','Manager','Director'])[1 + abs(hashtext(external_id || '$s')) % 4],
       department = CASE WHEN hashtext(external_id || '$s') % 2 = 0 THEN 'Dept ' || $c ELSE department END,
       office_location = 'Office ' || $c,
       mobile_phone = CASE WHEN hashtext(external_id || '$s') % 3 = 0 THEN NULL ELSE '+33 6 00 00 ' || lpad($c::text, 2, '0') END
 WHERE external_id IN (SELECT external_id FROM entraprov.desired_users ORDER BY md5(external_id || '$s' || 'chg') LIMIT $changes);
-- Manager moves: under another current employee (not themselves).
UPDATE entraprov.desired_users AS d
   SET manager_external_id = (SELECT m.external_id FROM entraprov.desired_users m
                               WHERE m.account_enabled AND m.external_id <> d.external_id
                                 AND m.usage_location IS DISTINCT FROM 'XX'
                               ORDER BY md5(m.external_id || '$s' || d.external_id) LIMIT 1)
 WHERE external_id IN (SELECT external_id FROM entraprov.desired_users WHERE external_id > 'E000020'
                        ORDER BY md5(external_id || '$s' || 'mgr') LIMIT $moves);
-- Group changes: into group 2, out of every group, into group 1.
UPDATE entraprov.desired_users
   SET groups = CASE abs(hashtext(external_id || '$s')) % 3
                  WHEN 0 THEN ARRAY['$group2'] WHEN 1 THEN '{}'::text[] ELSE ARRAY['$group1'] END
 WHERE external_id IN (SELECT external_id FROM entraprov.desired_users ORDER BY md5(external_id || '$s' || 'grp') LIMIT $regroup);
COMMIT;
SQL
	churn_desc="$hires hires$( ((bad == 0)) || echo " (+1 invalid)"), $((gone + off)) leavers ($gone removed, $off disabled), $rehires rehires, $changes changes, $moves manager moves, $regroup group changes"
	tot_hires=$((tot_hires + hires)) tot_leavers=$((tot_leavers + gone + off)) tot_rehires=$((tot_rehires + rehires))
	tot_bad=$((tot_bad + bad))
	tot_changes=$((tot_changes + changes)) tot_moves=$((tot_moves + moves)) tot_groups=$((tot_groups + regroup))
}

# random_faults: sometimes none, mostly some 5xx and dropped answers (half
# of the faults on writes after the write took effect), now and then a storm
# (30% 5xx, 5% drops) for at most $storm_secs seconds: the client backs off
# 1 s, 2 s, 4 s … (real time) between attempts, so a longer storm would only
# make the run take minutes.
random_faults() {
	case $((RANDOM % 8)) in
	0 | 1) faults='{"rate_5xx":0,"drop_rate":0,"commit_before_fault":0}' ;;
	2) faults='{"rate_5xx":0.02,"drop_rate":0,"commit_before_fault":0.5}' ;;
	3 | 4) faults='{"rate_5xx":0.05,"drop_rate":0.01,"commit_before_fault":0.5}' ;;
	5 | 6) faults='{"rate_5xx":0.1,"drop_rate":0.02,"commit_before_fault":0.5}' ;;
	7) faults='{"rate_5xx":0.3,"drop_rate":0.05,"commit_before_fault":0.5}' ;;
	esac
}

say "Cycles 1–$cycles: churn and faults, a scheduled run, audit"
faulted_cycles=0 failed_runs=0 explained_total=0 dirty_cycles=0
statuses=()
for c in $(seq 1 "$cycles"); do
	churn "$c"
	t_churn=$(psql_q -c "SELECT clock_timestamp()")
	random_faults
	[[ "$faults" == *'"rate_5xx":0,'* ]] || faulted_cycles=$((faulted_cycles + 1))
	set_faults "$faults"
	[[ "$faults" != *'"rate_5xx":0.3,'* ]] || storm_until=$((SECONDS + storm_secs))
	wait_run "$t_churn" 90 "cycle $c"
	set_faults '{}'
	if [[ "$run_status" == failed ]]; then
		# A run that failed as a whole (e.g. the directory read gave up under
		# faults) applied nothing to explain: the next run, without faults,
		# must do the cycle's work.
		failed_runs=$((failed_runs + 1))
		note "cycle $c: run $run_id failed ($(psql_q -c "SELECT left(error_summary, 120) FROM entraprov.sync_runs WHERE id = $run_id")); waiting for the next run without faults"
		t_churn=$(psql_q -c "SELECT clock_timestamp()")
		wait_run "$t_churn" 90 "cycle $c (after a failed run)"
	fi
	[[ "$run_status" == succeeded || "$run_status" == partial ]] ||
		die "cycle $c: run $run_id $run_status: $(psql_q -c "SELECT error_summary FROM entraprov.sync_runs WHERE id = $run_id")"
	statuses+=("$run_status")
	audit_check "$c" "$run_id"
	explained_total=$((explained_total + explained))
	((findings == 0)) || dirty_cycles=$((dirty_cycles + 1))
	counts=$(psql_q -c "SELECT counts FROM entraprov.sync_runs WHERE id = $run_id")
	printf '   cycle %2d: %s; faults %s; run %s %s %s; audit %s\n' "$c" "$churn_desc" "$faults" "$run_id" "$run_status" "$counts" \
		"$(if ((findings == 0)); then echo clean; else echo "$findings finding(s), all failed in run $run_id: $audit_counts"; fi)"
done
set_faults '{}'

# --------------------------------------------------------------------------
say "Stop both daemons with SIGTERM"
for i in "${!daemon_pids[@]}"; do kill -TERM "${daemon_pids[$i]}"; done
stop_rcs=()
for i in "${!daemon_pids[@]}"; do
	p=${daemon_pids[$i]}
	deadline=$((SECONDS + 45))
	while kill -0 "$p" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
	kill -0 "$p" 2>/dev/null && die "daemon $((i + 1)) (pid $p) still running 45s after SIGTERM"
	rc=0
	wait "$p" || rc=$?
	stop_rcs+=("$rc")
	[[ $rc -eq 0 ]] || die "daemon $((i + 1)) exited $rc after SIGTERM: $(tail -n 5 "$tmp/daemon-$((i + 1)).log")"
done
note "both daemons exited 0"

# --------------------------------------------------------------------------
say "Final checks"
# The run history, for a look afterwards (SOAK_KEEP=1).
psql_q -F ' | ' -c "SELECT id, trigger, scheduled_for, started_at, finished_at, status, pid, counts, left(error_summary, 100)
                     FROM entraprov.sync_runs ORDER BY id" >"$tmp/sync_runs.txt"
twice=$(psql_q -c "SELECT count(*) FROM (SELECT scheduled_for FROM entraprov.sync_runs
                    WHERE job = 'soak' AND scheduled_for IS NOT NULL AND status <> 'skipped'
                    GROUP BY scheduled_for HAVING count(*) > 1) o")
runs=$(psql_q -c "SELECT count(*) FROM entraprov.sync_runs WHERE job = 'soak' AND status <> 'skipped'")
skipped=$(psql_q -c "SELECT count(*) FROM entraprov.sync_runs WHERE job = 'soak' AND status = 'skipped'")
by_status=$(psql_q -c "SELECT string_agg(status || ' ' || n, ', ' ORDER BY n DESC) FROM
                       (SELECT status, count(*) n FROM entraprov.sync_runs WHERE job = 'soak' AND status <> 'skipped' GROUP BY status) s")
per_daemon=()
for i in "${!daemon_pids[@]}"; do
	per_daemon+=("$(psql_q -c "SELECT count(*) FROM entraprov.sync_runs WHERE job = 'soak' AND status <> 'skipped' AND pid = ${daemon_pids[$i]}")")
done
quarantined=$(cat "$tmp"/daemon-*.log | grep -c '"msg":"job quarantined: scheduled runs back off"' || true)
q_skips=$(psql_q -c "SELECT count(*) FROM entraprov.sync_runs WHERE job = 'soak' AND status = 'skipped' AND error_summary ILIKE '%quarantin%'")
lost_lock=$(cat "$tmp"/daemon-*.log | grep -c '"msg":"job is running elsewhere; skipping"' || true)
lost_index=$(cat "$tmp"/daemon-*.log | grep -c '"msg":"occurrence already run by another worker; skipping"' || true)
others=$(psql_q -c "SELECT count(*) FROM entraprov.sync_runs WHERE job = 'soak' AND pid NOT IN (${daemon_pids[0]}, ${daemon_pids[1]})")
running=$(psql_q -c "SELECT count(*) FROM entraprov.sync_runs WHERE status = 'running'")
nonfinal=$(psql_q -c "SELECT count(*) FROM entraprov.sync_operations o JOIN entraprov.sync_runs r ON r.id = o.run_id
                      WHERE o.status = 'pending' OR (o.status = 'planned' AND r.mode = 'apply')")
ops=$(psql_q -c "SELECT string_agg(action || ' ' || n, ', ' ORDER BY n DESC) FROM
                 (SELECT action, count(*) n FROM entraprov.sync_operations WHERE status = 'succeeded' GROUP BY action) a")
failed_ops=$(psql_q -c "SELECT count(*) FROM entraprov.sync_operations WHERE status = 'failed'")
failed_by=$(psql_q -c "SELECT coalesce(string_agg(k || ' ' || n, ', ' ORDER BY n DESC), 'none') FROM
                       (SELECT action || CASE WHEN http_status IS NULL THEN ' not sent' ELSE ' HTTP ' || http_status END k, count(*) n
                          FROM entraprov.sync_operations WHERE status = 'failed' GROUP BY 1) f")
sim "${sim_admin}users?tenant=$tenant" >"$tmp/sim-users.json"
sim "${sim_admin}counters" >"$tmp/sim-counters.json"
live=$(live_users "$tmp/sim-users.json")
dup_emp=$(dup_employee_ids "$tmp/sim-users.json")
dup_upn=$(jq '[.[] | .UserPrincipalName | ascii_downcase] | group_by(.) | map(select(length > 1)) | length' "$tmp/sim-users.json")
dup_created=$(dup_created "$tmp/sim-counters.json")
desired=$(psql_q -c "SELECT count(*) FROM entraprov.desired_users")
# The tenant holds only the job's users; a row still invalid (the last
# cycle's bad hire) was never created.
enabled_want=$(psql_q -c "SELECT count(*) FROM entraprov.desired_users WHERE account_enabled AND usage_location IS DISTINCT FROM 'XX'")
enabled=$(enabled_users "$tmp/sim-users.json")
throttled=$(jq '.throttled' "$tmp/sim-counters.json")
steps=$(jq '.batch_steps' "$tmp/sim-counters.json")
injected=$(jq '.faults' "$tmp/sim-counters.json")
dropped=$(jq '.dropped' "$tmp/sim-counters.json")
share=$(share_429 "$throttled" "$steps")
duration=$((SECONDS - started))

note "runs $runs ($by_status); occurrences run twice $twice; skipped occurrences $skipped"
note "runs per daemon: ${per_daemon[0]} (pid ${daemon_pids[0]}) and ${per_daemon[1]} (pid ${daemon_pids[1]}); by other processes $others; still running $running"
note "quarantine: $quarantined time(s) (after 5 runs with more than 40% failed operations); $q_skips occurrence(s) skipped for it"
note "occurrences lost by a daemon: $lost_lock to the other's job lock (run in progress), $lost_index to the unique (job, scheduled_for) (run already done)"
note "directory: $live users ($enabled enabled; source: $desired rows, $enabled_want enabled); duplicate employeeIds $dup_emp, duplicate UPNs $dup_upn, UPNs created twice $dup_created"
note "operations succeeded by action: $ops"
note "failed operations $failed_ops ($failed_by); non-final operations $nonfinal"
note "graphsim: $steps batch steps, $injected injected 5xx, $dropped dropped answers, $throttled throttled (429 share $share)"
note "churn: $tot_hires hires (and $tot_bad invalid ones, fixed the next cycle), $tot_leavers leavers, $tot_rehires rehires, $tot_changes changes, $tot_moves manager moves, $tot_groups group changes; faults in $faulted_cycles of $cycles cycles"
note "audits: $dirty_cycles of $cycles with findings, $explained_total finding(s) in all, each explained by a failed operation of the cycle's run; $failed_runs run(s) failed as a whole"

[[ "$twice" == 0 ]] || die "$twice scheduled occurrence(s) have two runs"
[[ "$running" == 0 ]] || die "$running run(s) still running after both daemons stopped"
((per_daemon[0] > 0 && per_daemon[1] > 0)) || die "runs per daemon ${per_daemon[0]} and ${per_daemon[1]}: want both > 0"
[[ "$dup_emp" == 0 && "$dup_upn" == 0 && "$dup_created" == 0 ]] || die "duplicates in graphsim: $dup_emp employeeIds, $dup_upn UPNs, $dup_created UPNs created twice"
[[ "$nonfinal" == 0 ]] || die "$nonfinal operation(s) not final"
[[ "$enabled" == "$enabled_want" ]] || die "graphsim holds $enabled enabled users; the source wants $enabled_want"

say "Soak passed in $duration s"
row="| $cycles-cycle soak, two daemons | two \`worker run\` daemons on one configuration, job on \`@every $every\`, $users users (managers, 2 groups); $cycles cycles of random churn (in all $tot_hires hires, $tot_bad invalid hires fixed the next cycle, $tot_leavers leavers, $tot_rehires rehires, $tot_changes attribute changes, $tot_moves manager moves, $tot_groups group changes) with graphsim faults in $faulted_cycles cycles (2–10% 5xx and up to 2% dropped answers, or a ${storm_secs}-s storm of 30% 5xx and 5% drops; half after committing; $injected 5xx and $dropped drops injected); seed $seed, ${duration} s | after each cycle's run \`worker audit\` (faults off): clean or each finding a user whose operation failed in that run; occurrences with two runs; runs per daemon; graphsim duplicates (employeeId, UPN, creates per UPN); non-final operations; SIGTERM exit codes | $runs runs ($by_status), 0 occurrences run twice ($skipped skipped: $((skipped - q_skips)) while the previous run went on, $q_skips in quarantine; the losing daemon met the job lock $lost_lock times and the unique (job, scheduled_for) $lost_index times); daemons ran ${per_daemon[0]} and ${per_daemon[1]}; quarantined $quarantined times; audits: $((cycles - dirty_cycles)) of $cycles clean, $explained_total finding(s) in $dirty_cycles, all explained; $failed_runs run(s) failed whole; operations succeeded (initial load included): $ops; $failed_ops failed ($failed_by); $live users ($enabled enabled = enabled valid source rows), 0 duplicates; 0 non-final operations; 429 share $share ($throttled of $steps steps); both daemons exit 0 on SIGTERM |"
if [[ -n "${SOAK_REPORT:-}" ]]; then
	printf '%s\n' "$row" >"$SOAK_REPORT"
	note "row written to $SOAK_REPORT"
fi
printf '%s\n' "$row"
