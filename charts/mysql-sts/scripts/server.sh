#!/usr/bin/env bash
# Main container: the database server with the config init-mysql wrote. It
# always boots read-only; only the agent container or the orchestrator promotes it.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -d $DATA_DIR ]] || die "no data directory: the init containers did not complete"
mkdir -p "$RUN_DIR"

# MariaDB with semi-sync boots as a replica (init_rpl_role, mariadb.cnf), so its
# crash recovery cuts the binlog's tail past the engine's commits: what an old
# primary must lose to rejoin the primary that replaced it. The tail can also
# hold commits its clients were told of (MariaDB makes a commit durable in the
# binlog first), and a primary alone (one pod, or the first primary before a
# replica joined) is their only holder. So a pod that was the primary when it
# stopped keeps its tail unless a peer serves as the primary now: it comes back
# as the primary it was, and the orchestrator elects among the nodes as they
# are. Should a failover finish while it starts, the tail it kept makes it
# errant and the agent quarantines it: a re-clone, never a lost commit.
# Recovery refuses the cut, and the server will not start, when a statement it
# cannot roll back (DDL, a non-transactional table) lies past it. The server's
# log is watched for that refusal; the next start then recovers the tail as it
# is, once, and the agent quarantines the pod if the primary lacks it.
REFUSED_FILE=$PV_DIR/truncation-refused
REFUSAL="Cannot truncate the binary log"

# The peer that serves as the primary now, if any.
serving_primary() {
  local peer
  while read -r peer; do
    [[ -n $peer && $(peer_role "$peer" || true) == primary ]] && { printf '%s\n' "$peer"; return 0; }
  done < <(peer_pods)
  return 0
}

args=()
if [[ $FLAVOR == mariadb ]]; then
  if [[ -s $REFUSED_FILE ]]; then
    log "the last crash recovery refused to cut the unacknowledged tail ($(<"$REFUSED_FILE")): recovering it as it is"
    args+=(--init-rpl-role=MASTER)
  elif [[ $SEMI_SYNC == true && $(recorded_primary) == "$POD_NAME" ]]; then
    primary=$(serving_primary)
    if [[ -z $primary ]]; then
      log "this pod was the primary and no peer serves as one: crash recovery keeps the binlog's tail"
      args+=(--init-rpl-role=MASTER)
    else
      log "this pod was the primary, $primary is now: crash recovery cuts the tail it alone may hold"
    fi
  fi
fi
rm -f "$REFUSED_FILE"

# Copies the server's log to stderr, keeping the refusal line when one passes.
watch_recovery() {
  local line
  while IFS= read -r line || [[ -n $line ]]; do
    printf '%s\n' "$line" >&2
    if [[ $line == *"$REFUSAL"* ]]; then
      printf '%s\n' "${line#*\[ERROR\] }" >"$REFUSED_FILE.tmp" && mv -f "$REFUSED_FILE.tmp" "$REFUSED_FILE"
    fi
  done
}

exec "$SERVER_BIN" --defaults-file="$CONF_DIR/my.cnf" "${args[@]}" 2> >(watch_recovery)
