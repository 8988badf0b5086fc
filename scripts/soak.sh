#!/usr/bin/env bash
# soak.sh — scheduled cycles with churn, faults and kills, two daemons (make soak).
#
# Real processes only: the worker and graphsim binaries (built once), a
# throwaway PostgreSQL (scripts/with-postgres). Two `worker run` daemons
# share one configuration and one database for the whole soak; two jobs on
# one tenant (soak: entraprov.desired_users; soakb, the contractors:
# entraprov.desired_users_b) run on a seconds-scale schedule. Each cycle:
#   1. random churn of both sources, as a real HR feed makes it: hires,
#      leavers (a removed row or account_enabled = false), rehires, attribute
#      changes, manager moves, group changes; re-keys (a person's
#      external_id changes, in place or as a rehire under a new number, and
#      the reports' manager_external_id follows), employee ids renumbered;
#      UPN swaps (two people exchange UPNs) and chains (one takes the UPN
#      another just gave up); people moving between the jobs (the row leaves
#      one source and appears in the other; README "Moving a user between
#      jobs": the next cycle releases the old job's link, the documented
#      manual step, and the new job adopts the account); bad rows (an invalid
#      value in a new or an existing row: usage location, UPN domain, a job
#      title over 128 characters, a group that is no GUID), fixed by HR one
#      or two cycles later. Random faults in graphsim (5xx, dropped answers,
#      half of them after the write took effect; sometimes none);
#   2. now and then a daemon is killed (SIGKILL) at a random instant and
#      restarted at once;
#   3. wait for a good run of each job scheduled after the churn (a run
#      killed or failed as a whole is followed by the next);
#   4. faults off, then `worker audit --job J --json` for both jobs: clean,
#      or every finding is about a user with an operation that failed in
#      that run.
# Then every bad row is fixed and every hand-over released, and runs go on
# until both audits are clean. At the end: no scheduled occurrence has two
# runs, both daemons ran some, no run started is missing from the history
# or left running, graphsim holds one account per person (no duplicate
# employeeId, UPN, display name; a person present at the start kept their
# account object through re-keys, swaps and moves), every source row has
# its account with the wanted attributes (a row on leave: its account
# disabled with its current attributes and manager; group changes made
# during the leave are counted, see n_leave_stale), the unmanaged users seeded in
# graphsim are byte-identical to the start, every bad row failed alone
# (never sent, a reason naming the column, its run partial not failed),
# every operation is final, both daemons stop on SIGTERM with exit 0.
# Every wait is bounded; the figures go to stdout and, with SOAK_REPORT=FILE,
# to FILE as a markdown row (docs/reliability.md).
#
# Environment: SOAK_CYCLES (32), SOAK_USERS (2000), SOAK_SEED (random; the
# seed is printed first and on failure, SOAK_SEED=N repeats the churn, the
# faults and the kills), SOAK_EVERY (3s: the jobs' schedule is
# "@every $SOAK_EVERY"), SOAK_JITTER (1s: the jobs' start jitter),
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

cycles=${SOAK_CYCLES:-32}
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
contractors=$((users / 20))
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
# Users no job manages, in the allowed domain and in the groups the jobs
# manage, one with the display name of a managed person and a manager, one
# disabled: no job may touch them (checked byte for byte at the end).
unmanaged_ids=(a11ce000-0000-4000-8000-000000000001 a11ce000-0000-4000-8000-000000000002
	a11ce000-0000-4000-8000-000000000003 a11ce000-0000-4000-8000-000000000004)
cat >"$tmp/sim-seed.json" <<EOF
{"tenants":[{"id":"$tenant","domains":["$domain"],
  "groups":[{"id":"$group1","display_name":"Engineering"},{"id":"$group2","display_name":"Everyone in Lyon"}],
  "users":[
    {"id":"${unmanaged_ids[0]}","user_principal_name":"svc-backup@$domain","display_name":"Backup service","account_enabled":true,
     "groups":["$group1"],"properties":{"jobTitle":"Service account","department":"Ops"}},
    {"id":"${unmanaged_ids[1]}","user_principal_name":"ext-auditor@$domain","display_name":"External auditor","employee_id":"U000001",
     "account_enabled":false,"groups":["$group2"],"properties":{"jobTitle":"Auditor","usageLocation":"DE"}},
    {"id":"${unmanaged_ids[2]}","user_principal_name":"user42.namesake@$domain","display_name":"User 42","employee_id":"U000042",
     "account_enabled":true,"manager_id":"${unmanaged_ids[0]}","groups":["$group1","$group2"],"properties":{"jobTitle":"Engineer","department":"R&D"}},
    {"id":"${unmanaged_ids[3]}","user_principal_name":"room-lyon@$domain","display_name":"Room Lyon","account_enabled":true}],
  "apps":[{"client_id":"$client","display_name":"entraprov","client_secret":"$secret",
           "roles":["User.ReadWrite.All","GroupMember.ReadWrite.All"]}]}]}
EOF
start_graphsim sim "$tmp/sim-seed.json"
sim_ca=$tmp/sim-ca.pem
sim() { curl -fsS --max-time 30 --cacert "$sim_ca" "$@"; }
set_faults() { sim -X POST -d "$1" "${sim_admin}faults" >/dev/null || die "POST ${sim_admin}faults $1 failed"; }
unmanaged_json=$(printf '%s\n' "${unmanaged_ids[@]}" | jq -R . | jq -cs .)
# unmanaged_state: the unmanaged users as graphsim holds them, keys sorted.
unmanaged_state() {
	sim "${sim_admin}users?tenant=$tenant" | jq -S --argjson ids "$unmanaged_json" '[.[] | select(.ID as $i | $ids | index($i))] | sort_by(.ID)'
}
unmanaged_state >"$tmp/unmanaged-before.json"
[[ $(jq length "$tmp/unmanaged-before.json") == "${#unmanaged_ids[@]}" ]] || die "graphsim does not hold the ${#unmanaged_ids[@]} unmanaged users seeded"

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
    # A person moving in from soakb, after soakb released its link
    # (README "Moving a user between jobs"), is adopted by employee id.
    matching:
      adopt_by: employee_id
    leaver:
      action: disable
    batch_size: 20
    max_concurrency: 4
  - name: soakb
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
    jitter: $jitter
    catch_up: true
    source: entraprov.desired_users_b
    allowed_domains: [$domain]
    matching:
      adopt_by: employee_id
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
-- Job soakb's source: contractors, all under C000001.
CREATE TABLE entraprov.desired_users_b (LIKE entraprov.desired_users INCLUDING ALL);
INSERT INTO entraprov.desired_users_b
       (external_id, user_principal_name, display_name, given_name, surname, job_title, department,
        company_name, employee_id, usage_location, account_enabled, manager_external_id)
SELECT 'C' || lpad(i::text, 6, '0'), 'contractor' || lpad(i::text, 6, '0') || '@$domain', 'Contractor ' || i,
       'Contractor', 'C' || i, 'Contractor', 'Ops', 'Fabrikam', 'C' || lpad(i::text, 6, '0'), 'FR', true,
       CASE WHEN i > 1 THEN 'C000001' END
  FROM generate_series(1, $contractors) AS i;
-- The soak's own books. soak_handover: rows moved from one job's source
-- to the other's, whose old link the next cycle releases.
-- soak_bad: every bad value given to a row, the good one, when HR fixes it.
-- soak_unsettled: the external ids of the last audits' findings (identity
-- churn picks only people the directory already agrees on).
CREATE TABLE public.soak_handover (external_id text NOT NULL, from_job text NOT NULL, to_job text NOT NULL, cycle int NOT NULL,
                                   released boolean NOT NULL DEFAULT false, PRIMARY KEY (external_id, cycle));
-- soak_rekeys: every re-key made (its rekey operation is checked at the end).
CREATE TABLE public.soak_rekeys (old text NOT NULL, new text NOT NULL, rehire boolean NOT NULL, cycle int NOT NULL);
CREATE TABLE public.soak_bad (tbl text NOT NULL, job text NOT NULL, external_id text NOT NULL, col text NOT NULL,
                              typ text NOT NULL, good text, since int NOT NULL, fix_at int NOT NULL, fixed boolean NOT NULL DEFAULT false,
                              hire boolean NOT NULL DEFAULT false);
