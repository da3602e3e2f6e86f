#!/usr/bin/env bash
# Smoke test of the frozen binary alone: packaging/smoke.sh [dist/arcus]
#
# Copies the binary into an empty directory and runs it from there with a clean environment
# (no venv, no PYTHONPATH, a private ARCUS_DATA_DIR and ARCUS_SOCKET, its own HOME):
#   --version; `config list` names the shipped profiles and `config check` passes each one;
#   `serve` on port 0 with a metrics listener, routing by packaging/smoke-geo.mmdb
#   (route_geoip), runs on uvloop; `tenant add` through the daemon; curl through the proxy (a plain request and a
#   CONNECT tunnel) to the daemon's own /health; /metrics from prometheus-client; `ctl stats`
#   counts the tenant's requests; `ca init` (cryptography); `tui` started and quit under a
#   pseudo-terminal (when the binary has the command); `ctl shutdown --graceful` exits 0.
# Needs curl and script (util-linux). Every wait is bounded. Exit 0 and "smoke: ok" or one
# "smoke: FAIL ..." line with the daemon's log.
set -euo pipefail

BIN=$(realpath "${1:-dist/arcus}")
HERE=$(dirname "$(realpath "$0")")
[ -x "$BIN" ] || { echo "smoke: FAIL: no binary at $BIN (run make binary)" >&2; exit 1; }
for tool in curl script; do
  command -v "$tool" >/dev/null || { echo "smoke: FAIL: $tool is not installed (scripts/system-deps.sh installs it)" >&2; exit 1; }
done

W=$(mktemp -d /tmp/arcus-smoke.XXXXXX)
DAEMON=""
cleanup() {
  if [ -n "$DAEMON" ] && kill -0 "$DAEMON" 2>/dev/null; then kill "$DAEMON"; wait "$DAEMON" 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT
fail() {
  echo "smoke: FAIL: $*" >&2
  [ -s "$W/serve.log" ] && sed 's/^/  serve: /' "$W/serve.log" >&2
  exit 1
}
step() { printf 'smoke: %s\n' "$*"; }

mkdir -p "$W/bin" "$W/home" "$W/run"
cp "$BIN" "$W/bin/arcus"
cd "$W/bin"
[ "$(ls -A)" = "arcus" ] || fail "the binary's directory holds more than the binary"
export -n PYTHONPATH PYTHONHOME VIRTUAL_ENV 2>/dev/null || true
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV
export HOME="$W/home" PATH=/usr/local/bin:/usr/bin:/bin ARCUS_DATA_DIR="$W/data" ARCUS_SOCKET="$W/run/arcus.sock"
A=./arcus

# ---------------------------------------------------------------- without a daemon
version=$($A --version) || fail "--version exited $?"
[[ "$version" == "arcus "* ]] || fail "--version printed '$version'"
step "$version"

names=$($A config list | awk '{print $1}') || fail "config list exited $?"
for want in default edge school socks-gateway reverse; do
  grep -qx "$want" <<<"$names" || fail "config list does not name the shipped profile $want"
done
for name in $names; do
  out=$($A config check "$name") || fail "config check $name exited $?: $out"
  [[ "$out" == "<embedded:$name>: ok ("* ]] || fail "config check $name printed '$out'"
done
step "config check ok: $(echo $names)"

# ---------------------------------------------------------------- the daemon
$A config show default >/dev/null || fail "config show default exited $?"
# The destination (the daemon's own metrics listener on 127.0.0.1) is "ZZ" in smoke-geo.mmdb:
# a 200 through the proxy proves the MMDB reader works inside the binary (else: 403 from deny).
cp "$HERE/smoke-geo.mmdb" "$W/geo.mmdb"
cat >"$W/profile.yaml" <<YAML
servers:
  - name: http
    type: http_proxy
    listen: 127.0.0.1:0
    escaper: geo
escapers:
  - name: geo
    type: route_geoip
    mmdb: $W/geo.mmdb
    resolver: system
    rules:
      - countries: [ZZ]
        escaper: direct
    default: deny
  - name: direct
    type: direct_fixed
    resolver: system
  - name: deny
    type: dummy_deny
resolvers:
  - name: system
    type: system
metrics:
  listen: 127.0.0.1:0
YAML
$A serve --profile "$W/profile.yaml" >"$W/serve.log" 2>&1 &
DAEMON=$!
health=""
for _ in $(seq 200); do  # 20 s at most
  kill -0 "$DAEMON" 2>/dev/null || fail "serve exited"
  health=$($A ctl health --json 2>/dev/null) && break
  health=""
  sleep 0.1
done
[ -n "$health" ] || fail "serve did not answer ctl health within 20 s"
field() { grep -o "\"$1\": *\"[^\"]*\"" <<<"$2" | head -1 | sed 's/.*: *"\(.*\)"/\1/'; }
metrics=$(field metrics "$health")
proxy=$(grep -A2 '"listen"' <<<"$health" | grep -o '127\.0\.0\.1:[0-9]*' | head -1)
pid=$(grep -o '"pid": *[0-9]*' <<<"$health" | grep -o '[0-9]*$')
[ -n "$metrics" ] && [ -n "$proxy" ] && [ -n "$pid" ] || fail "ctl health lacks metrics, listen or pid: $health"
grep -q '/uvloop/' "/proc/$pid/maps" || fail "the daemon (pid $pid) runs without uvloop"
step "serve: proxy $proxy, metrics $metrics, pid $pid, on uvloop"

out=$($A tenant add smoke --source 127.0.0.1/32) || fail "tenant add exited $?: $out"
step "$out"

code=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -x "http://$proxy" "http://$metrics/health") || fail "curl through the proxy failed"
[ "$code" = 200 ] || fail "curl -x $proxy http://$metrics/health answered $code"
code=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -p -x "http://$proxy" "http://$metrics/health") || fail "curl through a CONNECT tunnel failed"
[ "$code" = 200 ] || fail "curl -p -x $proxy (CONNECT) answered $code"
exposition=$(curl -sS --max-time 10 "http://$metrics/metrics") || fail "curl http://$metrics/metrics failed"
grep -q '^# TYPE ' <<<"$exposition" || fail "/metrics is not Prometheus text"
step "curl through the proxy (routed by the MMDB) and a CONNECT tunnel: 200; /metrics ok"

