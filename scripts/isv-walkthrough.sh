#!/usr/bin/env bash
# isv-walkthrough.sh — the README's "Many tenants, one app" section played
# by hand, as an ISV's operator would, and checked.
#
# One multi-tenant app, one shared source, customer tenants as rows of
# isv.tenants (configs/tenants.example.sql): contoso consented with every
# role, fabrikam without GroupMember.ReadWrite.All, northwind not at all;
# woodgrove is added by an INSERT while `worker run` runs, and fabrikam is
# disabled. Against a throwaway PostgreSQL and the Graph emulator (bin/).
# Each step checks what an operator would read (states, the admin-consent
# URL, exit codes) and the client secret is looked for in every output.
# Exits non-zero at the first expectation that fails; about 30 s.
#
# Environment: WALK_KEEP=1 keeps the temporary directory for a look.
set -euo pipefail
export GOTOOLCHAIN="${GOTOOLCHAIN:-go1.27.3}"

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Always a throwaway cluster: never write into a DATABASE_URL the caller has.
if [[ "${ENTRAPROV_WALK_INNER:-}" != 1 ]]; then
	exec env -u DATABASE_URL ENTRAPROV_WALK_INNER=1 scripts/with-postgres -- "$0" "$@"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/entraprov-isv.XXXXXX")
sim_pid='' worker_pid=''
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	for p in "$worker_pid" "$sim_pid"; do
		if [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null; then
			kill -TERM "$p" 2>/dev/null || true
			wait "$p" 2>/dev/null || true
		fi
	done
	if [[ $rc -ne 0 ]]; then
		printf '\nisv-walkthrough failed (exit %d). Last lines of the worker daemon log:\n' "$rc" >&2
		tail -n 15 "$tmp/run.log" >&2 2>/dev/null || true
	fi
	if [[ "${WALK_KEEP:-}" == 1 ]]; then printf 'kept %s\n' "$tmp" >&2; else rm -rf "$tmp"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
say() { printf '\n== %s\n' "$*"; }
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -At "$DATABASE_URL" "$@"; }

# w ARGS...: run the worker as the operator would, print what it printed,
# keep it in $out and its exit code in $rc (every output is kept for the
# secret check at the end).
n=0
w() {
	n=$((n + 1))
	printf '\n$ worker %s\n' "$*"
	rc=0
	bin/worker "$@" >"$tmp/out.$n" 2>&1 || rc=$?
	out=$(cat "$tmp/out.$n")
	cut -c1-300 "$tmp/out.$n"
	printf '[exit %d]\n' "$rc"
}
want_rc() { [[ $rc -eq $1 ]] || fail "worker exited $rc; want $1"; }
has() { grep -qF -- "$1" <<<"$out" || fail "the output lacks: $1"; }
lacks() { if grep -qF -- "$1" <<<"$out"; then fail "the output has: $1"; fi; }
# row JOB STATE: the table line of JOB in `worker tenants` shows STATE.
row() { grep -E "^$1 " <<<"$out" | grep -qF "  $2  " || fail "worker tenants: $1 is not '$2'"; }

say "Build bin/worker and bin/graphsim"
go build -o bin/worker ./cmd/worker
go build -o bin/graphsim ./cmd/graphsim

app=e5e5e5e5-e5e5-4e5e-8e5e-e5e5e5e5e5e5
contoso=aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa   # the app's home tenant, every role
fabrikam=bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb  # User.ReadWrite.All only
northwind=cccccccc-cccc-4ccc-8ccc-cccccccccccc # never consented
woodgrove=dddddddd-dddd-4ddd-8ddd-dddddddddddd # consented, onboarded later
roles='["User.ReadWrite.All","GroupMember.ReadWrite.All","User-LifeCycleInfo.ReadWrite.All"]'
staff_c=11111111-0000-4000-8000-000000000001
staff_f=22222222-0000-4000-8000-000000000002

say "Start the emulator: four tenants, one multi-tenant app"
cat >"$tmp/seed.json" <<EOF
{"tenants":[
 {"id":"$contoso","domains":["contoso.example"],"groups":[{"id":"$staff_c","display_name":"Staff"}],
  "apps":[{"client_id":"$app","display_name":"ISV provisioning","multi_tenant":true,"roles":$roles,
           "consent":{"$fabrikam":["User.ReadWrite.All"],"$woodgrove":$roles}}]},
 {"id":"$fabrikam","domains":["fabrikam.example"],"groups":[{"id":"$staff_f","display_name":"Staff"}]},
 {"id":"$northwind","domains":["northwind.example"]},
 {"id":"$woodgrove","domains":["woodgrove.example"]}]}