CREATE TABLE public.soak_unsettled (external_id text PRIMARY KEY);
SQL
in_groups=$(psql_q -c "SELECT count(*) FROM entraprov.desired_users WHERE groups <> '{}'")
note "$users desired users (all but 20 with a manager, $in_groups in a group); $contractors contractors in job soakb"

# --------------------------------------------------------------------------
say "Start two worker daemons on the same configuration"
# Slot N (1, 2) is one daemon; a kill restarts it as a new process, with
# its own log daemon-N-K.log. daemon_pids holds each slot's current pid,
# slot_pids every pid the slot had (runs are counted per slot).
daemon_pids=() daemon_logs=() slot_pids=() incarnations=(0 0)
start_daemon() {
	local n=$1 p log ready= addr
	incarnations[n - 1]=$((incarnations[n - 1] + 1))
	log=$tmp/daemon-$n-${incarnations[n - 1]}.log
	: >"$log"
	"$tmp/bin/worker" --config "$tmp/config.yaml" run --stop-timeout 30s >"$log" 2>&1 &
	p=$!
	pids+=("$p")
	daemon_pids[n - 1]=$p
	daemon_logs[n - 1]=$log
	slot_pids[n - 1]="${slot_pids[n - 1]:-}${slot_pids[n - 1]:+,}$p"
	for _ in $(seq 1 300); do
		kill -0 "$p" 2>/dev/null || die "daemon $n exited at start: $(tail -n 5 "$log")"
		if grep -q '"msg":"worker ready"' "$log"; then ready=1; break; fi
		sleep 0.1
	done
	[[ -n "$ready" ]] || die "daemon $n not ready within 30s: $(tail -n 5 "$log")"
	addr=$(jq -r 'select(.msg == "serving /metrics and /healthz") | .addr' "$log" | head -n 1)
	curl -fsS --max-time 5 "http://$addr/healthz" >/dev/null || die "daemon $n: /healthz on $addr does not answer 200"
	daemon_addr=$addr
}
for n in 1 2; do
	start_daemon "$n"
	note "daemon $n: pid ${daemon_pids[n - 1]}, ready, /healthz on $daemon_addr answers 200"
done

# Kills: kill_at (milliseconds, 0: none) is when wait_run kills daemon slot
# kill_slot with SIGKILL and restarts it; run_was says whether it had a run
# in progress then.
kill_at=0 kill_slot=1 kills=0 kills_mid_run=0
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
kill_now() {
	local i=$((kill_slot - 1)) p mid try
	p=${daemon_pids[i]}
	kill_at=0
	# A kill mid-run tells more: wait up to 2 s for the daemon to be in a run.
	for try in $(seq 1 20); do
		mid=$(psql_q -c "SELECT count(*) FROM entraprov.sync_runs WHERE status = 'running' AND pid = $p")
		((mid == 0)) || break
		sleep 0.1
	done
	kill -KILL "$p" 2>/dev/null || die "daemon $kill_slot (pid $p) was not running when its kill came"
	wait "$p" 2>/dev/null || true
	kills=$((kills + 1))
	((mid == 0)) || kills_mid_run=$((kills_mid_run + 1))
	start_daemon "$kill_slot"
	kill_desc="${kill_desc:-}${kill_desc:+, }kill -9 daemon $kill_slot ($mid run(s) in progress)"
}

# first_run_after JOB AFTER: "id status" of the first finished (not
# skipped) run of JOB scheduled after AFTER (a timestamptz), or nothing.
first_run_after() {
	psql_q -F ' ' -c "SELECT id, status FROM entraprov.sync_runs
	                   WHERE job = '$1' AND scheduled_for > '$2' AND status NOT IN ('running', 'skipped')
	                   ORDER BY id LIMIT 1"
}

# wait_run JOB AFTER TIMEOUT WHAT: sets run_id and run_status of the first
# run of JOB scheduled after AFTER once it finished; dies after TIMEOUT
# seconds. A storm (storm_until > 0) is ended once SECONDS reaches
# storm_until; a kill (kill_at) is done when its instant comes.
storm_until=0
storm_secs=3
wait_run() {
	local job=$1 after=$2 limit=$3 what=$4 deadline=$((SECONDS + $3)) r
	while :; do
		if ((storm_until > 0 && SECONDS >= storm_until)); then
			set_faults '{}'
			storm_until=0
		fi
		if ((kill_at > 0)) && (($(now_ms) >= kill_at)); then kill_now; fi
		r=$(first_run_after "$job" "$after")
		if [[ -n "$r" ]]; then
			read -r run_id run_status <<<"$r"
			return 0
		fi
		for i in "${!daemon_pids[@]}"; do
			kill -0 "${daemon_pids[$i]}" 2>/dev/null || die "$what: daemon $((i + 1)) exited: $(tail -n 5 "${daemon_logs[$i]}")"
		done
		((SECONDS < deadline)) || die "$what: no run of job $job scheduled after $after finished within ${limit}s (quarantine: $(psql_q -c "SELECT coalesce(quarantined_until::text || ' ' || quarantine_reason, 'none') FROM entraprov.job_state WHERE job = '$job'"); runs: $(psql_q -c "SELECT string_agg(id || ' ' || status || ' ' || coalesce(scheduled_for::text, '-'), '; ' ORDER BY id DESC) FROM (SELECT * FROM entraprov.sync_runs WHERE job = '$job' ORDER BY id DESC LIMIT 4) r"))"
		sleep 0.2
	done
}

# wait_good JOB AFTER WHAT: wait_run, then, while the run was killed
# (interrupted) or failed as a whole (e.g. the directory read gave up under
# faults: it applied nothing to explain), the next one, faults off; at most
# three times. Counts them in failed_runs and interrupted_runs.
failed_runs=0 interrupted_runs=0
wait_good() {
	local job=$1 after=$2 what=$3 tries=0
	wait_run "$job" "$after" 90 "$what"
	while [[ "$run_status" == failed || "$run_status" == interrupted ]] && ((tries < 3)); do
		tries=$((tries + 1))
		if [[ "$run_status" == failed ]]; then failed_runs=$((failed_runs + 1)); else interrupted_runs=$((interrupted_runs + 1)); fi
		note "$what: job $job run $run_id $run_status ($(psql_q -c "SELECT left(error_summary, 120) FROM entraprov.sync_runs WHERE id = $run_id")); waiting for the next run without faults"
		set_faults '{}'
		storm_until=0
		after=$(psql_q -c "SELECT clock_timestamp()")
		wait_run "$job" "$after" 90 "$what (after a $run_status run)"
	done
	[[ "$run_status" == succeeded || "$run_status" == partial ]] ||
		die "$what: job $job run $run_id $run_status: $(psql_q -c "SELECT error_summary FROM entraprov.sync_runs WHERE id = $run_id")"
}

