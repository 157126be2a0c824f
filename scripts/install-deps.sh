#!/usr/bin/env bash
# Install what mysqlsts needs on a fresh Debian/Ubuntu machine: the MariaDB
# server and mariabackup (the flavor the local runtime runs here), dnsmasq for
# the local cluster DNS, socat for clone streams, shellcheck for the tests,
# and a virtualenv in .venv with mysqlsts and its test tools.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/apt-install.sh mariadb-server mariadb-client mariadb-backup dnsmasq-base socat shellcheck

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]' >&2
