#!/usr/bin/env bash
# Installs the system programs the tests (or the benchmarks) drive: real clients and real peers.
# Debian/Ubuntu with apt-get; as root, or with sudo when it is there. Idempotent: installs only
# what is missing, and does nothing (silently) when everything is there.
#
#   test:  curl          the HTTP client every proxy test drives            (curl)
#          dnsmasq       a DNS server for the resolver tests                (dnsmasq-base: no service)
#          tinyproxy     an upstream HTTP proxy for the escaper tests       (tinyproxy-bin: no service,
#                                                                            else tinyproxy)
#          danted        an upstream SOCKS5 proxy for the escaper tests     (dante-server)
#          ip, nft       network namespaces and the tproxy rule             (iproute2, nftables)
#          unshare, nsenter, setpriv  namespaces, another uid               (util-linux)
#          script        a pseudo-terminal for the binary's TUI smoke step  (bsdutils)
#          systemd-analyze  `verify` of packaging/arcus.service             (systemd)
#          c-icap, clamd an ICAP server with ClamAV for the ICAP tests      (c-icap,
#                        (the tests build their own EICAR signatures;        libc-icap-mod-virus-scan,
#                        clamav-freshclam must never run)                    clamav-daemon, clamav)
#          chromium      a real browser through TLS interception           (chromium)
#          certutil      its NSS trust store, for the tenant's CA           (libnss3-tools)
#   bench: curl, wrk, squid, nginx (nginx-light)
#
# The tests start every peer themselves, on loopback ports of their own. Packages that would
# start a system service (tinyproxy on :8888, danted, squid, nginx) are installed with a
# policy-rc.d that forbids starting services, and on a systemd machine the services of the
# packages installed here are then disabled: nothing keeps running after this script.
set -euo pipefail
what=${1:-test}
case "$what" in
  test)  need=(curl dnsmasq tinyproxy danted ip nft unshare nsenter setpriv script systemd-analyze c-icap c-icap-virus-scan clamd sigtool chromium certutil) ;;
  bench) need=(curl wrk squid nginx c-icap c-icap-virus-scan clamd sigtool) ;;
  *) echo "usage: $0 test|bench" >&2; exit 2 ;;
esac
declare -A pkg=([curl]=curl [ip]=iproute2 [nft]=nftables [dnsmasq]=dnsmasq-base [tinyproxy]=tinyproxy
                [danted]=dante-server [unshare]=util-linux [nsenter]=util-linux [setpriv]=util-linux
                [script]=bsdutils [systemd-analyze]=systemd
                [wrk]=wrk [squid]=squid [nginx]=nginx-light [c-icap]=c-icap [clamd]=clamav-daemon [sigtool]=clamav
                [c-icap-virus-scan]=libc-icap-mod-virus-scan [chromium]=chromium [certutil]=libnss3-tools)
# The system services a package brings (stopped and disabled if this script installed it).
declare -A services=([tinyproxy]=tinyproxy [dante-server]=danted [squid]=squid [nginx-light]=nginx [c-icap]=c-icap
                     [clamav-daemon]=clamav-daemon [clamav]=clamav-freshclam)

missing=()
for cmd in "${need[@]}"; do
  if [ "$cmd" = c-icap-virus-scan ]; then  # a module, not a program
    [ -e /usr/lib/x86_64-linux-gnu/c_icap/virus_scan.so ] || [ -e /usr/lib/c_icap/virus_scan.so ] \
      || ls /usr/lib/*/c_icap/virus_scan.so >/dev/null 2>&1 || missing+=("${pkg[$cmd]}")
    continue
  fi
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ] && [ ! -x "/sbin/$cmd" ]; then
    p=${pkg[$cmd]}
    [[ " ${missing[*]-} " == *" $p "* ]] || missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing: ${missing[*]} (install them with your package manager; the tests start them themselves)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "missing: ${missing[*]}; run this script as root to install them" >&2; exit 1; }
  SUDO=sudo
fi
$SUDO apt-get update -qq

# Debian 12+ splits tinyproxy: tinyproxy-bin is the program alone, no service.
for i in "${!missing[@]}"; do
  if [ "${missing[$i]}" = tinyproxy ] \
     && apt-cache policy tinyproxy-bin 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    missing[$i]=tinyproxy-bin
  fi
done
echo "installing ${missing[*]} (programs the ${what} run drives; no service is left running)" >&2

# No service may start during the install (dante-server has no service-less split package).
policy=/usr/sbin/policy-rc.d
own_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# written by arcus scripts/system-deps.sh during an install; removed after it\nexit 101\n' \
    | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  own_policy=1
fi
cleanup() { if [ -n "$own_policy" ]; then $SUDO rm -f "$policy"; fi; }
trap cleanup EXIT
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# On systemd, a package's service is enabled at install even when it was not started: disable
# the ones installed here (a service the operator had before is left alone).
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  for p in "${missing[@]}"; do
    unit=${services[$p]-}
    if [ -n "$unit" ] && systemctl list-unit-files "$unit.service" >/dev/null 2>&1; then
      $SUDO systemctl disable --now "$unit.service" >/dev/null 2>&1 || true
      echo "disabled the $unit service that $p installs (the tests run their own $unit)" >&2
    fi
  done
fi