# audit_check JOB CYCLE RUN: audits JOB (faults off, replication lag
# waited out: settle) and accepts a finding only when its user has an
# operation that failed in run RUN (RUN empty: accepts none). Sets findings,
# explained and audit_counts; adds the findings' external ids to
# soak_unsettled; dies on an unexplained finding.
# audit_exec JOB CYCLE: only the audit, its exit code in the .rc file (the
# loop runs both jobs' audits at once).
audit_exec() {
	local rc=0 out=$tmp/audit-$1-$2
	timeout 120 "$tmp/bin/worker" --config "$tmp/config.yaml" audit --job "$1" --json >"$out.json" 2>"$out.err" || rc=$?
	echo "$rc" >"$out.rc"
}
audit_check() {
	local job=$1 cycle=$2 run=$3 rc out=$tmp/audit-$1-$2
	[[ -f "$out.rc" ]] || audit_exec "$job" "$cycle"
	rc=$(cat "$out.rc")
	[[ $rc -eq 0 || $rc -eq 1 ]] || die "cycle $cycle: worker audit --job $job exit $rc: $(tail -n 3 "$out.err")"
	jq -e '.findings' "$out.json" >/dev/null 2>&1 || die "cycle $cycle: worker audit --job $job exit $rc printed no report: $(tail -n 3 "$out.err")"
	findings=$(jq '.findings | length' "$out.json")
	audit_counts=$(jq -c '.counts' "$out.json")
	explained=0
	((findings > 0)) || return 0
	local values
	values=$(jq -r '[.findings[].external_id | select(. != "") | "('"'"'" + gsub("'"'"'"; "'"'"''"'"'") + "'"'"')"] | unique | join(",")' "$out.json")
	[[ -z "$values" ]] || psql_q -c "INSERT INTO public.soak_unsettled VALUES $values ON CONFLICT DO NOTHING"
	psql_q -c "SELECT DISTINCT external_id FROM entraprov.sync_operations WHERE run_id = ${run:-0} AND status = 'failed'" |
		jq -R . | jq -s . >"$out.failed.json"
	local unexplained
	unexplained=$(jq -c --slurpfile failed "$out.failed.json" \
		'[.findings[] | select(.external_id as $x | ($failed[0] | index($x)) | not)]' "$out.json")
	if [[ "$unexplained" != "[]" ]]; then
		printf 'unexplained findings of job %s after run %s:\n' "$job" "${run:-(none accepted)}" >&2
		jq '.' <<<"$unexplained" | head -n 60 >&2
		local ids
		ids=$(jq -r '[.[].external_id | "'"'"'" + . + "'"'"'"] | join(",")' <<<"$unexplained")
		printf 'their operations in the last runs of job %s:\n' "$job" >&2
		psql_q -c "SELECT run_id, external_id, action, status, http_status, error_code, left(message, 160)
		             FROM entraprov.sync_operations WHERE run_id IN (SELECT id FROM entraprov.sync_runs WHERE job = '$job' ORDER BY id DESC LIMIT 3)
		              AND external_id IN ($ids) ORDER BY run_id, seq" >&2 || true
		printf 'soak books for them:\n' >&2
		psql_q -c "SELECT 'bad', external_id, col, since, fix_at, fixed FROM public.soak_bad WHERE external_id IN ($ids)
		           UNION ALL SELECT 'handover', external_id, from_job || '>' || to_job, cycle, NULL, released FROM public.soak_handover WHERE external_id IN ($ids)
		           UNION ALL SELECT 'rekey', new, old, cycle, NULL, rehire FROM public.soak_rekeys WHERE new IN ($ids) OR old IN ($ids)" >&2 || true
		die "cycle $cycle: $(jq length <<<"$unexplained") audit finding(s) of job $job not explained by a failed operation of run ${run:-(none)} ($audit_counts)"
	fi
	explained=$findings
}

# --------------------------------------------------------------------------
say "Cycle 0: the daemons provision the $users users and $contractors contractors"
t0=$(psql_q -c "SELECT clock_timestamp()")
wait_run soak "$t0" 300 "initial provisioning"
[[ "$run_status" == succeeded || "$run_status" == partial ]] || die "initial provisioning: run $run_id $run_status: $(psql_q -c "SELECT error_summary FROM entraprov.sync_runs WHERE id = $run_id")"
note "job soak: run $run_id $run_status in $(psql_q -c "SELECT round(extract(epoch FROM finished_at - started_at)::numeric, 1) FROM entraprov.sync_runs WHERE id = $run_id") s"
run_a=$run_id
wait_run soakb "$t0" 300 "initial provisioning"
[[ "$run_status" == succeeded || "$run_status" == partial ]] || die "initial provisioning: run $run_id $run_status: $(psql_q -c "SELECT error_summary FROM entraprov.sync_runs WHERE id = $run_id")"
run_b=$run_id
settle
audit_check soak 0 "$run_a"
audit_check soakb 0 "$run_b"
psql_q -c "TRUNCATE public.soak_unsettled"
# Who holds which account object at the start: a person (display name)
# keeps it through re-keys, swaps and moves.
sim "${sim_admin}users?tenant=$tenant" |
	jq -S --argjson ids "$unmanaged_json" '[.[] | select((.Deleted | not) and (.ID as $i | $ids | index($i) | not)) | {(.DisplayName): .ID}] | add // {}' >"$tmp/objects-before.json"
note "audits clean or explained; $(jq length "$tmp/objects-before.json") accounts recorded by person"

# --------------------------------------------------------------------------
# churn CYCLE: one random change of both sources; counters in tot_*.
hire_seq=0 rekey_seq=0 upn_seq=0
tot_bad=0 tot_hires=0 tot_leavers=0 tot_rehires=0 tot_changes=0 tot_moves=0 tot_groups=0
tot_rekeys=0 tot_rehired_new=0 tot_renumbered=0 tot_swaps=0 tot_chains=0 tot_to_b=0 tot_to_a=0
tot_released=0 tot_badrows=0 tot_fixed=0
# not_busy: a row HR may change the identity of (re-key, UPN, move, bad
# value): no finding about it in the last audits, not bad at the moment,
# not being handed over, not changed so this cycle. linked JOB: the job
# links it to an account it manages.
not_busy="external_id NOT IN (SELECT external_id FROM public.soak_unsettled)
  AND external_id NOT IN (SELECT external_id FROM public.soak_bad WHERE NOT fixed)
  AND external_id NOT IN (SELECT external_id FROM public.soak_handover WHERE NOT released)"
# fix_sql QUERY: SQL that puts back the good value of each soak_bad row
# QUERY returns (HR's fix).
fix_sql() {
	cat <<SQL
DO \$fix\$ DECLARE b record; BEGIN
  FOR b IN $1 LOOP
    EXECUTE format('UPDATE %s SET %I = \$1::%s WHERE external_id = \$2', b.tbl, b.col, b.typ) USING b.good, b.external_id;
  END LOOP;
END \$fix\$;
SQL
}
linked() { printf "external_id IN (SELECT external_id FROM entraprov.directory_links WHERE job = '%s' AND state = 'active')" "$1"; }
churn() {
	local c=$1 s="$seed:$1"
	local hires=$((RANDOM % 9)) gone=$((RANDOM % 4)) off=$((RANDOM % 4)) rehires=$((RANDOM % 4))
	local changes=$((RANDOM % 25)) moves=$((RANDOM % 9)) regroup=$((RANDOM % 6)) bad=$((RANDOM % 3 == 0 ? 1 : 0))
	local rekeys=$((RANDOM % 3)) rehire_new=$((RANDOM % 3 == 0 ? 1 : 0)) renum=$((RANDOM % 2))
	local swaps=$((RANDOM % 2)) chains=$((RANDOM % 2)) to_b=$((RANDOM % 3)) to_a=$((RANDOM % 2))
	local badrow=$((RANDOM % 2)) badkind=$((RANDOM % 4)) badtbl=entraprov.desired_users badjob=soak fixin=$((1 + RANDOM % 2))
	((RANDOM % 4 != 0)) || badtbl=entraprov.desired_users_b badjob=soakb
	local bcol btyp=text bval
	case $badkind in
	0) bcol=usage_location bval="'XX'" ;;
	1) bcol=user_principal_name bval="split_part(user_principal_name, '@', 1) || '@not-allowed.example'" ;;
	2) bcol=job_title bval="repeat('Senior ', 30)" ;;
	3) bcol=groups btyp='text[]' bval="ARRAY['Engineering']" ;;
	esac
	local first=$((hire_seq + 1)) rk0=$rekey_seq
	hire_seq=$((hire_seq + hires))
	rekey_seq=$((rekey_seq + rekeys + rehire_new))
	upn_seq=$((upn_seq + 1))
	local calm_a="account_enabled AND external_id NOT BETWEEN 'E000001' AND 'E000020' AND $not_busy AND $(linked soak)
  AND external_id NOT IN (SELECT external_id FROM touched)"
	local calm_b="account_enabled AND external_id <> 'C000001' AND $not_busy AND $(linked soakb)
  AND external_id NOT IN (SELECT external_id FROM touched)"
	local calm_bad=$calm_a
	[[ $badjob == soak ]] || calm_bad=$calm_b
	# A manager is someone the job already manages (not a row still being
	# handed over to it, nor a hire not yet created).
	local is_manager="m.account_enabled AND m.usage_location IS DISTINCT FROM 'XX' AND m.$(linked soak)"
	# md5(external_id || seed:cycle) orders rows at random, reproducibly.
	psql_q >"$tmp/churn-$c.log" <<SQL
