#!/usr/bin/env bash
# A Docker engine that can run kind's privileged node containers: install
# Debian's docker.io when there is none, start dockerd when none answers.
#
# On a host whose capability bounding set lacks CAP_SYS_RESOURCE (some VMs),
# Docker cannot start --privileged containers; the dockerd started here then
# uses scripts/kind/runc-wrapper as its default runtime. A daemon that already
# runs is used as it is, with a clear error when it cannot run kind's nodes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=SCRIPTDIR/lib.sh
source scripts/kind/lib.sh

bounding_lacks_sys_resource() {
  local capbnd
  capbnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
  (((0x$capbnd >> 24 & 1) == 0))
}

command -v dockerd >/dev/null 2>&1 || scripts/apt-install.sh docker.io
scripts/apt-install.sh jq  # the runc wrapper edits OCI specs with it

if docker info >/dev/null 2>&1; then
  if bounding_lacks_sys_resource && [[ $(docker info --format '{{.DefaultRuntime}}') != mysqlsts-runc ]]; then
    echo "${0##*/}: this host cannot grant CAP_SYS_RESOURCE, so the running dockerd cannot start kind's privileged" \
      "nodes; restart it with: dockerd --add-runtime mysqlsts-runc=$KIND_BIN/runc-wrapper --default-runtime mysqlsts-runc" >&2
    exit 1
  fi
  exit 0
fi

mkdir -p "$KIND_BIN"
args=()
if bounding_lacks_sys_resource; then
  install -m 0755 scripts/kind/runc-wrapper "$KIND_BIN/runc-wrapper"
  args+=(--add-runtime "mysqlsts-runc=$KIND_BIN/runc-wrapper" --default-runtime mysqlsts-runc)
fi
log "starting dockerd ${args[*]}"
# Detached from this script's process group and stdio: the daemon outlives it.
setsid nohup dockerd "${args[@]}" >"$KIND_CACHE/dockerd.log" 2>&1 </dev/null &
echo $! >"$KIND_CACHE/dockerd.pid"
for _ in $(seq 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "${0##*/}: dockerd did not answer within 60 s; its log: $KIND_CACHE/dockerd.log" >&2
tail -n 20 "$KIND_CACHE/dockerd.log" >&2
exit 1