EOF
# --write-config writes the client secret to a 0600 file beside it; the
# config below is the ISV example's, pointed at the emulator.
bin/graphsim --seed "$tmp/seed.json" --latency none --cert-dir "$tmp/certs" \
	--write-config "$tmp/graphsim.yaml" >"$tmp/graphsim.json" 2>"$tmp/graphsim.log" &
sim_pid=$!
for _ in $(seq 1 100); do
	[[ -s "$tmp/graphsim.json" ]] && break
	kill -0 "$sim_pid" 2>/dev/null || fail "graphsim exited: $(cat "$tmp/graphsim.log")"
	sleep 0.1
done
sim=$(head -n 1 "$tmp/graphsim.json")
authority=$(jq -r .authority_host <<<"$sim")
graph=$(jq -r .graph_url <<<"$sim")
ca=$(jq -r .ca_file <<<"$sim")
secret=$(cat "$tmp/graphsim-client-secret")
[[ -n "$secret" && "$authority" == https://* ]] || fail "unexpected graphsim line: $sim"

metrics_port=$((20000 + RANDOM % 20000))
sed -e '/^database:/,/^$/d' \
	-e "s|^  refresh: 1m|  refresh: 1s|" \
	-e "s|^    source: isv.desired_users.*|&\n    authority_host: $authority\n    graph_url: $graph\n    ca_file: $ca|" \
	-e "s|client_id: 00000000-0000-0000-0000-000000000000.*|client_id: $app|" \
	-e "s|client_secret: {credential: graph-secret}.*|client_secret: {file: $tmp/graphsim-client-secret}|" \
	-e 's|schedule: "CRON_TZ=UTC 0 2 \* \* \*"|schedule: "@every 5s"|' \
	-e 's|jitter: 30m.*|jitter: 0s|' \
	configs/isv-tenants.example.yaml >"$tmp/config.yaml"
printf 'metrics:\n  listen: 127.0.0.1:%d\n' "$metrics_port" >>"$tmp/config.yaml"
export ENTRAPROV_CONFIG="$tmp/config.yaml"
grep -qF "client_id: $app" "$tmp/config.yaml" && grep -qF 'authority_host:' "$tmp/config.yaml" ||
	fail "configs/isv-tenants.example.yaml changed shape: the walkthrough's edits did not apply"

say "Schema, the tenants relation and the shared source (configs/tenants.example.sql)"
w migrate up
want_rc 0
psql_q -f configs/tenants.example.sql
w config validate
want_rc 0
has "each row of isv.tenants"
lacks "(in )"
psql_q <<EOF
INSERT INTO isv.tenants (tenant_id, name, scope, allowed_domains) VALUES
 ('$contoso', 'contoso', 'contoso', '{contoso.example}'),
 ('$fabrikam', 'fabrikam', 'fabrikam', '{fabrikam.example}'),
 ('$northwind', 'northwind', 'northwind', '{northwind.example}');
INSERT INTO isv.desired_users (tenant_scope, external_id, user_principal_name, display_name, usage_location, groups) VALUES
 ('contoso', 'E1', 'ada@contoso.example', 'Ada Lovelace', 'GB', '{$staff_c}'),
 ('contoso', 'E2', 'bob@contoso.example', 'Bob Babbage', 'GB', '{}'),
 ('fabrikam', 'E1', 'cy@fabrikam.example', 'Cy Young', 'US', '{$staff_f}'),
 ('fabrikam', 'E2', 'di@fabrikam.example', 'Di Prince', 'US', '{}'),
 ('northwind', 'E1', 'ed@northwind.example', 'Ed North', 'US', '{}'),
 ('woodgrove', 'E1', 'fay@woodgrove.example', 'Fay Wood', 'US', '{}');
EOF

say "Preflight: every tenant"
w check
want_rc 1
has "template over isv.tenants: 3 tenant(s) run, 0 disabled, 0 refused"
has "missing application permission GroupMember.ReadWrite.All"
has "(AADSTS700016)"
# The admin-consent URL is the authority's /{tenant}/adminconsent page.
has "${authority}${northwind}/adminconsent?client_id=${app}"
has "${authority}${fabrikam}/adminconsent?client_id=${app}"
# Application.Read.All is asked where the app is registered, not of a customer.
has "in the tenant where the app is registered"
# Advice names keys of the file: a tenant has none of its own, the template has.
has "set jobs[isv].allowed_groups"
lacks "jobs[isv@"

say "The onboarding view"
w tenants
want_rc 0
row isv@contoso ok
row isv@fabrikam "missing roles"
row isv@northwind "no consent"
has "isv@northwind:"
w tenants --json
want_rc 0
[[ $(jq -r '[.[] | .job + "=" + .state] | join(",")' <<<"$out") == "isv@contoso=ok,isv@fabrikam=missing roles,isv@northwind=no consent" ]] ||
	fail "tenants --json states: $(jq -c '[.[] | .state]' <<<"$out")"
[[ $(jq -r '.[] | select(.name == "northwind") | .last_sign_in.consent_url' <<<"$out") == "${authority}${northwind}/adminconsent?client_id=${app}" ]] ||
	fail "tenants --json: northwind's consent_url"

say "One run per tenant, by hand"
w sync --job isv@contoso
want_rc 0
has "status    succeeded"
has "create=2 group_add=1 succeeded=3"
w sync --job isv@fabrikam
want_rc 0
has "status    partial"
has "group_add: Insufficient privileges"
w sync --job isv@northwind
want_rc 1
has "an administrator of that tenant must first consent to it by opening ${authority}${northwind}/adminconsent?client_id=${app}"
w sync --job isv
want_rc 2
has "is a template, not a job"

say "The daemon: a tenant added by INSERT, one disabled"
bin/worker run >"$tmp/run.log" 2>&1 &
worker_pid=$!
# wait_for WHAT SECONDS SQL: poll until SQL answers t.
wait_for() {
	local i
	for i in $(seq 1 $(($2 * 5))); do
		[[ $(psql_q -c "$3") == t ]] && return 0
		kill -0 "$worker_pid" 2>/dev/null || fail "worker run exited while waiting for $1"
		sleep 0.2
	done
	fail "waited $2 s for $1"
}
wait_for "a scheduled run of isv@contoso" 15 \
	"SELECT count(*) > 0 FROM entraprov.sync_runs WHERE job = 'isv@contoso' AND trigger = 'schedule' AND status <> 'running'"
psql_q -c "INSERT INTO isv.tenants (tenant_id, name, scope, allowed_domains) VALUES ('$woodgrove', 'woodgrove', 'woodgrove', '{woodgrove.example}')"
wait_for "isv@woodgrove's first run" 20 \
	"SELECT count(*) > 0 FROM entraprov.sync_runs WHERE job = 'isv@woodgrove' AND status = 'succeeded'"
psql_q -c "UPDATE isv.tenants SET enabled = false WHERE name = 'fabrikam'"
for _ in $(seq 1 50); do grep -q 'removed.*isv@fabrikam' "$tmp/run.log" && break; sleep 0.2; done
grep -q 'removed.*isv@fabrikam' "$tmp/run.log" || fail "the daemon did not drop isv@fabrikam within 10 s"
disabled_at=$(psql_q -c "SELECT now()")
# One more cycle of the others, then stop.
wait_for "another cycle of isv@contoso" 15 \
	"SELECT count(*) > 0 FROM entraprov.sync_runs WHERE job = 'isv@contoso' AND started_at > '$disabled_at' AND status <> 'running'"
kill -TERM "$worker_pid"
rc=0
wait "$worker_pid" || rc=$?
worker_pid=''
[[ $rc -eq 0 ]] || fail "worker run exited $rc on SIGTERM"
grep -v -e 'msg=progress' -e '"msg":"progress"' "$tmp/run.log" | cut -c1-220
[[ $(psql_q -c "SELECT count(*) FROM entraprov.sync_runs WHERE job = 'isv@fabrikam' AND started_at > '$disabled_at'") == 0 ]] ||
	fail "isv@fabrikam ran after it was disabled"
grep -q '"added":\["isv@woodgrove"\]' "$tmp/run.log" || fail "the daemon did not log isv@woodgrove as added"
if grep -q "could not read the client secret's expiry" "$tmp/run.log"; then
	fail "the daemon blamed a tenant's sign-in for the unknown secret expiry"
fi

say "What the operator reads afterwards"
w tenants
want_rc 0
row isv@contoso ok
row isv@fabrikam disabled
row isv@northwind "no consent"
row isv@woodgrove ok
w history --job isv@woodgrove
want_rc 0
has "create=1 succeeded=1"
w history
want_rc 0
w show 2 --status failed
want_rc 0
has "Authorization_RequestDenied"
w show 1
want_rc 0
has "ada@contoso.example"

say "No secret in any output"
if grep -rlF -- "$secret" "$tmp"/out.* "$tmp/run.log" "$tmp/graphsim.log"; then
	fail "the client secret was printed"
fi
printf '\nisv-walkthrough: every expectation held\n'