BEGIN;
CREATE TEMP TABLE touched (external_id text PRIMARY KEY) ON COMMIT DROP;
-- The hand-overs of the last cycle: the old job has run since the row left
-- its source (and disabled the account, per its leaver policy); release
-- its link, the documented step (README "Moving a user between jobs"):
-- the new job adopts the account at its next run.
CREATE TEMP TABLE released ON COMMIT DROP AS SELECT * FROM public.soak_handover WHERE NOT released;
DELETE FROM entraprov.directory_links l USING released h WHERE l.job = h.from_job AND l.external_id = h.external_id;
UPDATE public.soak_handover SET released = true WHERE NOT released;
-- Bad values whose fix is due: HR corrects them.
CREATE TEMP TABLE fixed ON COMMIT DROP AS SELECT * FROM public.soak_bad WHERE NOT fixed AND fix_at <= $c;
$(fix_sql "SELECT * FROM fixed")
UPDATE public.soak_bad SET fixed = true WHERE NOT fixed AND fix_at <= $c;
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
    SELECT external_id FROM entraprov.desired_users WHERE account_enabled AND external_id > 'E000020' AND $not_busy
     ORDER BY md5(external_id || '$s' || 'gone') LIMIT $gone)
  RETURNING *)
INSERT INTO public.soak_leavers SELECT * FROM gone;
UPDATE entraprov.desired_users SET account_enabled = false WHERE external_id IN (
  SELECT external_id FROM entraprov.desired_users WHERE account_enabled AND external_id > 'E000020' AND $not_busy
   ORDER BY md5(external_id || '$s' || 'off') LIMIT $off);
-- Hires, under a random current employee.
INSERT INTO entraprov.desired_users
       (external_id, user_principal_name, display_name, given_name, surname, job_title, department,
        company_name, employee_id, usage_location, account_enabled, manager_external_id, groups)
SELECT 'H' || lpad(i::text, 6, '0'), 'hire' || lpad(i::text, 6, '0') || '@$domain', 'Hire ' || i,
       'Hire', 'N' || i, 'Engineer', 'R&D', 'Contoso', 'H' || lpad(i::text, 6, '0'), 'FR', true,
       (SELECT m.external_id FROM entraprov.desired_users m WHERE $is_manager
         ORDER BY md5(m.external_id || '$s' || i) LIMIT 1),
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
-- Attribute changes (not of a row whose bad value waits for its fix).
UPDATE entraprov.desired_users
   SET job_title = (ARRAY['Engineer','Analyst','Manager','Director'])[1 + abs(hashtext(external_id || '$s')) % 4],
       department = CASE WHEN hashtext(external_id || '$s') % 2 = 0 THEN 'Dept ' || $c ELSE department END,
       office_location = 'Office ' || $c,
       mobile_phone = CASE WHEN hashtext(external_id || '$s') % 3 = 0 THEN NULL ELSE '+33 6 00 00 ' || lpad($c::text, 2, '0') END
 WHERE external_id IN (SELECT external_id FROM entraprov.desired_users
                        WHERE external_id NOT IN (SELECT external_id FROM public.soak_bad WHERE NOT fixed)
                        ORDER BY md5(external_id || '$s' || 'chg') LIMIT $changes);
UPDATE entraprov.desired_users_b
   SET office_location = 'Site ' || $c, mobile_phone = '+33 7 00 00 ' || lpad($c::text, 2, '0')
 WHERE external_id IN (SELECT external_id FROM entraprov.desired_users_b
                        WHERE external_id NOT IN (SELECT external_id FROM public.soak_bad WHERE NOT fixed)
                        ORDER BY md5(external_id || '$s' || 'chg') LIMIT $changes / 5);
-- Manager moves: under another current employee (not themselves).
UPDATE entraprov.desired_users AS d
   SET manager_external_id = (SELECT m.external_id FROM entraprov.desired_users m
                               WHERE $is_manager AND m.external_id <> d.external_id
                               ORDER BY md5(m.external_id || '$s' || d.external_id) LIMIT 1)
 WHERE external_id IN (SELECT external_id FROM entraprov.desired_users WHERE external_id > 'E000020'
                          AND external_id NOT IN (SELECT external_id FROM public.soak_bad WHERE NOT fixed)
                        ORDER BY md5(external_id || '$s' || 'mgr') LIMIT $moves);
-- Group changes: into group 2, out of every group, into group 1.
UPDATE entraprov.desired_users
   SET groups = CASE abs(hashtext(external_id || '$s')) % 3
                  WHEN 0 THEN ARRAY['$group2'] WHEN 1 THEN '{}'::text[] ELSE ARRAY['$group1'] END
 WHERE external_id IN (SELECT external_id FROM entraprov.desired_users
                        WHERE external_id NOT IN (SELECT external_id FROM public.soak_bad WHERE NOT fixed)
                        ORDER BY md5(external_id || '$s' || 'grp') LIMIT $regroup);
-- Re-keys (README matching.adopt_by): a person's external_id changes, the
-- employee id stays; in place, or as a leaver rehired under a new number.
-- The reports' manager_external_id follows, as the HR system's would.
CREATE TEMP TABLE rk ON COMMIT DROP AS
SELECT external_id AS old, 'K' || lpad(($rk0 + row_number() OVER (ORDER BY md5(external_id || '$s' || 'rekey')))::text, 6, '0') AS new, false AS rehire
  FROM entraprov.desired_users WHERE $calm_a ORDER BY md5(external_id || '$s' || 'rekey') LIMIT $rekeys;
INSERT INTO rk
SELECT external_id, 'K' || lpad(($rk0 + $rekeys + 1)::text, 6, '0'), true
  FROM public.soak_leavers WHERE $not_busy AND account_enabled
   AND external_id IN (SELECT external_id FROM entraprov.directory_links WHERE job = 'soak' AND state IN ('active', 'disabled'))
 ORDER BY md5(external_id || '$s' || 'rehire') LIMIT $rehire_new;
UPDATE entraprov.desired_users d SET external_id = rk.new FROM rk WHERE d.external_id = rk.old AND NOT rk.rehire;
WITH back AS (DELETE FROM public.soak_leavers l USING rk WHERE l.external_id = rk.old AND rk.rehire RETURNING l.*)
INSERT INTO entraprov.desired_users SELECT * FROM back;
UPDATE entraprov.desired_users d SET external_id = rk.new FROM rk WHERE d.external_id = rk.old AND rk.rehire;
UPDATE entraprov.desired_users d SET manager_external_id = rk.new FROM rk WHERE d.manager_external_id = rk.old;
UPDATE public.soak_leavers d SET manager_external_id = rk.new FROM rk WHERE d.manager_external_id = rk.old;
INSERT INTO touched SELECT new FROM rk;
INSERT INTO public.soak_rekeys SELECT old, new, rehire, $c FROM rk;
-- An employee id renumbered (same external_id).
CREATE TEMP TABLE rn ON COMMIT DROP AS
SELECT external_id FROM entraprov.desired_users WHERE $calm_a ORDER BY md5(external_id || '$s' || 'renum') LIMIT $renum;
UPDATE entraprov.desired_users d SET employee_id = 'R' || $c || d.external_id FROM rn WHERE d.external_id = rn.external_id;
INSERT INTO touched SELECT external_id FROM rn;
-- UPN swaps: two people exchange user_principal_name.
CREATE TEMP TABLE sw ON COMMIT DROP AS
SELECT external_id, user_principal_name, row_number() OVER (ORDER BY md5(external_id || '$s' || 'swap')) AS n
  FROM entraprov.desired_users WHERE $calm_a ORDER BY md5(external_id || '$s' || 'swap') LIMIT 2 * $swaps;
DELETE FROM sw WHERE n > 2 * (SELECT count(*) / 2 FROM sw);
UPDATE entraprov.desired_users d SET user_principal_name = o.user_principal_name
  FROM sw me JOIN sw o ON o.n = CASE WHEN me.n % 2 = 1 THEN me.n + 1 ELSE me.n - 1 END
 WHERE d.external_id = me.external_id;
INSERT INTO touched SELECT external_id FROM sw;
-- A chain: one person gets a new UPN, another takes the one just given up.
CREATE TEMP TABLE ch ON COMMIT DROP AS
SELECT external_id, user_principal_name, row_number() OVER (ORDER BY md5(external_id || '$s' || 'chain')) AS n
  FROM entraprov.desired_users WHERE $calm_a ORDER BY md5(external_id || '$s' || 'chain') LIMIT 2 * $chains;
DELETE FROM ch WHERE n > 2 * (SELECT count(*) / 2 FROM ch);
UPDATE entraprov.desired_users d
   SET user_principal_name = CASE WHEN ch.n = 1 THEN 'renamed' || lpad('$upn_seq', 6, '0') || '@$domain'
                                  ELSE (SELECT user_principal_name FROM ch WHERE n = 1) END
  FROM ch WHERE d.external_id = ch.external_id;
