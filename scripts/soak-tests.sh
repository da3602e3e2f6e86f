#!/usr/bin/env bash
# Runs the test suite N times in a row with the other core kept busy, as a loaded CI machine
# would, and stops at the first red run. One line per run.
#
#   scripts/soak-tests.sh N [PYTEST ARGS...]
#   scripts/soak-tests.sh 5                                  # the whole suite, 5 times
#   scripts/soak-tests.sh 1 tests/unit/limit -k bucket       # a part of it
#
# The load is a Python busy loop pinned to the last CPU (taskset), bounded by `timeout` so it
# can never outlive this script, and stopped by its pid when the script ends. With CI=true in
# the environment, tests needing a missing system program fail instead of skipping (as .ci/run).
# Each run's full output is kept in $SOAK_DIR (default: a new temp dir), named run-K.log.
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { echo "usage: $0 N [PYTEST ARGS...]   (N >= 1 runs of the suite, the other core busy)" >&2; exit 2; }
[ $# -ge 1 ] || usage
n=$1; shift
[[ "$n" =~ ^[1-9][0-9]*$ ]] || usage
py=.venv/bin/python
[ -x "$py" ] || { echo "error: no $py: run make setup first" >&2; exit 1; }
logs=${SOAK_DIR:-$(mktemp -d -t arcus-soak-XXXXXX)}
mkdir -p "$logs"

cpus=$(nproc)
busy_cpu=$((cpus - 1))
run_bound=${SOAK_RUN_TIMEOUT:-1800}  # seconds one run may take before it counts as red
# The load: bounded by timeout to all the runs' worst case, pinned to one CPU when there are two or more.
load_bound=$(( n * run_bound + 60 ))
pin=()
if [ "$cpus" -ge 2 ] && command -v taskset >/dev/null 2>&1; then pin=(taskset -c "$busy_cpu"); fi
"${pin[@]}" timeout "$load_bound" "$py" -c 'while True: pass' &
load_pid=$!
stop_load() { kill "$load_pid" 2>/dev/null || true; wait "$load_pid" 2>/dev/null || true; }
trap stop_load EXIT
where=${pin:+"CPU $busy_cpu"}
echo "soak: $n run(s) of pytest ${*:-(whole suite)}; load pid $load_pid busy on ${where:-a shared CPU}; logs in $logs"

for k in $(seq 1 "$n"); do
  log="$logs/run-$k.log"
  started=$(date +%s)
  set +e
  timeout "$run_bound" "$py" -m pytest -q -p no:cacheprovider "$@" >"$log" 2>&1
  rc=$?
  set -e
  took=$(( $(date +%s) - started ))
  summary=$( { grep -E '^(=+ )?[0-9]+ (passed|failed|error|deselected)|no tests ran' "$log" || true; } | tail -1 \
            | sed 's/^=* *//; s/ *=*$//')
  if [ "$rc" -eq 0 ]; then
    echo "run $k/$n: green in ${took}s: ${summary:-?}"
  else
    [ "$rc" -eq 124 ] && summary="timed out after ${run_bound}s"
    echo "run $k/$n: RED (exit $rc) in ${took}s: ${summary:-see $log}; failures:"
    grep -E '^(FAILED|ERROR) ' "$log" | head -20 | sed 's/^/  /' || true
    echo "soak: stopped at the first red run; full output in $log"
    exit 1
  fi
done
echo "soak: $n of $n runs green"
