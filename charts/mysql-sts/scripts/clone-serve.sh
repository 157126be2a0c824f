#!/usr/bin/env bash
# One clone request, on a socket handed over by socat: challenge the peer,
# and only if it proves it holds the clone secret, stream a hot backup,
# followed by a completion marker.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

nonce=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
printf '%s\n' "$nonce"
read -r -t 10 answer peer || die "clone request without an answer; dropped"
if [[ $answer != "$(clone_answer "$nonce")" ]]; then
  log "clone request from ${peer:-?} rejected: wrong clone secret"
  exit 1
fi
log "streaming a backup to $peer"
work=$(mktemp -d "${TMPDIR:-/tmp}/mysqlsts-clone.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The log copier polls the redo log every 1 s by default, and the backup ends by
# waiting for it to catch up: poll at 50 ms.
# No --slave-info (percona-xtrabackup 8.4 speaks --replica-info): the clone takes
# its GTID set from the binlog info file, which every backup writes.
extra=(--log-copy-interval=50)
MYSQL_PWD=$MYSQLSTS_OPERATOR_PASSWORD "$BACKUP_BIN" --defaults-file="$CONF_DIR/my.cnf" \
  --user="$OPERATOR_USER" --socket="$SOCKET" --backup --stream=xbstream --target-dir="$work/backup" \
  "${extra[@]}" 2>"$work/backup.log" || { tail -n 20 "$work/backup.log" >&2; die "backup for $peer failed"; }
printf 'ok\n' >"$work/mysqlsts-stream-complete"
(cd "$work" && "$STREAM_BIN" -c mysqlsts-stream-complete)
log "backup streamed to $peer"