INSERT INTO touched SELECT external_id FROM ch;
-- Moves between the jobs: a row leaves one source and appears in the
-- other, under a manager of the new job; only people who manage nobody.
CREATE TEMP TABLE mv ON COMMIT DROP AS
SELECT external_id, 'soak'::text AS from_job, 'soakb'::text AS to_job FROM entraprov.desired_users d WHERE $calm_a
   AND NOT EXISTS (SELECT 1 FROM entraprov.desired_users r WHERE r.manager_external_id = d.external_id)
   AND NOT EXISTS (SELECT 1 FROM public.soak_leavers r WHERE r.manager_external_id = d.external_id)
 ORDER BY md5(external_id || '$s' || 'tob') LIMIT $to_b;
INSERT INTO mv
SELECT external_id, 'soakb', 'soak' FROM entraprov.desired_users_b WHERE $calm_b
 ORDER BY md5(external_id || '$s' || 'toa') LIMIT $to_a;
WITH out AS (DELETE FROM entraprov.desired_users d USING mv WHERE d.external_id = mv.external_id AND mv.to_job = 'soakb' RETURNING d.*)
INSERT INTO entraprov.desired_users_b SELECT * FROM out;
WITH out AS (DELETE FROM entraprov.desired_users_b d USING mv WHERE d.external_id = mv.external_id AND mv.to_job = 'soak' RETURNING d.*)
INSERT INTO entraprov.desired_users SELECT * FROM out;
UPDATE entraprov.desired_users_b d SET manager_external_id = 'C000001' FROM mv WHERE d.external_id = mv.external_id AND mv.to_job = 'soakb';
UPDATE entraprov.desired_users d SET manager_external_id = 'E' || lpad((1 + abs(hashtext(d.external_id || '$s')) % 20)::text, 6, '0')
  FROM mv WHERE d.external_id = mv.external_id AND mv.to_job = 'soak';
INSERT INTO public.soak_handover SELECT external_id, from_job, to_job, $c FROM mv;
INSERT INTO touched SELECT external_id FROM mv;
-- A bad value in an existing row ($bcol), fixed by HR in $fixin cycle(s).
INSERT INTO public.soak_bad (tbl, job, external_id, col, typ, good, since, fix_at)
SELECT '$badtbl', '$badjob', external_id, '$bcol', '$btyp', $bcol::text, $c, $c + $fixin
  FROM $badtbl WHERE $calm_bad ORDER BY md5(external_id || '$s' || 'bad') LIMIT $badrow;
UPDATE $badtbl SET $bcol = $bval
 WHERE external_id IN (SELECT external_id FROM public.soak_bad WHERE since = $c);
INSERT INTO public.soak_bad (tbl, job, external_id, col, typ, good, since, fix_at, hire)
SELECT 'entraprov.desired_users', 'soak', 'B' || lpad($c::text, 6, '0'), 'usage_location', 'text', 'FR', $c, $c + 1, true WHERE $bad = 1;
SELECT (SELECT count(*) FROM rk WHERE NOT rehire), (SELECT count(*) FROM rk WHERE rehire), (SELECT count(*) FROM rn),
       (SELECT count(*) / 2 FROM sw), (SELECT count(*) / 2 FROM ch), (SELECT count(*) FROM mv WHERE to_job = 'soakb'),
       (SELECT count(*) FROM mv WHERE to_job = 'soak'), (SELECT count(*) FROM public.soak_bad WHERE since = $c AND NOT hire),
       (SELECT count(*) FROM released), (SELECT count(*) FROM fixed),
       coalesce((SELECT string_agg(old || '>' || new, ' ') FROM rk), '') || ';' ||
       coalesce((SELECT string_agg(external_id || ':' || from_job || '>' || to_job, ' ') FROM mv), '') || ';' ||
       coalesce((SELECT string_agg(external_id || ':' || col, ' ') FROM public.soak_bad WHERE since = $c AND NOT hire), '');
COMMIT;
SQL
	local n_rk n_rh n_rn n_sw n_ch n_tb n_ta n_bad n_rel n_fix detail
	IFS='|' read -r n_rk n_rh n_rn n_sw n_ch n_tb n_ta n_bad n_rel n_fix detail <"$tmp/churn-$c.log"
	churn_desc="$hires hires$( ((bad == 0)) || echo " (+1 invalid)"), $((gone + off)) leavers ($gone removed, $off disabled), $rehires rehires, $changes changes, $moves manager moves, $regroup group changes"
	churn_desc+="; $n_rk re-keys, $n_rh rehired under a new number, $n_rn employee ids renumbered, $n_sw UPN swaps, $n_ch UPN chains, moves $n_tb to soakb and $n_ta to soak ($n_rel hand-overs released), $n_bad bad rows ($n_fix bad values fixed) [$detail]"
	tot_hires=$((tot_hires + hires)) tot_leavers=$((tot_leavers + gone + off)) tot_rehires=$((tot_rehires + rehires))
	tot_bad=$((tot_bad + bad))
	tot_changes=$((tot_changes + changes)) tot_moves=$((tot_moves + moves)) tot_groups=$((tot_groups + regroup))
	tot_rekeys=$((tot_rekeys + n_rk)) tot_rehired_new=$((tot_rehired_new + n_rh)) tot_renumbered=$((tot_renumbered + n_rn))
	tot_swaps=$((tot_swaps + n_sw)) tot_chains=$((tot_chains + n_ch)) tot_to_b=$((tot_to_b + n_tb)) tot_to_a=$((tot_to_a + n_ta))
	tot_released=$((tot_released + n_rel)) tot_badrows=$((tot_badrows + n_bad)) tot_fixed=$((tot_fixed + n_fix))
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

say "Cycles 1–$cycles: churn, faults and kills, a scheduled run of each job, audits"
faulted_cycles=0 explained_total=0 dirty_cycles=0
: >"$tmp/runs-seen.txt"
for c in $(seq 1 "$cycles"); do
	churn "$c"
	t_churn=$(psql_q -c "SELECT clock_timestamp()")
	random_faults
	[[ "$faults" == *'"rate_5xx":0,'* ]] || faulted_cycles=$((faulted_cycles + 1))
	set_faults "$faults"
	[[ "$faults" != *'"rate_5xx":0.3,'* ]] || storm_until=$((SECONDS + storm_secs))
	# A third of the cycles kill a daemon at a random instant of the next
	# four seconds (a run of either job is usually under way then).
	kill_desc=
	if ((RANDOM % 3 == 0)); then
		kill_slot=$((1 + RANDOM % 2))
		kill_at=$(($(now_ms) + RANDOM % 4000))
	fi
	wait_good soak "$t_churn" "cycle $c"
	run_a=$run_id status_a=$run_status
	wait_good soakb "$t_churn" "cycle $c"
	run_b=$run_id status_b=$run_status
	((kill_at == 0)) || kill_now # its instant came after both runs
	set_faults '{}'
	storm_until=0
	settle
	psql_q -c "TRUNCATE public.soak_unsettled"
	audit_exec soak "$c" &
	audit_a=$!
	audit_exec soakb "$c" &
	wait "$audit_a" "$!"
	audit_check soak "$c" "$run_a"
	findings_a=$findings counts_a=$audit_counts
	explained_total=$((explained_total + explained))
	audit_check soakb "$c" "$run_b"
	findings_b=$findings counts_b=$audit_counts
	explained_total=$((explained_total + explained))
	((findings_a + findings_b == 0)) || dirty_cycles=$((dirty_cycles + 1))
	psql_q -c "SELECT id FROM entraprov.sync_runs" >>"$tmp/runs-seen.txt"
	printf '   cycle %2d (%d s): %s; faults %s%s; soak run %s %s %s, audit %s; soakb run %s %s %s, audit %s\n' "$c" "$((SECONDS - started))" "$churn_desc" "$faults" \
		"${kill_desc:+; $kill_desc}" \
		"$run_a" "$status_a" "$(psql_q -c "SELECT counts FROM entraprov.sync_runs WHERE id = $run_a")" \
		"$(if ((findings_a == 0)); then echo clean; else echo "$findings_a finding(s), all failed in run $run_a: $counts_a"; fi)" \
		"$run_b" "$status_b" "$(psql_q -c "SELECT counts FROM entraprov.sync_runs WHERE id = $run_b")" \
		"$(if ((findings_b == 0)); then echo clean; else echo "$findings_b finding(s), all failed in run $run_b: $counts_b"; fi)"
