#!/usr/bin/env bash
# Init container 2: an empty pod clones its data from a donor peer. The donor
# is a healthy, caught-up replica when there is one (so the primary is spared),
# else the primary. The clone is built in staging and becomes the data
# directory by one rename, so an interrupted clone can never pass for data.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ -d $DATA_DIR ]]; then
  log "data directory present; nothing to clone"
  exit 0
fi
rm -rf "$STAGING_DIR" "$CLONE_GTID_FILE"
mkdir -p "$STAGING_DIR"

# The peers' clone listeners say what each pod can serve as, by its agent's
# verdict (the one readiness rule, decisions/node.py): a ready replica donates
# when there is one (so the primary is spared), else the primary. Pods start in
# parallel: a peer may still be starting, so look again for a while.
tls_to() { printf 'OPENSSL:%s:%s,cafile=%s,cert=%s,key=%s,verify=1,connect-timeout=%s' \
  "$(pod_fqdn "$1")" "$CLONE_PORT" "$TLS_CA" "$TLS_CERT" "$TLS_KEY" "$2"; }
# -t 5: after our one line, wait for the listener's (it starts a script first).
peer_role() {
  printf 'probe %s\n' "$POD_NAME" | timeout 10 socat -t 5 - "$(tls_to "$1" 3)" 2>/dev/null | head -n 1 | cut -s -d' ' -f2
}
choose_donor() {
  primary="" donor="" role=""
  while read -r peer; do
    [[ -n $peer ]] || continue
    role=$(peer_role "$peer" || true) # the first line is all we need, however socat ends
    case $role in
      replica) [[ -n $donor ]] || donor=$peer ;;
      primary) primary=$peer ;;
      *) log "peer $peer cannot donate (${role:-its clone listener does not answer})" ;;
    esac
  done < <(peer_pods)
  donor=${donor:-$primary}
  [[ -n $donor ]]
}
deadline=$((SECONDS + ${DONOR_WAIT_SECONDS:-300}))
until choose_donor; do
  ((SECONDS < deadline)) || die "no donor: no peer is a ready primary or replica; will retry"
  sleep 3
done
log "cloning from $donor ($([[ $donor == "$primary" ]] && echo primary || echo "a ready replica"))"

# TLS both ways (socat checks the donor's certificate against the cluster's
# CA and its per-pod DNS name, and shows it ours), then the clone secret: the
# donor sends a nonce, we answer with a keyed hash.
tls_log=$(mktemp "${TMPDIR:-/tmp}/mysqlsts-clone-tls.XXXXXX")
trap 'rm -f "$tls_log"' EXIT
tls_failed() { die "$1 (TLS to $donor: $(tail -n 3 "$tls_log" | tr '\n' ' '))"; }
coproc donor_stream {
  exec socat - "$(tls_to "$donor" 10)" 2>"$tls_log"
}
# Our own copies: bash closes the coproc's descriptors once socat exits, which
# may be before the last of the stream has been read from the pipe.
{ exec 3<&"${donor_stream[0]}" 4>&"${donor_stream[1]}"; } 2>/dev/null || tls_failed "cannot connect to $donor:$CLONE_PORT"
read -r -t 10 nonce _ <&3 || tls_failed "donor $donor sent no challenge"
answer=$(clone_answer "$nonce")
printf '%s %s\n' "$answer" "$POD_NAME" >&4
started=$SECONDS
"$STREAM_BIN" -x -C "$STAGING_DIR" <&3 || tls_failed "the clone stream from $donor failed"
exec 3<&- 4>&-
# The donor appends this file only after its backup tool succeeded: a cut
# stream or a failed backup never has it.
[[ -f $STAGING_DIR/mysqlsts-stream-complete ]] || die "the clone stream from $donor ended early"
log "received $(du -sh "$STAGING_DIR" | cut -f1) in $((SECONDS - started))s; preparing"

"$BACKUP_BIN" --prepare --target-dir="$STAGING_DIR" >"$PV_DIR/prepare.log" 2>&1 ||
  { tail -n 20 "$PV_DIR/prepare.log" >&2; die "prepare failed"; }
rm -f "$PV_DIR/prepare.log"

gtid=$(backup_gtid "$STAGING_DIR") || die "the copy has no binlog position file"
rm -f "$STAGING_DIR/mysqlsts-stream-complete"
printf '%s\n' "${gtid:--}" >"$CLONE_GTID_FILE"
record_primary "${primary:-}"
mv "$STAGING_DIR" "$DATA_DIR"
sync "$PV_DIR" 2>/dev/null || sync
log "clone complete at GTID ${gtid:-<empty>}"
