#!/usr/bin/env bash
# Install what mysqlsts needs on a fresh Debian/Ubuntu machine: the MariaDB
# server and mariabackup (the flavor the local runtime runs here), dnsmasq for
# the local cluster DNS, socat for clone streams, nftables for the isolate
# fault (`drill --fault isolate` cuts a pod off with rules of its own), the
# linter shellcheck for the tests, and a virtualenv in .venv with mysqlsts and
# its test tools.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/apt-install.sh mariadb-server mariadb-client mariadb-backup dnsmasq-base socat nftables shellcheck

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]' >&2