done
set_faults '{}'

# --------------------------------------------------------------------------
say "Final convergence: HR fixes every bad value, the last hand-overs are released, no faults, no kills"
psql_q >"$tmp/churn-final.log" <<SQL
BEGIN;
DELETE FROM entraprov.directory_links l USING public.soak_handover h
 WHERE NOT h.released AND l.job = h.from_job AND l.external_id = h.external_id;
$(fix_sql "SELECT * FROM public.soak_bad WHERE NOT fixed")
SELECT (SELECT count(*) FROM public.soak_handover WHERE NOT released), (SELECT count(*) FROM public.soak_bad WHERE NOT fixed);
UPDATE public.soak_bad SET fixed = true;
UPDATE public.soak_handover SET released = true;
COMMIT;
SQL
IFS='|' read -r final_released final_fixed <"$tmp/churn-final.log"
tot_released=$((tot_released + final_released)) tot_fixed=$((tot_fixed + final_fixed))
rounds=0
while :; do
	rounds=$((rounds + 1))
	t_final=$(psql_q -c "SELECT clock_timestamp()")
	wait_good soak "$t_final" "final round $rounds"
	run_a=$run_id
	wait_good soakb "$t_final" "final round $rounds"
	run_b=$run_id
	settle
	# The first round may still fail a user (a hand-over's adoption waits
	# for the released link, a manager for its new report's account); the
	# next must be clean with nothing to explain.
	if ((rounds < 3)); then
		audit_check soak final-$rounds "$run_a"
		findings_a=$findings
		audit_check soakb final-$rounds "$run_b"
		((findings_a + findings > 0)) || break
		note "final round $rounds: $findings_a + $findings finding(s), all explained by failed operations; one more round"
	else
		audit_check soak final-$rounds ""
		audit_check soakb final-$rounds ""
		break
	fi
done
psql_q -c "SELECT id FROM entraprov.sync_runs" >>"$tmp/runs-seen.txt"
note "converged: both audits clean after $rounds round(s) ($final_released hand-overs released, $final_fixed bad values fixed before it)"

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
	[[ $rc -eq 0 ]] || die "daemon $((i + 1)) exited $rc after SIGTERM: $(tail -n 5 "${daemon_logs[$i]}")"
done
note "both daemons exited 0"

# --------------------------------------------------------------------------
say "Final checks"
# The run history, for a look afterwards (SOAK_KEEP=1).
psql_q -F ' | ' -c "SELECT id, job, trigger, scheduled_for, started_at, finished_at, status, pid, counts, left(error_summary, 100)
                     FROM entraprov.sync_runs ORDER BY id" >"$tmp/sync_runs.txt"
all_pids="${slot_pids[0]},${slot_pids[1]}"
twice=$(psql_q -c "SELECT count(*) FROM (SELECT job, scheduled_for FROM entraprov.sync_runs
                    WHERE scheduled_for IS NOT NULL AND status <> 'skipped'
                    GROUP BY job, scheduled_for HAVING count(*) > 1) o")
