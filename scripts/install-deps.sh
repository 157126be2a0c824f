#!/usr/bin/env bash
# Install what mysqlsts needs on a fresh Debian/Ubuntu machine: the MariaDB
# server and mariabackup (the flavor the local runtime runs here), dnsmasq for
# the local cluster DNS, socat for clone streams, shellcheck for the tests,
# and a virtualenv in .venv with mysqlsts and its test tools.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(mariadb-server mariadb-client mariadb-backup dnsmasq-base socat shellcheck)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=()
  ((EUID == 0)) || sudo=(sudo)
  echo "installing system packages: ${missing[*]}" >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]' >&2
