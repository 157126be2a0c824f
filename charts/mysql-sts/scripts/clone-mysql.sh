#!/usr/bin/env bash
# Init container 2: an empty pod clones its data from a donor peer. The donor
# is a healthy, caught-up replica when there is one (so the primary is spared),
# else the primary. The clone is built in staging and becomes the data
# directory by one rename, so an interrupted clone can never pass for data.
# A donor that dies or fails mid-stream costs the copy, not the pod: staging is
# wiped and the clone starts over from another donor, a few times, before the
# container fails (and the kubelet runs it again, with every donor a candidate).
#
# Two ways to copy (CLONE_METHOD, from mysql.cloneMethod; MariaDB: mariabackup):
# - a backup tool's stream (mariabackup, xtrabackup): the donor's clone listener
#   streams a hot backup over TLS after a challenge on the clone secret; it is
#   extracted and prepared here;
# - MySQL's CLONE plugin: a throwaway server in this container, with no network
#   port, clones from the donor's server over its MySQL port with TLS both ways
#   (the donor's certificate checked against the cluster's CA, ours presented to
#   an account that requires one, and the clone secret as its password) into
#   staging. The copy needs no prepare and carries the donor's GTID set.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLONE_ATTEMPTS=3 # streams tried per run of this container

if [[ -d $DATA_DIR ]]; then
  log "data directory present; nothing to clone"
  exit 0
fi
rm -rf "$STAGING_DIR" "$CLONE_GTID_FILE" "$CLONE_GTID_FILE.new"

# The peers' clone listeners say what each pod can serve as, by its agent's
# verdict (the one readiness rule, decisions/node.py): a ready replica donates
# when there is one (so the primary is spared), else the primary. Pods start in
# parallel: a peer may still be starting, so look again for a while.
failed=" " # donors whose stream failed in this run
failed_before() { [[ $failed == *" $1 "* ]]; }
# A donor that failed us in this run comes last: a ready replica that has not,
# else the primary if it has not, else the first that answers.
choose_donor() {
  primary="" donor=""
  local peer role replica="" again=""
  while read -r peer; do
    [[ -n $peer ]] || continue
    role=$(peer_role "$peer" || true) # the first line is all we need, however socat ends
    case $role in
      replica | primary) ;;
      *) log "peer $peer cannot donate (${role:-its clone listener does not answer})"; continue ;;
    esac
    [[ $role == primary ]] && primary=$peer
    if failed_before "$peer"; then
      again=${again:-$peer}
    elif [[ $role == replica ]]; then
      replica=${replica:-$peer}
    fi
  done < <(peer_pods)
  if [[ -n $replica ]]; then
    donor=$replica
  elif [[ -n $primary ]] && ! failed_before "$primary"; then
    donor=$primary
  else
    donor=$again
  fi
  [[ -n $donor ]]
}

# One stream from the donor into an empty staging, checked whole and prepared.
# A subshell: `die` ends this attempt, not the script. It runs as a condition,
# where bash ignores `set -e`, so every step checks its own status.
stream_from() (
  local from=$1 tls_log nonce answer started
  mkdir -p "$STAGING_DIR" || die "cannot create $STAGING_DIR"
  tls_log=$(mktemp "${TMPDIR:-/tmp}/mysqlsts-clone-tls.XXXXXX") || die "cannot create a temporary file"
  tls_failed() { die "$1 (TLS to $from: $(tail -n 3 "$tls_log" | tr '\n' ' '))"; }
  coproc donor_stream {
    exec socat - "$(tls_to "$from" 10)" 2>"$tls_log"
  }
  # shellcheck disable=SC2154 # set by coproc
  trap 'kill "${donor_stream_PID:-}" 2>/dev/null || true; rm -f "$tls_log"' EXIT
  # Our own copies: bash closes the coproc's descriptors once socat exits, which
  # may be before the last of the stream has been read from the pipe.
  { exec 3<&"${donor_stream[0]}" 4>&"${donor_stream[1]}"; } 2>/dev/null || tls_failed "cannot connect to $from:$CLONE_PORT"
  read -r -t 10 nonce _ <&3 || tls_failed "donor $from sent no challenge"
  answer=$(clone_answer "$nonce") || die "no clone secret"
  printf '%s %s\n' "$answer" "$POD_NAME" >&4 || tls_failed "donor $from hung up before the stream"
  started=$SECONDS
  "$STREAM_BIN" -x -C "$STAGING_DIR" <&3 || tls_failed "the clone stream from $from was cut"
  exec 3<&- 4>&-
  # The donor appends this file only after its backup tool succeeded: a cut
  # stream or a failed backup never has it.
  [[ $(cat "$STAGING_DIR/mysqlsts-stream-complete" 2>/dev/null) == ok ]] ||
    die "the clone stream from $from ended early (its backup failed or was cut)"
  log "received $(du -sh "$STAGING_DIR" | cut -f1) in $((SECONDS - started))s; preparing"
  "$BACKUP_BIN" --prepare --target-dir="$STAGING_DIR" >"$PV_DIR/prepare.log" 2>&1 ||
    { tail -n 20 "$PV_DIR/prepare.log" >&2; die "prepare failed"; }
  rm -f "$PV_DIR/prepare.log" "$STAGING_DIR/mysqlsts-stream-complete"
  backup_gtid "$STAGING_DIR" >"$CLONE_GTID_FILE.new" || die "the copy has no binlog position file"
)