runs=$(psql_q -c "SELECT count(*) FROM entraprov.sync_runs WHERE status <> 'skipped'")
skipped=$(psql_q -c "SELECT count(*) FROM entraprov.sync_runs WHERE status = 'skipped'")
by_status=$(psql_q -c "SELECT string_agg(status || ' ' || n, ', ' ORDER BY n DESC) FROM
                       (SELECT status, count(*) n FROM entraprov.sync_runs WHERE status <> 'skipped' GROUP BY status) s")
by_job=$(psql_q -c "SELECT string_agg(job || ' ' || n, ', ' ORDER BY job) FROM
                    (SELECT job, count(*) n FROM entraprov.sync_runs WHERE status <> 'skipped' GROUP BY job) s")
per_daemon=()
for i in 0 1; do
	per_daemon+=("$(psql_q -c "SELECT count(*) FROM entraprov.sync_runs WHERE status <> 'skipped' AND pid IN (${slot_pids[i]})")")
done
quarantined=$(cat "$tmp"/daemon-*.log | grep -c '"msg":"job quarantined: scheduled runs back off"' || true)
q_skips=$(psql_q -c "SELECT count(*) FROM entraprov.sync_runs WHERE status = 'skipped' AND error_summary ILIKE '%quarantin%'")
lost_lock=$(cat "$tmp"/daemon-*.log | grep -c '"msg":"job is running elsewhere; skipping"' || true)
lost_index=$(cat "$tmp"/daemon-*.log | grep -c '"msg":"occurrence already run by another worker; skipping"' || true)
others=$(psql_q -c "SELECT count(*) FROM entraprov.sync_runs WHERE pid NOT IN ($all_pids)")
running=$(psql_q -c "SELECT count(*) FROM entraprov.sync_runs WHERE status = 'running'")
nonfinal=$(psql_q -c "SELECT count(*) FROM entraprov.sync_operations o JOIN entraprov.sync_runs r ON r.id = o.run_id
                      WHERE o.status = 'pending' OR (o.status = 'planned' AND r.mode = 'apply')")
ops=$(psql_q -c "SELECT string_agg(action || ' ' || n, ', ' ORDER BY n DESC) FROM
                 (SELECT action, count(*) n FROM entraprov.sync_operations WHERE status = 'succeeded' GROUP BY action) a")
failed_ops=$(psql_q -c "SELECT count(*) FROM entraprov.sync_operations WHERE status = 'failed'")
failed_by=$(psql_q -c "SELECT coalesce(string_agg(k || ' ' || n, ', ' ORDER BY n DESC), 'none') FROM
                       (SELECT action || CASE WHEN http_status IS NULL THEN ' not sent' ELSE ' HTTP ' || http_status END k, count(*) n
                          FROM entraprov.sync_operations WHERE status = 'failed' GROUP BY 1) f")

# The history never loses a run: every run a daemon logged as started, and
# every run seen after a cycle, is still there, finished; the runs of the
# killed processes are interrupted with the reason.
jq -rR 'fromjson? | select(.msg == "run started") | .run_id' "$tmp"/daemon-*.log | sort -u >"$tmp/runs-logged.txt"
sort -u "$tmp/runs-seen.txt" >"$tmp/runs-seen-sorted.txt"
psql_q -c "SELECT id FROM entraprov.sync_runs WHERE status <> 'running'" | sort -u >"$tmp/runs-final.txt"
lost_logged=$(comm -23 "$tmp/runs-logged.txt" "$tmp/runs-final.txt" | wc -l)
lost_seen=$(comm -23 "$tmp/runs-seen-sorted.txt" "$tmp/runs-final.txt" | wc -l)
logged=$(wc -l <"$tmp/runs-logged.txt")
killed_pids=$(tr ',' '\n' <<<"$all_pids" | grep -v -x -e "${daemon_pids[0]}" -e "${daemon_pids[1]}" | paste -sd, -)
killed_runs=$(psql_q -c "SELECT coalesce(string_agg(status || ' ' || n, ', ' ORDER BY status), 'none') FROM
                         (SELECT status, count(*) n FROM entraprov.sync_runs WHERE pid IN (${killed_pids:-0}) AND status <> 'skipped' GROUP BY status) s")
interrupted_unexplained=$(psql_q -c "SELECT count(*) FROM entraprov.sync_runs WHERE status = 'interrupted' AND coalesce(error_summary, '') = ''")

sim "${sim_admin}users?tenant=$tenant" >"$tmp/sim-users.json"
sim "${sim_admin}counters" >"$tmp/sim-counters.json"
live=$(jq '[.[] | select(.Deleted | not)] | length' "$tmp/sim-users.json")
dup_emp=$(jq '[.[] | select(.Deleted | not) | .EmployeeID | select(. != "")] | group_by(.) | map(select(length > 1)) | length' "$tmp/sim-users.json")
dup_upn=$(jq '[.[] | .UserPrincipalName | ascii_downcase] | group_by(.) | map(select(length > 1)) | length' "$tmp/sim-users.json")
dup_created=$(jq '[.created // {} | to_entries[] | select(.value > 1)] | length' "$tmp/sim-counters.json")
# One account per person: the soak gives every person a display name of
# their own (User N, Hire N, Bad N, Contractor N) that no churn changes.
dup_person=$(jq --argjson ids "$unmanaged_json" '[.[] | select((.Deleted | not) and (.ID as $i | $ids | index($i) | not)) | .DisplayName]
                 | group_by(.) | map(select(length > 1) | .[0]) | length' "$tmp/sim-users.json")
# Everyone present after the initial load still has the same account.
changed_objects=$(jq -n --slurpfile before "$tmp/objects-before.json" --slurpfile users "$tmp/sim-users.json" --argjson ids "$unmanaged_json" '
	([$users[0][] | select((.Deleted | not) and (.ID as $i | $ids | index($i) | not)) | {(.DisplayName): .ID}] | add // {}) as $now
	| [$before[0] | to_entries[] | select($now[.key] != .value) | "\(.key): \(.value) -> \($now[.key])"]')
n_changed=$(jq length <<<"$changed_objects")
# Every source row of both jobs: exactly one live account with its UPN and
# the wanted attributes, enabled as wanted, under the wanted manager (when
# the manager is a row of the same source), in the wanted groups.
psql_q -c "SELECT coalesce(json_agg(json_build_object('job', job, 'external_id', external_id, 'upn', lower(user_principal_name),
             'manager_upn', (SELECT lower(m.user_principal_name) FROM entraprov.desired_users m WHERE job = 'soak' AND m.external_id = d.manager_external_id
                             UNION ALL SELECT lower(m.user_principal_name) FROM entraprov.desired_users_b m WHERE job = 'soakb' AND m.external_id = d.manager_external_id),
             'groups', groups, 'accountEnabled', account_enabled, 'displayName', display_name, 'employeeId', employee_id,
             'jobTitle', job_title, 'department', department, 'officeLocation', office_location, 'mobilePhone', mobile_phone,
             'usageLocation', usage_location, 'companyName', company_name, 'givenName', given_name, 'surname', surname)), '[]')
             FROM (SELECT 'soak' AS job, * FROM entraprov.desired_users UNION ALL SELECT 'soakb', * FROM entraprov.desired_users_b) d" >"$tmp/desired.json"
jq -n --slurpfile want "$tmp/desired.json" --slurpfile users "$tmp/sim-users.json" '
	[$users[0][] | select(.Deleted | not)] as $live
	| ($live | group_by(.UserPrincipalName | ascii_downcase) | map({key: (.[0].UserPrincipalName | ascii_downcase), value: .}) | from_entries) as $by
	| [$want[0][] | . as $w | ($by[$w.upn] // []) as $u
	   | if ($u | length) != 1 then {job: $w.job, external_id: $w.external_id, problem: "\($u | length) live accounts hold \($w.upn)"}
	     else $u[0] as $x
	       | ([("displayName", "employeeId", "jobTitle", "department", "officeLocation", "mobilePhone", "usageLocation", "companyName", "givenName", "surname") as $k
	           | select(($x.Properties[$k] // null) != $w[$k]) | "\($k) \($x.Properties[$k] // null | tojson) != \($w[$k] | tojson)"]
	          + (if $x.AccountEnabled != $w.accountEnabled then ["accountEnabled \($x.AccountEnabled)"] else [] end)
	          + (if $w.manager_upn != null and ($by[$w.manager_upn] // [] | map(.ID) | index($x.ManagerID)) == null then ["manager \($x.ManagerID) is not the account of \($w.manager_upn)"] else [] end)) as $attrs
	       | [($w.groups // [])[] | ascii_downcase | select(. as $g | ($x.Groups // []) | index($g) | not) | "not in group \(.)"] as $groups
	       | select(($attrs + $groups | length) > 0) | {job: $w.job, external_id: $w.external_id, problem: ($attrs + $groups | join("; ")),
	                               on_leave: ($w.accountEnabled | not), state_ok: ($x.AccountEnabled == $w.accountEnabled),
	                               groups_only: ($attrs | length == 0)}
	     end]' >"$tmp/desired-problems.json"
# A row on leave (account_enabled = false) whose account holds its UPN,
# disabled, with its latest attributes and manager (planOnLeave keeps them
# current during the leave) but not its latest groups: group changes made
# during the leave wait for the return, by design (internal/sync/plan.go
# planOnLeave says why). Counted and reported, not failed. An attribute or
# manager still stale on leave is a wrong row.
n_leave_stale=$(jq '[.[] | select(.on_leave and .state_ok and .groups_only)] | length' "$tmp/desired-problems.json")
jq '[.[] | select((.on_leave and .state_ok and .groups_only) | not)]' "$tmp/desired-problems.json" >"$tmp/desired-wrong.json"
n_wrong=$(jq length "$tmp/desired-wrong.json")
desired=$(jq length "$tmp/desired.json")
enabled_want=$(jq '[.[] | select(.accountEnabled)] | length' "$tmp/desired.json")
enabled=$(jq --argjson ids "$unmanaged_json" '[.[] | select((.Deleted | not) and .AccountEnabled and (.ID as $i | $ids | index($i) | not))] | length' "$tmp/sim-users.json")
# No account the worker does not manage was touched.
unmanaged_state >"$tmp/unmanaged-after.json"
unmanaged_diff=$(diff "$tmp/unmanaged-before.json" "$tmp/unmanaged-after.json" | head -n 20 || true)
# Every bad value failed its row alone: never sent (no operation of that
# user sent in that run), a reason naming the column, the run partial (not
# failed as a whole); and the fixed row converged (the checks above).
bad_rows=$(psql_q -c "SELECT count(*) FROM public.soak_bad")
bad_unreported=$(psql_q -F ' ' -c "SELECT b.job, b.external_id, b.col, b.since FROM public.soak_bad b
   WHERE NOT EXISTS (
     SELECT 1 FROM entraprov.sync_operations o JOIN entraprov.sync_runs r ON r.id = o.run_id
      WHERE r.job = b.job AND o.external_id = b.external_id AND o.status = 'failed' AND o.http_status IS NULL
        AND o.message LIKE '%' || b.col || '%' AND r.status = 'partial'
        AND NOT EXISTS (SELECT 1 FROM entraprov.sync_operations x WHERE x.run_id = o.run_id AND x.external_id = b.external_id AND x.http_status IS NOT NULL))")
bad_reason_sample=$(psql_q -c "SELECT left(o.message, 140) FROM entraprov.sync_operations o JOIN public.soak_bad b ON b.external_id = o.external_id
                                WHERE o.status = 'failed' AND o.http_status IS NULL AND NOT b.hire ORDER BY o.run_id DESC, o.seq DESC LIMIT 1")
# Every re-key and every hand-over is in the history: a rekey operation for
# the new id, an adopt operation of the new job. An adoption claims the
# account (its link) before its PATCH (migration 009): when a kill -9 ends
# that run, its adopt is recorded interrupted and the next run sends the
# rest as an update of the claimed account, so an adopt in any status, or
# the new job's link itself, is the hand-over's evidence.
rekeys_made=$(psql_q -c "SELECT count(*) FROM public.soak_rekeys")
rekeys_missing=$(psql_q -F ' ' -c "SELECT k.old, k.new FROM public.soak_rekeys k WHERE NOT EXISTS (
   SELECT 1 FROM entraprov.sync_operations o WHERE o.external_id = k.new AND o.action = 'rekey' AND o.status = 'succeeded')")
handovers=$(psql_q -c "SELECT count(*) FROM public.soak_handover")
adopts_missing=$(psql_q -F ' ' -c "SELECT h.external_id, h.to_job, h.cycle FROM public.soak_handover h WHERE NOT EXISTS (
   SELECT 1 FROM entraprov.sync_operations o JOIN entraprov.sync_runs r ON r.id = o.run_id
    WHERE r.job = h.to_job AND o.external_id = h.external_id AND o.action = 'adopt')
   AND NOT EXISTS (SELECT 1 FROM entraprov.directory_links l WHERE l.job = h.to_job AND l.external_id = h.external_id)")
handover_failures=$(psql_q -c "SELECT count(*) FROM entraprov.sync_operations WHERE status = 'failed' AND message LIKE '%is managed by job soak%'")
throttled=$(jq '.throttled' "$tmp/sim-counters.json")
steps=$(jq '.batch_steps' "$tmp/sim-counters.json")
injected=$(jq '.faults' "$tmp/sim-counters.json")
dropped=$(jq '.dropped' "$tmp/sim-counters.json")
share=$(share_429 "$throttled" "$steps")
duration=$((SECONDS - started))

note "runs $runs ($by_job; $by_status); occurrences run twice $twice; skipped occurrences $skipped"
note "runs per daemon slot: ${per_daemon[0]} (pids ${slot_pids[0]}) and ${per_daemon[1]} (pids ${slot_pids[1]}); by other processes $others; still running $running"
note "kills: $kills (SIGKILL, daemon restarted), $kills_mid_run with a run in progress; runs of killed processes: $killed_runs; $interrupted_runs run(s) waited past as interrupted"
note "history: $logged runs logged as started, $lost_logged of them missing or unfinished; $lost_seen run(s) seen after a cycle missing; $interrupted_unexplained interrupted without a reason"
note "quarantine: $quarantined time(s); $q_skips occurrence(s) skipped for it"
note "occurrences lost by a daemon: $lost_lock to the other's job lock (run in progress), $lost_index to the unique (job, scheduled_for) (run already done)"
note "directory: $live users ($enabled managed enabled; sources: $desired rows, $enabled_want enabled); duplicate employeeIds $dup_emp, UPNs $dup_upn, persons $dup_person; UPNs created twice $dup_created"
note "source rows without their account as wanted: $n_wrong; persons of the initial load whose account object changed: $n_changed"
note "rows on leave (disabled as wanted, attributes and manager current) whose groups changed during the leave and wait for the return: $n_leave_stale of $((desired - enabled_want))"
note "unmanaged users: ${#unmanaged_ids[@]}, $(if [[ -z "$unmanaged_diff" ]]; then echo "byte-identical to the start"; else echo CHANGED; fi)"
note "bad values: $bad_rows ($tot_bad in hires, $tot_badrows in existing rows), $(grep -c . <<<"${bad_unreported:-}" || true) without a failure of their row alone; e.g. \"$bad_reason_sample\""
note "re-keys: $rekeys_made, $(grep -c . <<<"${rekeys_missing:-}" || true) without a rekey operation; hand-overs: $handovers, $(grep -c . <<<"${adopts_missing:-}" || true) without an adoption ($handover_failures failed operations 'managed by job …' while they waited)"
note "operations succeeded by action: $ops"
note "failed operations $failed_ops ($failed_by); non-final operations $nonfinal"
note "graphsim: $steps batch steps, $injected injected 5xx, $dropped dropped answers, $throttled throttled (429 share $share)"
note "churn: $tot_hires hires (and $tot_bad invalid ones, fixed the next cycle), $tot_leavers leavers, $tot_rehires rehires, $tot_changes changes, $tot_moves manager moves, $tot_groups group changes; $tot_rekeys re-keys in place and $tot_rehired_new rehires under a new number, $tot_renumbered employee ids renumbered, $tot_swaps UPN swaps, $tot_chains UPN chains, $tot_to_b moves to soakb and $tot_to_a to soak ($tot_released links released by hand), $tot_badrows bad values in existing rows ($tot_fixed bad values fixed in all); faults in $faulted_cycles of $cycles cycles"
note "audits: $dirty_cycles of $cycles cycles with findings, $explained_total finding(s) in all, each explained by a failed operation of the cycle's run; $failed_runs run(s) failed as a whole; converged in $rounds final round(s)"

[[ "$twice" == 0 ]] || die "$twice scheduled occurrence(s) have two runs"
[[ "$running" == 0 ]] || die "$running run(s) still running after both daemons stopped"
((per_daemon[0] > 0 && per_daemon[1] > 0)) || die "runs per daemon slot ${per_daemon[0]} and ${per_daemon[1]}: want both > 0"
[[ "$others" == 0 ]] || die "$others run(s) by a process that is no daemon of the soak"
((logged > 0 && lost_logged == 0 && lost_seen == 0)) || die "the history lost runs: $lost_logged logged as started ($(comm -23 "$tmp/runs-logged.txt" "$tmp/runs-final.txt" | head -n 5 | paste -sd' ')), $lost_seen seen after a cycle"
[[ "$interrupted_unexplained" == 0 ]] || die "$interrupted_unexplained interrupted run(s) without a reason"
[[ "$dup_emp" == 0 && "$dup_upn" == 0 && "$dup_created" == 0 && "$dup_person" == 0 ]] || die "duplicates in graphsim: $dup_emp employeeIds, $dup_upn UPNs, $dup_person persons, $dup_created UPNs created twice"
((n_changed == 0)) || die "$n_changed person(s) of the initial load have another account now: $(jq -c '.[:5]' <<<"$changed_objects")"
((n_wrong == 0)) || die "$n_wrong source row(s) without their account as wanted: $(jq -c '.[:5]' "$tmp/desired-wrong.json")"
[[ "$enabled" == "$enabled_want" ]] || die "graphsim holds $enabled enabled managed users; the sources want $enabled_want"
[[ -z "$unmanaged_diff" ]] || die "an unmanaged user changed: $unmanaged_diff"
[[ -z "$bad_unreported" ]] || die "bad value(s) without a failure of their row alone (not sent, reason naming the column, run partial): $(head -n 5 <<<"$bad_unreported" | paste -sd';')"
[[ -z "$rekeys_missing" ]] || die "re-key(s) without a succeeded rekey operation: $(head -n 5 <<<"$rekeys_missing" | paste -sd';')"
[[ -z "$adopts_missing" ]] || die "hand-over(s) without an adoption by the new job: $(head -n 5 <<<"$adopts_missing" | paste -sd';')"
[[ "$nonfinal" == 0 ]] || die "$nonfinal operation(s) not final"

say "Soak passed in $duration s"
row="| $cycles-cycle soak, two daemons, two jobs, HR churn and kills | two \`worker run\` daemons on one configuration, jobs soak and soakb on one tenant on \`@every $every\`, $users + $contractors users (managers, 2 groups), ${#unmanaged_ids[@]} unmanaged users seeded; $cycles cycles of random churn (in all $tot_hires hires, $tot_leavers leavers, $tot_rehires rehires, $tot_changes attribute changes, $tot_moves manager moves, $tot_groups group changes; $tot_rekeys re-keys in place, $tot_rehired_new rehires under a new number, $tot_renumbered employee ids renumbered; $tot_swaps UPN swaps, $tot_chains UPN chains; $((tot_to_b + tot_to_a)) moves between the jobs, each old link released by hand the next cycle (README hand-over); $((tot_bad + tot_badrows)) bad values (usage location, UPN domain, job title length, group id) fixed 1–2 cycles later) with graphsim faults in $faulted_cycles cycles (2–10% 5xx and up to 2% dropped answers, or a ${storm_secs}-s storm of 30% 5xx and 5% drops; half after committing; $injected 5xx and $dropped drops injected) and $kills kill -9 of a daemon at a random instant ($kills_mid_run mid-run), restarted; seed $seed, ${duration} s | after each cycle's runs \`worker audit\` of both jobs (faults off): clean or each finding a user whose operation failed in that run; then all fixed and released: audits clean; one live account per person and the same object since the initial load; every source row's account with its UPN, attributes, enabled state, manager and groups; unmanaged users byte-identical; each bad value failed its row alone (not sent, reason naming the column, run partial); each re-key and adoption in history; no run lost or left running; occurrences with two runs; runs per daemon; non-final operations; SIGTERM exit codes | $runs runs ($by_job; $by_status), 0 occurrences run twice ($skipped skipped); daemon slots ran ${per_daemon[0]} and ${per_daemon[1]}; runs of killed processes: $killed_runs; $logged runs logged, 0 lost; quarantined $quarantined times; audits: $((cycles - dirty_cycles)) of $cycles cycles clean, $explained_total finding(s), all explained; converged in $rounds round(s); $failed_runs run(s) failed whole; operations succeeded (initial load included): $ops; $failed_ops failed ($failed_by); $live users ($enabled managed enabled = enabled source rows), 0 duplicates, 0 changed objects, 0 wrong rows ($n_leave_stale rows on leave with group changes waiting for the return, by design); 0 non-final operations; 429 share $share ($throttled of $steps steps); both daemons exit 0 on SIGTERM |"
if [[ -n "${SOAK_REPORT:-}" ]]; then
	printf '%s\n' "$row" >"$SOAK_REPORT"
	note "row written to $SOAK_REPORT"
fi
printf '%s\n' "$row"
