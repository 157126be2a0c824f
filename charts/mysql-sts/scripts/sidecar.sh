#!/usr/bin/env bash
# Sidecar: once the server answers, settle this pod's role from what its peers
# say (never from its ordinal), then serve authenticated clone streams.
#
# Role at start, in order:
#   1. exactly one peer is writable -> replicate from it, unless this pod holds
#      transactions that peer lacks (errant): then quarantine and stay fenced
#   2. this pod initialized the cluster's first primary a moment ago (its
#      init-mysql left the bootstrap marker) and no peer answers -> lift the fence
#   3. otherwise -> stay fenced and keep asking
# The sidecar never promotes a server that held data before: a restarted
# primary stays fenced until the orchestrator (CLI or controller) decides who
# is primary, so an old primary cannot unfence itself during a failover.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

apply_clone_gtid() {
  [[ -f $CLONE_GTID_FILE ]] || return 0
  local gtid
  gtid=$(cat "$CLONE_GTID_FILE")
  [[ $gtid == - ]] && gtid=""
  if [[ $FLAVOR == mysql ]]; then
    sql_local <<SQL || return 1
SET GLOBAL super_read_only = OFF;
RESET BINARY LOGS AND GTIDS;
SET GLOBAL gtid_purged = $(sql_quote "$gtid");
SET GLOBAL super_read_only = ON;
SQL
  else
    sql_local -e "SET GLOBAL gtid_slave_pos = $(sql_quote "$gtid")" || return 1
  fi
  rm -f "$CLONE_GTID_FILE"
  log "GTID position of the clone applied: ${gtid:-<empty>}"
}

promote_self() {
  local semi=OFF
  [[ $SEMI_SYNC == true ]] && semi=ON
  if [[ $FLAVOR == mysql ]]; then
    sql_local <<SQL || return 1
STOP REPLICA;
RESET REPLICA ALL;
SET GLOBAL rpl_semi_sync_replica_enabled = OFF;
SET GLOBAL rpl_semi_sync_source_enabled = $semi;
SET GLOBAL super_read_only = OFF;
SET GLOBAL read_only = OFF;
SQL
  else
    sql_local <<SQL || return 1
STOP SLAVE;
RESET SLAVE ALL;
SET GLOBAL rpl_semi_sync_slave_enabled = OFF;
SET GLOBAL rpl_semi_sync_master_enabled = $semi;
SET GLOBAL read_only = OFF;
SQL
  fi
  record_primary "$POD_NAME"
  log "writable: this pod is the primary (semi-sync $semi)"
}

quarantine() {
  printf '%s\n' "$1" >"$QUARANTINE_FILE"
  log "QUARANTINED: $1; stays read-only and out of replication until re-cloned"
}