# The CLONE plugin's recipient: a server of our own on an empty data directory in
# TMPDIR, reached only through its socket (in RUN_DIR: a socket's path is short),
# started once per run of this container.
RECIPIENT_DIR="" RECIPIENT_PID="" RECIPIENT_SOCKET=$RUN_DIR/clone-recipient.sock
recipient_sql() {
  "$CLIENT_BIN" --no-defaults --user=root --socket="$RECIPIENT_SOCKET" --connect-timeout=3 -B -N "$@"
}
stop_recipient() {
  if [[ -n $RECIPIENT_PID ]]; then
    kill "$RECIPIENT_PID" 2>/dev/null || true
    wait "$RECIPIENT_PID" 2>/dev/null || true
  fi
  [[ -z $RECIPIENT_DIR ]] || rm -rf "$RECIPIENT_DIR"
}
start_recipient() {
  local os_user waited=0
  os_user=$(id -un)
  RECIPIENT_DIR=$(mktemp -d "${TMPDIR:-/tmp}/mysqlsts-recipient.XXXXXX")
  trap stop_recipient EXIT
  local small=(--innodb-buffer-pool-size=32M --innodb-redo-log-capacity=8M --mysqlx=OFF)
  "$SERVER_BIN" --no-defaults --initialize-insecure --datadir="$RECIPIENT_DIR/data" --user="$os_user" \
    "${small[@]}" >"$RECIPIENT_DIR/init.log" 2>&1 ||
    { tail -n 10 "$RECIPIENT_DIR/init.log" >&2; die "initializing the clone's recipient server failed"; }
  "$SERVER_BIN" --no-defaults --datadir="$RECIPIENT_DIR/data" --user="$os_user" "${small[@]}" --skip-networking \
    --socket="$RECIPIENT_SOCKET" --pid-file="$RECIPIENT_DIR/mysqld.pid" --tmpdir="${TMPDIR:-/tmp}" \
    --log-error="$RECIPIENT_DIR/error.log" --plugin-load-add=mysql_clone.so \
    --clone-ssl-ca="$TLS_CA" --clone-ssl-cert="$TLS_CERT" --clone-ssl-key="$TLS_KEY" \
    --clone-max-data-bandwidth="${CLONE_THROTTLE:-0}" &
  RECIPIENT_PID=$!
  until recipient_sql -e 'SELECT 1' >/dev/null 2>&1; do
    kill -0 "$RECIPIENT_PID" 2>/dev/null ||
      { tail -n 10 "$RECIPIENT_DIR/error.log" >&2; die "the clone's recipient server did not start"; }
    ((waited++ < 600)) || die "the clone's recipient server did not answer within 120s"
    sleep 0.2
  done
}

# One CLONE from the donor's server into an empty staging (the plugin creates it).
# A donor that fails or dies ends the statement with an error (no waiting for it
# to come back: every donor's clone_donor_timeout_after_network_failure is 0).
plugin_from() (
  local from=$1 fqdn password started
  fqdn=$(pod_fqdn "$from")
  password=$(secret clone-secret) || die "no clone secret"
  started=$SECONDS
  {
    echo "SET GLOBAL clone_valid_donor_list = $(sql_quote "$fqdn:$MYSQL_PORT");"
    echo "CLONE INSTANCE FROM '$CLONE_USER'@$(sql_quote "$fqdn"):$MYSQL_PORT IDENTIFIED BY $(sql_quote "$password")" \
      "DATA DIRECTORY = $(sql_quote "$STAGING_DIR") REQUIRE SSL;"
  } | quietly recipient_sql || die "the clone from $from failed"
  [[ -d $STAGING_DIR/mysql ]] || die "the clone from $from left no data directory"
  log "received $(du -sh "$STAGING_DIR" | cut -f1) in $((SECONDS - started))s"
)

clone_from() {
  if [[ $CLONE_METHOD == clone-plugin ]]; then
    [[ -n $RECIPIENT_PID ]] || start_recipient
    plugin_from "$1"
  else
    stream_from "$1"
  fi
}

if [[ $CLONE_METHOD == clone-plugin ]]; then
  log "clone method: clone-plugin (MySQL's CLONE plugin, from the donor's server over its MySQL port, TLS both ways)"
else
  log "clone method: $CLONE_METHOD (a hot backup streamed over the clone port, TLS both ways)"
fi

attempt=1 last=""
while true; do
  deadline=$((SECONDS + ${DONOR_WAIT_SECONDS:-300}))
  until choose_donor; do
    ((SECONDS < deadline)) || die "no donor: no peer is a ready primary or replica; will retry"
    sleep 3
  done
  kind=$([[ $donor == "$primary" ]] && echo primary || echo "a ready replica")
  if [[ -z $last ]]; then
    log "cloning from $donor ($kind)"
  else
    log "moving to donor $donor ($kind) after the clone from $last failed; attempt $attempt of $CLONE_ATTEMPTS"
  fi
  clone_from "$donor" && break
  rm -rf "$STAGING_DIR" "$CLONE_GTID_FILE.new" # never a half copy: the next attempt starts empty
  failed+="$donor " last=$donor
  ((attempt < CLONE_ATTEMPTS)) || die "the clone failed $CLONE_ATTEMPTS times (from${failed% }); will retry"
  attempt=$((attempt + 1))
done

if [[ -f $CLONE_GTID_FILE.new ]]; then # a backup tool's copy: server.sh applies its GTID position first
  gtid=$(<"$CLONE_GTID_FILE.new")
  rm -f "$CLONE_GTID_FILE.new"
  printf '%s\n' "${gtid:--}" >"$CLONE_GTID_FILE"
  outcome="at GTID ${gtid:-<empty>}"
else # server.sh still boots it once on its own (the donor's relay log metadata goes)
  printf 'carried\n' >"$CLONE_GTID_FILE"
  outcome="(the copy carries its GTID set)"
fi
record_primary "${primary:-}"
mv "$STAGING_DIR" "$DATA_DIR"
sync "$PV_DIR" 2>/dev/null || sync
log "clone complete $outcome"
