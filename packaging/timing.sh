#!/usr/bin/env bash
# Start-up time of a built arcus: packaging/timing.sh [BINARY] [RUNS]   (default dist/arcus, 20)
#
# Starts a daemon of the same binary on port 0 with a private data dir and socket, then times
# RUNS runs each of `arcus --version` and `arcus ctl stats` (output discarded) and prints the
# wall-clock minimum and median and the median CPU time (user + system, children included) in
# milliseconds. On a shared machine compare builds by the wall minimum and the CPU median: the
# wall median mostly says how busy the machine was.
set -euo pipefail
BIN=$(realpath "${1:-dist/arcus}")
RUNS=${2:-20}
W=$(mktemp -d /tmp/arcus-timing.XXXXXX)
DAEMON=""
cleanup() {
  if [ -n "$DAEMON" ] && kill -0 "$DAEMON" 2>/dev/null; then kill "$DAEMON"; wait "$DAEMON" 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT
export ARCUS_DATA_DIR="$W/data" ARCUS_SOCKET="$W/arcus.sock"
printf 'servers:\n  - name: http\n    type: http_proxy\n    listen: 127.0.0.1:0\n    escaper: deny\nescapers:\n  - name: deny\n    type: dummy_deny\n' >"$W/p.yaml"
"$BIN" serve --profile "$W/p.yaml" >"$W/log" 2>&1 &
DAEMON=$!
for _ in $(seq 200); do "$BIN" ctl health >/dev/null 2>&1 && break; sleep 0.1; done
"$BIN" ctl health >/dev/null || { cat "$W/log" >&2; exit 1; }

measure() {
  local walls=() cpus=() out w c
  for _ in $(seq "$RUNS"); do
    out=$( { TIMEFORMAT='%R %U %S'; time "$BIN" "$@" >/dev/null; } 2>&1 | tail -1 )
    read -r w u s <<<"$out"
    walls+=("$(awk -v x="$w" 'BEGIN{printf "%d", x*1000}')")
    cpus+=("$(awk -v u="$u" -v s="$s" 'BEGIN{printf "%d", (u+s)*1000}')")
  done
  w=($(printf '%s\n' "${walls[@]}" | sort -n)); c=($(printf '%s\n' "${cpus[@]}" | sort -n))
  printf '%-16s wall min %4d ms, median %4d ms; cpu median %4d ms  (%d runs)\n' \
    "arcus $*" "${w[0]}" "${w[$((RUNS / 2))]}" "${c[$((RUNS / 2))]}" "$RUNS"
}
echo "$BIN ($(stat -c %s "$BIN") bytes), load average $(cut -d' ' -f1-3 /proc/loadavg)"
measure --version
measure ctl stats
