#!/usr/bin/env bash
# Probes: liveness asks whether the server answers; readiness asks whether the
# pod can serve its role: the primary is writable, a replica replicates with
# both threads running and lag within MAX_LAG_SECONDS. The startup probe
# passes once the server answers; it waits a little within one probe, first
# for the server and then for the sidecar to settle the role, so a starting
# pod turns ready without waiting out another probe period. prestop is the
# server container's preStop hook, not a probe: it fences the server, then
# waits for the Services to drop the pod.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Why the pod cannot serve its role, or nothing when it can.
# Fails only when the server does not answer.
not_ready() {
  local state ro host io sq lag
  state=$(local_state) || return 1
  read -r ro host io sq lag _ <<<"$state"
  if [[ -e $QUARANTINE_FILE ]]; then echo "quarantined: errant transactions"
  elif [[ $ro == 0 ]]; then :
  elif [[ $host == - ]]; then echo "read-only and not replicating"
  elif [[ $io != Yes || $sq != Yes ]]; then echo "replication threads: io=$io sql=$sq"
  elif [[ $lag == - ]] || ((lag > MAX_LAG_SECONDS)); then echo "lag ${lag}s exceeds ${MAX_LAG_SECONDS}s"
  fi
  return 0
}

# Poll a command every 0.1 s for up to $1 seconds.
within() {
  local tries=$(($1 * 10)); shift
  until "$@"; do
    ((--tries > 0)) || return 1
    sleep 0.1
  done
}

ready() { local reason; reason=$(not_ready 2>/dev/null) && [[ -z $reason ]]; }

case ${1:-} in
  startup)
    within 3 server_alive || die "server does not answer"
    within 1 ready || true
    ;;
  liveness)
    server_alive || die "server does not answer"
    ;;
  readiness)
    reason=$(not_ready) || die "server does not answer"
    [[ -z $reason ]] || die "$reason"
    ;;
  prestop)
    # Fenced before SIGTERM, a primary stops taking writes: its clients get a
    # read-only error instead of a reset in the middle of a commit, and the
    # controller or the CLI hands over to a replica. A node that comes back
    # boots fenced anyway. A transaction holding locks delays this at most 5 s.
    if server_alive; then
      if [[ $FLAVOR == mysql ]]; then fence="SET GLOBAL super_read_only = ON"; else fence="SET GLOBAL read_only = ON"; fi
      if sql_local -e "SET SESSION lock_wait_timeout = 5; $fence"; then
        log "fenced before the stop"
      else
        log "could not fence before the stop; stopping anyway"
      fi
    fi
    sleep "${2:-0}"
    ;;
  *)
    die "usage: probe.sh startup|liveness|readiness|prestop [SECONDS]"
    ;;
esac