stats=$($A ctl stats --json) || fail "ctl stats exited $?"
# the first "requests" after "tenants":{"smoke":{ is the tenant's (the keys are sorted)
requests=$(tr -d ' \n' <<<"$stats" | grep -o '"tenants":{"smoke":{.*' | grep -o '"requests":[0-9]*' | head -1 | grep -o '[0-9]*$' || true)
[ "${requests:-0}" -ge 2 ] || fail "ctl stats counts ${requests:-no} requests for tenant smoke: $stats"
$A ctl stats >/dev/null || fail "ctl stats (table) exited $?"
step "ctl stats: tenant smoke, $requests requests"

$A ca init >/dev/null || fail "ca init exited $?"
$A ca show >/dev/null || fail "ca show exited $?"
step "ca init and show ok"

# ---------------------------------------------------------------- the TUI under a pseudo-terminal
# tui_quits CMD: run CMD under script(1)'s pseudo-terminal of 80x24, wait (bounded) until it has
# switched to the alternate screen, press Ctrl+Q (Textual's quit) and wait for it to exit 0.
tui_quits() {
  local screen="" chunk="" tui_pid
  coproc TUI { exec script -qfec "stty cols 80 rows 24; exec $1" /dev/null 2>&1; }
  tui_pid=$TUI_PID
  for _ in $(seq 200); do  # up to 20 s of 0.1 s reads
    chunk=""
    IFS= read -r -t 0.1 -N 65536 -u "${TUI[0]}" chunk || true
    screen+="$chunk"
    [[ "$screen" == *$'\e[?1049h'* ]] && break
    kill -0 "$tui_pid" 2>/dev/null || break
  done
  if [[ "$screen" != *$'\e[?1049h'* ]]; then
    kill "$tui_pid" 2>/dev/null || true
    fail "$1 drew no screen within 20 s: $(tr -cd '[:print:]\n' <<<"${screen:0:400}")"
  fi
  printf '\021' >&"${TUI[1]}"
  # 30 s: a quit took over 10 s once in CI right after the build (cause not found; not seen in
  # 17 runs since, idle or with a core kept busy); 30 s still tells a hang from a slow exit
  for _ in $(seq 300); do
    kill -0 "$tui_pid" 2>/dev/null || break
    IFS= read -r -t 0.1 -N 65536 -u "${TUI[0]}" chunk || true
  done
  if kill -0 "$tui_pid" 2>/dev/null; then kill "$tui_pid"; fail "$1 did not quit on Ctrl+Q within 30 s"; fi
  wait "$tui_pid" || fail "$1 exited $? after Ctrl+Q"
}

if $A tui --help >/dev/null 2>&1; then
  tui_quits "$A tui"
  step "tui drew its screen under a pty and quit on Ctrl+Q"
else
  step "tui: skipped, this binary has no 'arcus tui' command"
fi

# ---------------------------------------------------------------- shutdown
$A ctl shutdown --graceful >/dev/null || fail "ctl shutdown exited $?"
for _ in $(seq 300); do kill -0 "$DAEMON" 2>/dev/null || break; sleep 0.1; done
kill -0 "$DAEMON" 2>/dev/null && fail "serve still runs 30 s after ctl shutdown --graceful"
rc=0; wait "$DAEMON" || rc=$?
DAEMON=""
[ "$rc" = 0 ] || fail "serve exited $rc after a graceful shutdown"
step "ok"
