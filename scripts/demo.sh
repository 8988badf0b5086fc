#!/usr/bin/env bash
# demo.sh — the one-command tour of entraprov (make demo).
#
# On a fresh machine: a throwaway PostgreSQL (scripts/with-postgres), the
# Graph emulator (bin/graphsim) with a certificate-authenticated app, 1,000
# sample desired users, then `worker check`, `worker plan`, a few scheduled
# cycles of `worker run` (@every 10s) with hires, changes and leavers applied
# between cycles, a SIGTERM, `worker history` and `worker show` of the last
# run. Everything it starts is stopped and removed at the end, whatever
# happens.
#
# Environment: DEMO_USERS (default 1000), DEMO_CYCLES (default 3),
# DEMO_KEEP=1 keeps the temporary directory (config, logs) for a look.
set -euo pipefail
export GOTOOLCHAIN="${GOTOOLCHAIN:-go1.27.3}" # see the Makefile: the Go release builds are made with

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Always a throwaway cluster: never write demo data into a DATABASE_URL the
# caller happens to have set.
if [[ "${ENTRAPROV_DEMO_INNER:-}" != 1 ]]; then
	exec env -u DATABASE_URL ENTRAPROV_DEMO_INNER=1 scripts/with-postgres -- "$0" "$@"
fi

users=${DEMO_USERS:-1000}
cycles=${DEMO_CYCLES:-3}

bold=$'\e[1m' dim=$'\e[2m' reset=$'\e[0m'
if [[ ! -t 1 ]]; then bold='' dim='' reset=''; fi
step=0
say() { step=$((step + 1)); printf '\n%s== %d. %s%s\n' "$bold" "$step" "$*" "$reset"; }
note() { printf '%s   %s%s\n' "$dim" "$*" "$reset"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/entraprov-demo.XXXXXX")
sim_pid='' worker_pid=''
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n "$worker_pid" ]] && kill -0 "$worker_pid" 2>/dev/null; then
		kill -TERM "$worker_pid" 2>/dev/null || true
		wait "$worker_pid" 2>/dev/null || true
	fi
	if [[ -n "$sim_pid" ]] && kill -0 "$sim_pid" 2>/dev/null; then
		kill -TERM "$sim_pid" 2>/dev/null || true
		wait "$sim_pid" 2>/dev/null || true
	fi
	if [[ $rc -ne 0 ]]; then
		printf '\ndemo failed (exit %d). Last worker log lines:\n' "$rc" >&2
		tail -n 20 "$tmp/worker.log" >&2 2>/dev/null || true
		tail -n 5 "$tmp/graphsim.log" >&2 2>/dev/null || true
	fi
	if [[ "${DEMO_KEEP:-}" == 1 ]]; then
		printf 'kept %s\n' "$tmp" >&2
	else
		rm -rf "$tmp"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --------------------------------------------------------------------------
say "Build bin/worker and bin/graphsim"
go build -o bin/worker ./cmd/worker
go build -o bin/graphsim ./cmd/graphsim
note "PostgreSQL (throwaway): ${DATABASE_URL%%\?*}"

# --------------------------------------------------------------------------
say "Start the Microsoft Graph emulator (token endpoint + Graph, TLS on loopback)"
mkdir -p "$tmp/certs"
bin/graphsim --cert-dir "$tmp/certs" --ca-file "$tmp/ca.pem" >"$tmp/graphsim.json" 2>"$tmp/graphsim.log" &
sim_pid=$!
for _ in $(seq 1 100); do
	[[ -s "$tmp/graphsim.json" ]] && break
	kill -0 "$sim_pid" 2>/dev/null || die "graphsim exited: $(cat "$tmp/graphsim.log")"
	sleep 0.1
done
[[ -s "$tmp/graphsim.json" ]] || die "graphsim printed nothing in 10s"
sim=$(head -n 1 "$tmp/graphsim.json")
# Our own compact JSON line: pull fields without requiring jq.
field() { grep -o "\"$1\":\"[^\"]*\"" <<<"$sim" | head -n "${2:-1}" | tail -n 1 | cut -d'"' -f4; }
authority=$(field authority_host)
graph=$(field graph_url)
ca=$(field ca_file)
tenant=$(grep -o '"tenants":\[{"id":"[^"]*"' <<<"$sim" | cut -d'"' -f6)
domain=$(grep -o '"domains":\["[^"]*"' <<<"$sim" | head -n 1 | cut -d'"' -f4)
client=$(field client_id)
cert=$(field certificate_file)
key=$(field key_file)
# Group ids, in seed order: All Staff, Engineering, Sales.
mapfile -t groups < <(grep -o '"groups":\[.*\]' <<<"$sim" | grep -o '"id":"[^"]*"' | cut -d'"' -f4)
[[ -n "$authority" && -n "$tenant" && -n "$client" && -n "$cert" && -n "$key" ]] || die "unexpected graphsim line: $sim"
note "authority $authority   graph $graph"
note "tenant $tenant ($domain), app $client signing in with certificate $(basename "$cert")"

