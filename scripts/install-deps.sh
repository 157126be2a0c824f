#!/usr/bin/env bash
# Install what mysqlsts needs on a fresh Debian/Ubuntu machine: the MariaDB
# server and mariabackup (the mariadb flavor runs on the host's own programs),
# the MySQL 9.7 image (a Debian sid root filesystem the local runtime runs the
# mysql flavor's server containers in: scripts/mysql-rootfs.sh), dnsmasq for
# the local cluster DNS, socat for clone streams, nftables for the isolate
# fault (`drill --fault isolate` cuts a pod off with rules of its own), the
# linter shellcheck for the tests, and a virtualenv in .venv with mysqlsts and
# its test tools.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/apt-install.sh mariadb-server mariadb-client mariadb-backup dnsmasq-base socat nftables shellcheck
if [[ $(id -u) == 0 ]]; then
  scripts/mysql-rootfs.sh >/dev/null
else
  echo "install-deps: not root: the MySQL image (scripts/mysql-rootfs.sh) is not built; the mysql flavor" \
    "cannot run on the local runtime" >&2
fi

# The isolate fault tells a cut-off pod's own connections from its peers' by the pod's cgroup
# v2 (nftables `socket cgroupv2`). A cgroup v1 machine gets the v2 hierarchy mounted beside v1,
# with no controller in it (the "hybrid" layout systemd makes), as mysqlsts/platform/local/partition.py
# expects; without root, isolate refuses and says why.
if ! grep -q ' cgroup2 ' /proc/self/mounts && [[ $(id -u) == 0 ]]; then
  mkdir -p /sys/fs/cgroup/unified && mount -t cgroup2 none /sys/fs/cgroup/unified ||
    echo "install-deps: could not mount cgroup v2 at /sys/fs/cgroup/unified: the isolate fault will refuse" >&2
fi

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]' >&2
