#!/usr/bin/env bash
# Installs the system programs the tests (or the benchmarks) drive: real clients and peers.
# Debian/Ubuntu with apt-get; as root, or with sudo when it is there.
set -euo pipefail
what=${1:-test}
case "$what" in
  test)  need=(curl dnsmasq tinyproxy danted ip nft) ;;
  bench) need=(curl wrk squid nginx) ;;
  *) echo "usage: $0 test|bench" >&2; exit 2 ;;
esac
declare -A pkg=([curl]=curl [ip]=iproute2 [nft]=nftables [dnsmasq]=dnsmasq-base [tinyproxy]=tinyproxy [danted]=dante-server [wrk]=wrk [squid]=squid [nginx]=nginx-light)
missing=()
for cmd in "${need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${pkg[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing: ${missing[*]} (install them with your package manager)" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