# --------------------------------------------------------------------------
say "Write a configuration: one job, every 10 seconds, certificate sign-in"
metrics_port=$((20000 + RANDOM % 20000))
cat >"$tmp/config.yaml" <<EOF
database:
  url: "$DATABASE_URL"
metrics:
  listen: 127.0.0.1:$metrics_port
log:
  format: auto
  level: info
jobs:
  - name: contoso
    tenant_id: $tenant
    authority_host: $authority
    graph_url: $graph
    ca_file: $ca
    auth:
      method: certificate
      client_id: $client
      certificate_file: $cert
      key_file: $key
    schedule: "@every 10s"
    catch_up: false
    source: entraprov.desired_users
    allowed_domains: [$domain]
    leaver:
      action: disable
    change_budget:
      disables: {max_count: 100, max_percent: 10}
EOF
sed 's/^/   /' "$tmp/config.yaml" | grep -v '^\s*$'
worker() { bin/worker --config "$tmp/config.yaml" "$@"; }

# --------------------------------------------------------------------------
say "worker migrate up"
worker migrate up

# --------------------------------------------------------------------------
say "HR writes $users desired users into entraprov.desired_users (SQL is the mapping language)"
psql_q <<SQL
INSERT INTO entraprov.desired_users
       (external_id, user_principal_name, display_name, given_name, surname, job_title,
        department, office_location, company_name, employee_id, employee_type, usage_location,
        account_enabled, manager_external_id, groups)
SELECT 'E' || lpad(i::text, 5, '0'),
       lower(f.name || '.' || l.name || i) || '@$domain',
       f.name || ' ' || l.name,
       f.name, l.name,
       (ARRAY['Engineer','Analyst','Manager','Designer','Accountant'])[1 + i % 5],
       (ARRAY['Engineering','Finance','Sales','Operations','Design'])[1 + i % 5],
       (ARRAY['Paris','Lyon','Berlin','Madrid'])[1 + i % 4],
       'Contoso', i::text, 'Employee', 'FR', true,
       CASE WHEN i > 1 THEN 'E' || lpad(((i - 2) / 10 + 1)::text, 5, '0') END,
       CASE WHEN i % 5 = 0 THEN ARRAY['${groups[0]:-}', '${groups[1]:-}']
            ELSE ARRAY['${groups[0]:-}'] END
  FROM generate_series(1, $users) AS i
  CROSS JOIN LATERAL (SELECT (ARRAY['Alice','Bruno','Chloe','David','Emma','Farid','Gina','Hugo','Ines','Jules'])[1 + i % 10] AS name) f
  CROSS JOIN LATERAL (SELECT (ARRAY['Martin','Bernard','Dubois','Thomas','Robert','Petit','Durand','Leroy'])[1 + (i / 10) % 8] AS name) l;
-- empty group ids (emulator without groups) mean no membership
UPDATE entraprov.desired_users SET groups = array_remove(groups, '');
SQL
note "$(psql_q -c "SELECT count(*) || ' desired users, ' || count(*) FILTER (WHERE cardinality(groups) > 1) || ' in two groups' FROM entraprov.desired_users")"

# --------------------------------------------------------------------------
say "worker check: config, database, source columns, sign-in, granted permissions, Graph, clock"
worker check --checklist

# --------------------------------------------------------------------------
say "worker plan: what the first run would do (stored in history, nothing sent)"
worker plan --job contoso >"$tmp/plan.txt"
head -n 25 "$tmp/plan.txt"
if (($(wc -l <"$tmp/plan.txt") > 25)); then
	note "... $(wc -l <"$tmp/plan.txt") lines in all; the plan is also in history (worker history, worker show)"
fi

# --------------------------------------------------------------------------
say "worker run: the service, scheduled @every 10s (logs in $tmp/worker.log)"
# Not through the worker() function: $! must be the worker's own pid, so
# that SIGTERM reaches it and not a bash subshell.
bin/worker --config "$tmp/config.yaml" run --stop-timeout 20s >"$tmp/worker.log" 2>&1 &
worker_pid=$!

