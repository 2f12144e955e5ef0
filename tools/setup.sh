#!/usr/bin/env bash
# Installs everything a node (with --test, the test suite; with --bench, also the benchmarks'
# reference, Postfix) needs on a fresh Debian machine.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
want_test=0
want_bench=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    --bench) want_test=1; want_bench=1 ;;
    *) echo "usage: $0 [--test] [--bench]" >&2; exit 2 ;;
  esac
done

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

pkgs="librrd-dev rrdtool pkg-config libcurl4-openssl-dev libssl-dev liblua5.4-dev"
if [ "$want_test" = 1 ]; then
  pkgs="$pkgs postgresql php-cli php-soap swaks libnet-ssleay-perl libio-socket-ssl-perl systemd"
  # pg_trgm, the subject text index on PostgreSQL (part of the server package on Debian 12;
  # named so that a distribution that splits it out installs it too).
  pkgs="$pkgs postgresql-contrib"
  # The console's browser tests: Debian's chromium and its WebDriver (Selenium drives them).
  pkgs="$pkgs chromium chromium-driver"
fi
if [ "$want_bench" = 1 ]; then
  # P1/P2 run Postfix beside the node, from its own throwaway config (tools/bench/p1_postfix.py);
  # "No configuration" keeps the package from setting up a system mail server.
  echo "postfix postfix/main_mailer_type select No configuration" | sudo_ debconf-set-selections
  pkgs="$pkgs postfix"
fi
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  sudo_ apt-get update -qq
  sudo_ apt-get install -y -qq --no-install-recommends $missing
fi

cd "$here"
python3 -m pip install -q --disable-pip-version-check -e ".[test]"
if [ "$want_test" = 1 ]; then
  # An unchanged client of the old API for the compatibility tests; its declared dependency
  # (suds-jurko) no longer builds, suds-community from the test extras stands in for it.
  python3 -m pip install -q --disable-pip-version-check --no-deps halonadm==1.0.0
fi
