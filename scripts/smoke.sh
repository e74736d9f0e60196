#!/usr/bin/env bash
# Smoke test of the README's quick start, on the built binaries:
#   1. start the service that `make run` starts, wait for /readyz;
#   2. curl every endpoint the README lists;
#   3. put the README's live-config example with etcdctl and see it in the
#      service's log within 1 s;
#   4. SIGINT, then exit 0 within the drain delay plus 1 s.
# Needs etcdctl (Debian's etcd-client) and curl. `make smoke` runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
log="$work/imdev.log"
pid=""
cleanup() {
	if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT
fail() {
	echo "smoke: FAIL: $*" >&2
	echo "---- service log ----" >&2
	cat "$log" >&2 || true
	exit 1
}
now_ms() { date +%s%3N; }

admin="127.0.0.1:9090"        # configs/dev/example/admin.json
drain_ms=1000                 # its drainDelay

make -s build
./bin/imdev -run-dir "$work/run" >"$log" 2>&1 &
pid=$!

# 1. ready
deadline=$(($(now_ms) + 60000))
until curl -fsS "http://$admin/readyz" >/dev/null 2>&1; do
	kill -0 "$pid" 2>/dev/null || fail "the service exited before it was ready"
	(($(now_ms) < deadline)) || fail "/readyz not 200 within 60s"
	sleep 0.1
done
echo "smoke: ready"

# 2. every endpoint the README lists
for path in /healthz /readyz /metrics /debug/pprof/; do
	code=$(curl -s -o /dev/null -w '%{http_code}' "http://$admin$path")
	[[ "$code" == 200 ]] || fail "GET $path answered $code"
	echo "smoke: GET $path 200"
done
curl -fsS "http://$admin/metrics" | grep -q '^health_status' || fail "/metrics has no health gauge"

# 3. the README's live-config example
[[ -f "$work/run/devstack.env" ]] || fail "no $work/run/devstack.env"
# shellcheck disable=SC1091
source "$work/run/devstack.env"
message="smoke test $$ says hi"
put_at=$(now_ms)
etcdctl put /config/dev/example/greeter "{\"message\":\"$message\",\"interval\":\"200ms\"}" >/dev/null ||
	fail "etcdctl put failed"
until grep -q "$message" "$log"; do
	(($(now_ms) - put_at <= 1000)) || fail "the change was not in the log within 1s"
	sleep 0.02
done
echo "smoke: live change in the log after $(($(now_ms) - put_at)) ms"

# 4. SIGINT: exit 0 within the drain delay plus 1s
stop_at=$(now_ms)
kill -INT "$pid"
rc=0
wait "$pid" || rc=$?
took=$(($(now_ms) - stop_at))
pid=""
((rc == 0)) || fail "exit code $rc after SIGINT"
((took <= drain_ms + 1000)) || fail "stop took ${took} ms, more than the drain delay plus 1s"
echo "smoke: SIGINT → exit 0 in ${took} ms"
echo "smoke: OK"