join_primary() {
  local primary=$1 fqdn theirs mine repl_password
  fqdn=$(pod_fqdn "$primary")
  repl_password=$(secret replication-password) || return 1
  theirs=$2
  local state
  state=$(local_state) || return 1
  read -r _ _ _ _ _ mine <<<"$state"
  if [[ $FLAVOR == mysql ]]; then
    # GTID_SUBSET is evaluated on the primary: exact, over full GTID sets.
    local subset
    subset=$(sql_peer "$fqdn" -N -e "SELECT GTID_SUBSET($(sql_quote "${mine/#-/}"), @@GLOBAL.gtid_executed)") || return 1
    [[ $subset == 1 ]] || { quarantine "errant transactions: $mine is not contained in $primary's GTID set"; return 1; }
    quietly sql_local <<SQL || return 1
STOP REPLICA;
CHANGE REPLICATION SOURCE TO SOURCE_HOST = $(sql_quote "$fqdn"), SOURCE_PORT = $MYSQL_PORT,
  SOURCE_USER = $(sql_quote "$REPLICATION_USER"), SOURCE_PASSWORD = $(sql_quote "$repl_password"),
  SOURCE_SSL = 1, SOURCE_SSL_CA = $(sql_quote "$TLS_CA"), SOURCE_SSL_VERIFY_SERVER_CERT = 1,
  SOURCE_AUTO_POSITION = 1, SOURCE_CONNECT_RETRY = 1, SOURCE_RETRY_COUNT = 86400,
  SOURCE_HEARTBEAT_PERIOD = 1;
SET GLOBAL rpl_semi_sync_source_enabled = OFF;
SET GLOBAL rpl_semi_sync_replica_enabled = $([[ $SEMI_SYNC == true ]] && echo ON || echo OFF);
START REPLICA;
SQL
  else
    mariadb_gtid_behind_or_equal "$mine" "$theirs" ||
      { quarantine "errant transactions: $mine is ahead of $primary's $theirs"; return 1; }
    quietly sql_local <<SQL || return 1
STOP SLAVE;
SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_current_pos;
CHANGE MASTER TO MASTER_HOST = $(sql_quote "$fqdn"), MASTER_PORT = $MYSQL_PORT,
  MASTER_USER = $(sql_quote "$REPLICATION_USER"), MASTER_PASSWORD = $(sql_quote "$repl_password"),
  MASTER_SSL = 1, MASTER_SSL_CA = $(sql_quote "$TLS_CA"), MASTER_SSL_VERIFY_SERVER_CERT = 1,
  MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1, MASTER_HEARTBEAT_PERIOD = 1;
SET GLOBAL rpl_semi_sync_master_enabled = OFF;
SET GLOBAL rpl_semi_sync_slave_enabled = $([[ $SEMI_SYNC == true ]] && echo ON || echo OFF);
START SLAVE;
SQL
  fi
  # The source's own check is exact where the positions above are not: error 1236 means
  # this pod's history diverged from the primary's (errant transactions).
  local errno="" i
  for i in 1 2 3 4 5 6 7 8 9 10; do
    errno=$(io_errno) || errno=""
    [[ $errno == 1236 ]] && break
    [[ $(local_state 2>/dev/null | cut -d' ' -f3) == Yes ]] && break
    sleep 0.3
  done
  if [[ $errno == 1236 ]]; then
    if [[ $FLAVOR == mysql ]]; then sql_local -e "STOP REPLICA" || true; else sql_local -e "STOP SLAVE" || true; fi
    quarantine "errant transactions: $primary refuses this pod's GTID position $mine (error 1236, diverged)"
    return 1
  fi
  record_primary "$primary"
  log "replicating from $primary ($fqdn) with GTID auto-position"
}

io_errno() {
  local sql
  if [[ $FLAVOR == mysql ]]; then sql="SHOW REPLICA STATUS\\G"; else sql="SHOW SLAVE STATUS\\G"; fi
  sql_local -e "$sql" | awk '$1 == "Last_IO_Errno:" { print $2 }'
}

# One look at the peers; returns 0 once the role is settled.
settle_role() {
  local ro host io peer state p_ro p_host p_gtid
  state=$(local_state) || return 1
  read -r ro host io _ _ _ <<<"$state"
  if [[ $ro == 0 ]]; then
    record_primary "$POD_NAME"
    return 0
  fi
  if [[ $host != - && $io == Yes ]]; then
    record_primary "$(pod_of "$host")"
    return 0
  fi
  local writable=() writable_gtid="" followed=() answered=0
  while read -r peer; do
    [[ -n $peer ]] || continue
    state=$(peer_state "$(pod_fqdn "$peer")" 2>/dev/null) || continue
    answered=$((answered + 1))
    read -r p_ro p_host _ _ _ p_gtid <<<"$state"
    if [[ $p_ro == 0 ]]; then
      writable+=("$peer")
      writable_gtid=$p_gtid
    fi
    [[ $p_host != - ]] && followed+=("$(pod_of "$p_host")")
  done < <(peer_pods)

  if ((${#writable[@]} > 1)); then
    log "more than one writable peer (${writable[*]}): refusing to pick one; waiting for the orchestrator"
    return 1
  fi
  if ((${#writable[@]} == 1)); then
    join_primary "${writable[0]}" "$writable_gtid"
    return
  fi
  if ((fresh_primary)) && ((answered == 0)); then
    promote_self
    return 0
  fi
  if ((${#followed[@]} > 0)); then
    log "no writable peer; the peers follow ${followed[*]}; waiting for the orchestrator to choose a primary"
    return 1
  fi
  log "no primary found among the peers yet ($answered answered); waiting"
  return 1
}

# TLS both ways: the peer must present a certificate signed by the cluster's
# CA (verify=1 on a listener asks for one and refuses a connection without
# it) before clone-serve.sh even sends its challenge.
serve_clones() {
  log "serving clone streams over TLS on $BIND_ADDRESS:$CLONE_PORT"
  socat "OPENSSL-LISTEN:$CLONE_PORT,bind=$BIND_ADDRESS,reuseaddr,fork,cert=$TLS_CERT,key=$TLS_KEY,cafile=$TLS_CA,verify=1" \
    "EXEC:bash $SCRIPTS_DIR/clone-serve.sh" &
  socat_pid=$!
}

socat_pid=""
# The bootstrap marker counts once, for this start only: a later restart of the
# same pod is an old primary coming back, which only the orchestrator promotes.
fresh_primary=0
if [[ -e $BOOTSTRAP_MARKER ]]; then
  fresh_primary=1
  rm -f "$BOOTSTRAP_MARKER"
fi
trap '[[ -n $socat_pid ]] && kill "$socat_pid" 2>/dev/null; exit 0' TERM INT

wait_for_server 600 || die "the server did not answer within 600s"
until apply_clone_gtid; do sleep 2; done
serve_clones
# Settle the role once per server start: at pod start, and again whenever the
# server restarted under us (a crash or a liveness kill), since it boots fenced.
settle() {
  if [[ -e $QUARANTINE_FILE ]]; then
    log "quarantined ($(cat "$QUARANTINE_FILE")); staying fenced"
    return
  fi
  until settle_role; do
    [[ -e $QUARANTINE_FILE ]] && return
    sleep 2
  done
}

# When the running server started (epoch seconds): a new value means it restarted,
# however long the sidecar did not look (comparing uptimes misses a quick restart).
# SHOW GLOBAL STATUS, as both flavors have it (MySQL 8.0 removed
# information_schema.GLOBAL_STATUS; MariaDB ships performance_schema off).
booted_at() {
  sql_local -N -e "SELECT UNIX_TIMESTAMP(); SHOW GLOBAL STATUS LIKE 'Uptime'" | awk 'NR == 1 { now = $1 } NR == 2 { print now - $2 }'
}

settle
fresh_primary=0
last_boot=$(booted_at 2>/dev/null || echo 0)

# Keep serving clones; record whom this pod follows so a restart finds it.
while true; do
  if ! kill -0 "$socat_pid" 2>/dev/null; then
    log "clone listener exited; restarting it"
    serve_clones
  fi
  if boot=$(booted_at 2>/dev/null) && [[ -n $boot ]]; then
    if ((boot - last_boot > 1 || last_boot - boot > 1)); then
      log "the server restarted; settling the role again"
      until apply_clone_gtid; do sleep 2; done
      settle
      boot=$(booted_at 2>/dev/null || echo "$boot")
    fi
    last_boot=$boot
    if state=$(local_state 2>/dev/null); then
      read -r ro host io _ _ _ <<<"$state"
      if [[ $ro == 0 ]]; then
        [[ $(recorded_primary) == "$POD_NAME" ]] || record_primary "$POD_NAME"
      elif [[ $host != - && $io == Yes ]]; then
        [[ $(recorded_primary) == "$(pod_of "$host")" ]] || record_primary "$(pod_of "$host")"
      fi
    fi
  fi
  sleep 2 &
  wait $! || true
done
