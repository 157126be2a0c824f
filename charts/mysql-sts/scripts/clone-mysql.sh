#!/usr/bin/env bash
# Init container 2: an empty pod clones its data from a donor peer. The donor
# is a healthy, caught-up replica when there is one (so the primary is spared),
# else the primary. The clone is built in staging and becomes the data
# directory by one rename, so an interrupted clone can never pass for data.
# A donor that dies or fails mid-stream costs the copy, not the pod: staging is
# wiped and the clone starts over from another donor, a few times, before the
# container fails (and the kubelet runs it again, with every donor a candidate).
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
tls_to() { printf 'OPENSSL:%s:%s,cafile=%s,cert=%s,key=%s,verify=1,connect-timeout=%s,%s' \
  "$(pod_fqdn "$1")" "$CLONE_PORT" "$TLS_CA" "$TLS_CERT" "$TLS_KEY" "$2" "$TCP_KEEPALIVE"; }
# -t 5: after our one line, wait for the listener's (it starts a script first).
peer_role() {
  printf 'probe %s\n' "$POD_NAME" | timeout 10 socat -t 5 - "$(tls_to "$1" 3)" 2>/dev/null | head -n 1 | cut -s -d' ' -f2
}
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
clone_from() (
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

gtid=$(<"$CLONE_GTID_FILE.new")
rm -f "$CLONE_GTID_FILE.new"
printf '%s\n' "${gtid:--}" >"$CLONE_GTID_FILE"
record_primary "${primary:-}"
mv "$STAGING_DIR" "$DATA_DIR"
sync "$PV_DIR" 2>/dev/null || sync
log "clone complete at GTID ${gtid:-<empty>}"
