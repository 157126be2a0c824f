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

# A copy made by a backup tool comes with its GTID position (clone-mysql.sh). The
# server takes it in a boot of its own, with no network port, that ends once the
# position is applied: so it holds its position before anyone can reach it, and
# nobody (its agent, a failover re-pointing the replicas) can point it at a source
# first. Should that boot die, the next start applies the position again: nothing
# was replicated meanwhile. MySQL's CLONE plugin copies carry their GTID set.
clone_position_sql() {
  local gtid=$1
  [[ $gtid =~ ^[0-9A-Fa-f:,-]*$ ]] || die "the clone's GTID position is not GTIDs: $gtid"
  if [[ $FLAVOR == mariadb ]]; then
    echo "SET GLOBAL gtid_slave_pos = $(sql_quote "$gtid");"
  else # gtid_purged needs empty binary logs (the boot stays fenced: super_read_only allows both)
    echo "RESET BINARY LOGS AND GTIDS;"
    echo "SET GLOBAL gtid_purged = $(sql_quote "$gtid");"
  fi
  echo "SHUTDOWN;"
}
if [[ -f $CLONE_GTID_FILE ]]; then
  gtid=$(<"$CLONE_GTID_FILE")
  [[ $gtid == - ]] && gtid=""
  log "applying the clone's GTID position (${gtid:-<empty>}) before the server takes a connection"
  no_replica_start=--skip-replica-start
  [[ $FLAVOR == mariadb ]] && no_replica_start=--skip-slave-start
  "$SERVER_BIN" --defaults-file="$CONF_DIR/my.cnf" "${args[@]}" --skip-networking "$no_replica_start" \
    --socket="$RUN_DIR/clone-position.sock" --pid-file="$RUN_DIR/clone-position.pid" \
    --init-file=<(clone_position_sql "$gtid") 2> >(watch_recovery) || die "the boot that applies the clone's GTID position failed"
  rm -f "$CLONE_GTID_FILE"
  sync "$PV_DIR" 2>/dev/null || sync
  log "the clone's GTID position applied"
fi

exec "$SERVER_BIN" --defaults-file="$CONF_DIR/my.cnf" "${args[@]}" 2> >(watch_recovery)
