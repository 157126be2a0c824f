#!/usr/bin/env bash
# One clone request, on a connection handed over by clone-listen.sh's socat, which
# already ran TLS and checked the peer's certificate against the cluster's CA:
# challenge the peer (with the challenge, say what this pod can serve as, by its
# agent's verdict: a new pod chooses its donor by it), and only if it proves it
# holds the clone secret, stream a hot backup, followed by a completion marker.
# A peer that answers "probe" only wanted to know the role.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

nonce=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
printf '%s %s\n' "$nonce" "$(agent_role)"
read -r -t 10 answer peer || die "clone request without an answer; dropped"
[[ $answer == probe ]] && exit 0
if [[ $CLONE_METHOD == clone-plugin ]]; then
  log "stream request from ${peer:-?} refused: this pod's server donates with the CLONE plugin (mysql.cloneMethod)"
  exit 1
fi
if [[ $answer != "$(clone_answer "$nonce")" ]]; then
  log "clone request from ${peer:-?} rejected: wrong clone secret"
  exit 1
fi
log "streaming a backup to $peer"
work=$(mktemp -d "${TMPDIR:-/tmp}/mysqlsts-clone.XXXXXX")
# The backup tool reads its option files more than once (server, then client
# groups), so no pipe: a 0600 file (mktemp's mode) on the memory-backed RUN_DIR.
cnf=$(mktemp "$RUN_DIR/backup-cnf.XXXXXX")
trap 'rm -rf "$work" "$cnf"' EXIT
{ printf '!include %s\n' "$CONF_DIR/my.cnf"; client_cnf "$OPERATOR_USER" operator-password; } >"$cnf"
# The log copier polls the redo log every 1 s by default, and the backup ends by
# waiting for it to catch up: poll at 50 ms.
# No --slave-info (percona-xtrabackup 8.4 speaks --replica-info): the clone takes
# its GTID set from the binlog info file, which every backup writes.
extra=(--log-copy-interval=50)
# mysql.cloneThrottle: the backup tool's own limit on its copy I/O, to spare a busy donor's disk.
if ((${CLONE_THROTTLE:-0} > 0)); then extra+=(--throttle="$CLONE_THROTTLE"); fi
"$BACKUP_BIN" --defaults-file="$cnf" --socket="$SOCKET" --backup --stream=xbstream --target-dir="$work/backup" \
  "${extra[@]}" 2>"$work/backup.log" || { tail -n 20 "$work/backup.log" >&2; die "backup for $peer failed"; }
printf 'ok\n' >"$work/mysqlsts-stream-complete"
(cd "$work" && "$STREAM_BIN" -c mysqlsts-stream-complete)
log "backup streamed to $peer"
