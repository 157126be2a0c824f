#!/usr/bin/env bash
# Build the MySQL server's image here: a Debian sid root filesystem with
# mysql-server and mysql-client (MySQL 9.7 LTS; bookworm has no MySQL, and sid
# packages must never be installed into the host: they pull a newer libc).
# The local runtime runs the server image's containers in it (chrooted, with the
# pod's volumes bound in: mysqlsts/platform/local/images.py), and the kind
# build imports the same tree as the cluster's MySQL image.
#
# Cached outside the repository, keyed by the version: a second run builds
# nothing. Prints the root filesystem's path.
#   MYSQL_DEBIAN_VERSION  the mysql-server package version sid must serve
#   MYSQLSTS_CACHE        (default ${XDG_CACHE_HOME:-~/.cache}/mysqlsts)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MYSQL_DEBIAN_VERSION=${MYSQL_DEBIAN_VERSION:-9.7.4-2}
MYSQL_VERSION=${MYSQL_DEBIAN_VERSION%%-*}
# The reference the chart's default values name (images.mysql.server).
IMAGE_REF=mysql:$MYSQL_VERSION
CACHE=${MYSQLSTS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mysqlsts}
ROOTFS=$CACHE/rootfs/mysql-$MYSQL_DEBIAN_VERSION-sid
STORE=$CACHE/images # the local runtime's image store: one entry per image reference
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=mysql-server,mysql-client,socat,procps

log() { printf '%s mysql-rootfs: %s\n' "$(date +%T)" "$*" >&2; }

register() {
  mkdir -p "$STORE/$(dirname "$IMAGE_REF")"
  ln -sfn "$ROOTFS" "$STORE/$IMAGE_REF.tmp"
  mv -T "$STORE/$IMAGE_REF.tmp" "$STORE/$IMAGE_REF"
}

if [[ -f $ROOTFS/.mysqlsts-complete ]]; then
  register
  echo "$ROOTFS"
  exit 0
fi
((EUID == 0)) || { log "building the MySQL root filesystem needs root (debootstrap)"; exit 1; }
scripts/apt-install.sh debootstrap

mkdir -p "$CACHE/rootfs"
exec 9>"$CACHE/rootfs/.mysql-build.lock"
flock 9 # a second install running beside this one waits, then finds it built
if [[ ! -f $ROOTFS/.mysqlsts-complete ]]; then
  staging=$ROOTFS.staging
  rm -rf "$staging"
  log "debootstrap sid with $PACKAGES (about 2 minutes)"
  start=$SECONDS
  # debootstrap retries a failed download itself; a second full attempt covers a flaky mirror.
  for attempt in 1 2; do
    if debootstrap --variant=minbase --include="$PACKAGES" sid "$staging" "$MIRROR" >"$CACHE/rootfs/mysql.log" 2>&1; then
      break
    fi
    tail -n 15 "$CACHE/rootfs/mysql.log" >&2
    rm -rf "$staging"
    ((attempt < 2)) || { log "debootstrap failed twice (log: $CACHE/rootfs/mysql.log)"; exit 1; }
    log "debootstrap failed; once more"
  done
  # shellcheck disable=SC2016 # a dpkg-query format, not a shell expansion
  served=$(chroot "$staging" dpkg-query -W -f '${Version}' mysql-server-core)
  if [[ $served != "$MYSQL_DEBIAN_VERSION" ]]; then
    log "sid serves mysql-server $served, not $MYSQL_DEBIAN_VERSION: set MYSQL_DEBIAN_VERSION=$served and" \
      "images.mysql.server to mysql:${served%%-*} (charts/mysql-sts/values.yaml)"
    rm -rf "$staging"
    exit 1
  fi
  # What a container image leaves out: package caches and lists, docs, and the data directory the
  # package's postinst initialized (every pod makes or clones its own). apt inside needs
  # -o Acquire::Check-Valid-Until=false: the sid index's Valid-Until has passed.
  rm -rf "$staging"/var/cache/apt/archives/*.deb "$staging"/var/lib/apt/lists/* "$staging"/usr/share/doc/* \
    "$staging"/usr/share/man/* "$staging"/usr/share/locale/* "$staging"/var/lib/mysql/* "$staging"/var/log/*.log
  mkdir -p "$staging/run/mysqld"
  chown 999:999 "$staging/run/mysqld" "$staging/var/lib/mysql"
  # The image's account for the server: uid/gid 999, as the pod's securityContext runs it.
  [[ $(chroot "$staging" id -u mysql) == 999 && $(chroot "$staging" id -g mysql) == 999 ]] ||
    chroot "$staging" sh -c 'groupmod -g 999 mysql && usermod -u 999 -g 999 mysql'
  touch "$staging/.mysqlsts-complete"
  rm -rf "$ROOTFS"
  mv "$staging" "$ROOTFS"
  log "built $ROOTFS (MySQL $served, $(du -sh "$ROOTFS" | cut -f1)) in $((SECONDS - start)) s"
fi
register
echo "$ROOTFS"
