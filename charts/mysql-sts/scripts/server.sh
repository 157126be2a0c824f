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

# A fresh copy boots once on its own first, with no network port, in a boot that
# ends by itself, so nobody (its agent, a failover re-pointing the replicas) can
# reach it before it is whole:
# - a backup tool's copy comes with its GTID position (clone-mysql.sh), applied
#   there; MySQL's CLONE plugin copies carry their GTID set ("carried");
# - the replication metadata that came with the copy is the donor's, and no relay
#   log came with it: that boot recovers the relay log (relay_log_recovery, OFF
#   otherwise so that a replica keeps what it received across a crash).
# Should that boot die, the next start does it again: nothing was replicated
# meanwhile.
clone_position_sql() {
  local gtid=$1
  if [[ $gtid != carried ]]; then
    [[ $gtid =~ ^[0-9A-Fa-f:,-]*$ ]] || die "the clone's GTID position is not GTIDs: $gtid"
    if [[ $FLAVOR == mariadb ]]; then
      echo "SET GLOBAL gtid_slave_pos = $(sql_quote "$gtid");"
    else # gtid_purged needs empty binary logs (the boot stays fenced: super_read_only allows both)
      echo "RESET BINARY LOGS AND GTIDS;"
      echo "SET GLOBAL gtid_purged = $(sql_quote "$gtid");"
    fi
  fi
  echo "SHUTDOWN;"
}
if [[ -f $CLONE_GTID_FILE ]]; then
  gtid=$(<"$CLONE_GTID_FILE")
  [[ $gtid == - ]] && gtid=""
  if [[ $gtid == carried ]]; then
    log "first boot of a fresh copy (its GTID set came with it): dropping the donor's relay log metadata"
  else
    log "applying the clone's GTID position (${gtid:-<empty>}) before the server takes a connection"
  fi
  no_replica_start=--skip-replica-start
  [[ $FLAVOR == mariadb ]] && no_replica_start=--skip-slave-start
  "$SERVER_BIN" --defaults-file="$CONF_DIR/my.cnf" "${args[@]}" --skip-networking "$no_replica_start" \
    --relay-log-recovery=ON --socket="$RUN_DIR/clone-position.sock" --pid-file="$RUN_DIR/clone-position.pid" \
    --init-file=<(clone_position_sql "$gtid") 2> >(watch_recovery) || die "the first boot of the fresh copy failed"
  rm -f "$CLONE_GTID_FILE"
  sync "$PV_DIR" 2>/dev/null || sync
  log "the fresh copy is whole: it takes connections now"
fi

# MariaDB: a replica's relay log can end with transactions it received (with
# semi-sync, acknowledged) but had not applied when it stopped. MariaDB throws
# the relay log away when replication starts again in GTID mode, and with the
# primary lost it may hold the only copy of an acknowledged commit. So a boot of
# its own, with no network port, applies them first and moves the replication
# position past them: an election sees them, nothing fetches them twice.
if [[ $FLAVOR == mariadb ]]; then
  # The relay logs from the one the applier stopped in, and its position there
  # (relay-log.info: a line count, then that log and the position).
  relay_tail() {
    local info=$DATA_DIR/relay-log.info index=$DATA_DIR/relay-bin.index name pos log found=""
    [[ -s $info && -s $index ]] || return 0
    { read -r _; read -r name; read -r pos; } <"$info"
    [[ $pos =~ ^[0-9]+$ ]] || return 0
    while read -r log; do
      [[ ${log##*/} == "${name##*/}" ]] && found=1
      [[ -n $found && -f $DATA_DIR/${log##*/} ]] && printf '%s\n' "$DATA_DIR/${log##*/}"
    done <"$index"
    printf '%s\n' "$pos"
  }

  # The GTIDs of the transactions in those logs past that position.
  relay_tail_gtids() {
    local -a logs
    mapfile -t logs < <(relay_tail)
    ((${#logs[@]} > 1)) || return 0
    "$BINLOG_BIN" --start-position="${logs[-1]}" "${logs[@]:0:${#logs[@]}-1}" 2>/dev/null |
      grep -oE '[[:space:]]GTID [0-9]+-[0-9]+-[0-9]+' | awk '{print $2}' || true
  }

  # What a MariaDB server holds, one GTID per domain: the further of its binlog
  # and replication positions (as mysql/observe.held).
  held_sql="SELECT CONCAT_WS(',', NULLIF(@@GLOBAL.gtid_binlog_pos, ''), NULLIF(@@GLOBAL.gtid_slave_pos, ''))"
  furthest_per_domain() {
    tr ',' '\n' | awk -F- 'NF == 3 && (!($1 in seq) || $3 + 0 > seq[$1] + 0) { seq[$1] = $3; gtid[$1] = $0 }
      END { out = ""; for (d in gtid) out = out (out == "" ? "" : ",") gtid[d]; print out }'
  }

  tail_sock=$RUN_DIR/relay-tail.sock
  as_operator() {
    "$CLIENT_BIN" --defaults-extra-file=<(client_cnf "$OPERATOR_USER" operator-password) --socket="$tail_sock" \
      -B -N "$@"
  }

  apply_relay_tail() {
    local pid held logs answered=""
    # Semi-sync off: a replayed commit of a pod whose config is the primary's would wait for an
    # acknowledgement no replica can send (no network).
    "$SERVER_BIN" --defaults-file="$CONF_DIR/my.cnf" "${args[@]}" --skip-networking --skip-slave-start \
      --rpl-semi-sync-master-enabled=OFF --socket="$tail_sock" --pid-file="$RUN_DIR/relay-tail.pid" \
      2> >(watch_recovery) &
    pid=$!
    # However this ends, that server is gone before the next one starts: it holds the data directory.
    trap 'as_operator -e SHUTDOWN >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true; wait "$pid" || true' EXIT
    for _ in $(seq 600); do
      as_operator -e 'SELECT 1' >/dev/null 2>&1 && { answered=1; break; }
      kill -0 "$pid" 2>/dev/null || die "the boot that applies the relay log's tail failed"
      sleep 0.1
    done
    [[ -n $answered ]] || die "the boot that applies the relay log's tail did not answer within 60 s"
    held=$(as_operator -e "$held_sql" | furthest_per_domain)
    mapfile -t logs < <(relay_tail)
    # The relay logs go once applied (the source stays named): no later boot finds them again.
    if quietly as_operator < <("$BINLOG_BIN" ${held:+--start-position="$held"} "${logs[@]:0:${#logs[@]}-1}") &&
      held=$(as_operator -e "$held_sql" | furthest_per_domain) &&
      quietly as_operator -e "SET GLOBAL gtid_slave_pos = $(sql_quote "$held"); RESET SLAVE"; then
      log "the relay log's tail applied: this pod holds $held"
    else # kept for a person to read; replication starting again discards them
      log "ERROR: applying the relay log's tail failed (the error above); this pod holds $held without it"
    fi
    as_operator -e SHUTDOWN || kill "$pid"
    wait "$pid" || log "the boot that applied the relay log's tail did not shut down cleanly"
    trap - EXIT
    sync "$PV_DIR" 2>/dev/null || sync
  }

  tail_gtids=$(relay_tail_gtids | paste -sd, -)
  if [[ -n $tail_gtids ]]; then
    log "the relay log holds transactions received but not applied ($tail_gtids): applying them before the server takes a connection"
    apply_relay_tail
  fi
fi

exec "$SERVER_BIN" --defaults-file="$CONF_DIR/my.cnf" "${args[@]}" 2> >(watch_recovery)
