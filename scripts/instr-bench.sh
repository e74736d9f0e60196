#!/usr/bin/env bash
# Instructions per op for the clog vs zap vs slog benchmarks, counted by
# valgrind's callgrind: unlike ns/op on a shared 2-core VM (±25% run to
# run), instruction counts repeat to within a fraction of a percent.
# Each benchmark runs at two iteration counts; the difference divided by the
# extra iterations cancels start-up cost.
#   usage: scripts/instr-bench.sh   (needs valgrind: apt-get install valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(mktemp -d)/clog.test
go test -c -o "$bin" ./modules/clog
lo=20000 hi=60000
# count retries: valgrind occasionally loses a Go process to a signal race.
count() {
  local n=""
  for _ in 1 2 3 4 5; do
    n=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" -test.run '^$' \
      -test.bench "$1" -test.benchtime "${2}x" -test.cpu 1 2>&1 >/dev/null |
      sed -n 's/.*Collected : \([0-9]*\).*/\1/p' || true)
    [ -n "$n" ] && { echo "$n"; return; }
  done
  echo "valgrind failed for $1" >&2; exit 1
}
printf '%-36s %12s\n' benchmark instr/op
for b in 'Info4Fields$/zap$' 'Info4Fields$/clog$' 'Info4Fields$/slog$' \
         'Info4FieldsModule/zap$' 'Info4FieldsModule/clog$' \
         'DisabledDebug4Fields/zap$' 'DisabledDebug4Fields/clog$' \
         'DisabledDebug4Fields/clog-check$' 'DisabledDebug4Fields/slog$'; do
  a=$(count "$b" $lo); z=$(count "$b" $hi)
  printf '%-36s %12d\n' "$b" $(( (z - a) / (hi - lo) ))
done