finished_runs() {
	psql_q -c "SELECT count(*) FROM entraprov.sync_runs WHERE job = 'contoso' AND mode = 'apply' AND status NOT IN ('running', 'skipped')"
}
wait_run() { # wait until more than $1 apply runs have finished, then show the last
	local before=$1 i
	for i in $(seq 1 180); do
		if (($(finished_runs) > before)); then
			psql_q -c "
SELECT '   run ' || r.id || ' (' || r.trigger || ', ' || to_char(r.scheduled_for, 'HH24:MI:SS') || '): ' || r.status
       || ' in ' || round(extract(epoch FROM r.finished_at - r.started_at)::numeric, 1) || 's, '
       || coalesce(s.counts, 'no changes') || ', ' || r.requests || ' Graph requests ('
       || r.batches || ' \$batch), ' || r.throttled || ' throttled'
  FROM entraprov.sync_runs r JOIN entraprov.run_summary s USING (id)
 WHERE r.job = 'contoso' AND r.mode = 'apply' AND r.status NOT IN ('running', 'skipped')
 ORDER BY r.id DESC LIMIT 1"
			psql_q -c "
SELECT '   (occurrence ' || to_char(scheduled_for, 'HH24:MI:SS') || ' skipped: ' || error_summary || ')'
  FROM entraprov.sync_runs WHERE job = 'contoso' AND status = 'skipped' AND id > $last_seen ORDER BY id"
			last_seen=$(psql_q -c "SELECT coalesce(max(id), 0) FROM entraprov.sync_runs")
			return 0
		fi
		kill -0 "$worker_pid" 2>/dev/null || die "worker run exited early"
		sleep 1
	done
	die "no run finished within 180s"
}
last_seen=0

for cycle in $(seq 1 "$cycles"); do
	done_before=$(finished_runs)
	note "waiting for scheduled run $cycle ..."
	wait_run "$done_before"
	case $cycle in
	1)
		note "HR: 25 hires, 40 changes (new titles and departments), 15 leavers"
		psql_q <<SQL
INSERT INTO entraprov.desired_users (external_id, user_principal_name, display_name, given_name, surname,
       job_title, department, company_name, employee_id, usage_location, manager_external_id)
SELECT 'E' || lpad(i::text, 5, '0'), 'new.hire' || i || '@$domain', 'New Hire ' || i, 'New', 'Hire ' || i,
       'Graduate', 'Engineering', 'Contoso', i::text, 'FR', 'E00001'
  FROM generate_series($users + 1, $users + 25) AS i;
UPDATE entraprov.desired_users SET job_title = 'Senior ' || job_title, department = 'Platform'
 WHERE external_id IN (SELECT external_id FROM entraprov.desired_users WHERE external_id > 'E00100' ORDER BY external_id LIMIT 40);
DELETE FROM entraprov.desired_users
 WHERE external_id IN (SELECT external_id FROM entraprov.desired_users WHERE external_id > 'E00500' ORDER BY external_id LIMIT 15);
SQL
		;;
	2)
		note "HR: 10 people go on leave (account_enabled = false), 5 leavers come back"
		psql_q <<SQL
UPDATE entraprov.desired_users SET account_enabled = false
 WHERE external_id IN (SELECT external_id FROM entraprov.desired_users WHERE external_id > 'E00700' ORDER BY external_id LIMIT 10);
INSERT INTO entraprov.desired_users (external_id, user_principal_name, display_name, given_name, surname, company_name, employee_id, usage_location)
SELECT 'E' || lpad(i::text, 5, '0'), 'returner' || i || '@$domain', 'Returner ' || i, 'Re', 'Turner', 'Contoso', i::text, 'FR'
  FROM generate_series(501, 505) AS i
ON CONFLICT (external_id) DO NOTHING;
SQL
		;;
	esac
done

# --------------------------------------------------------------------------
say "While it runs: /healthz and a few of the Prometheus metrics on 127.0.0.1:$metrics_port"
if command -v curl >/dev/null 2>&1; then
	note "/healthz: $(curl -fsS "http://127.0.0.1:$metrics_port/healthz" || echo unreachable)"
	curl -fsS "http://127.0.0.1:$metrics_port/metrics" |
		grep -E '^entraprov_(runs_total|operations_total\{[^}]*create|graph_throttled_total|last_success)' |
		sed 's/^/   /' || true
else
	note "(curl not installed: skipped)"
fi

# --------------------------------------------------------------------------
say "Stop the service with SIGTERM (what systemctl stop does)"
kill -TERM "$worker_pid"
set +e
wait "$worker_pid"
rc=$?
set -e
worker_pid=''
note "worker run exited with status $rc"
grep -h '"msg":"worker' "$tmp/worker.log" | tail -n 3 | sed 's/^/   /' || true
[[ $rc -eq 0 ]] || die "worker run exited $rc after SIGTERM"

# --------------------------------------------------------------------------
say "worker history"
worker history

last=$(psql_q -c "SELECT max(id) FROM entraprov.sync_runs WHERE job = 'contoso' AND mode = 'apply' AND status NOT IN ('running', 'skipped')")
say "worker show $last (the last run)"
worker show "$last" >"$tmp/show.txt"
head -n 40 "$tmp/show.txt"
if (($(wc -l <"$tmp/show.txt") > 40)); then note "... $(wc -l <"$tmp/show.txt") lines in all"; fi

say "Done"
note "Everything (PostgreSQL cluster, emulator, temporary files) is being removed."
note "Next: README.md (install under systemd, configuration reference), configs/."
