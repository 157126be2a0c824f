#!/usr/bin/env bash
# Probes of the server container. Liveness asks whether the server answers.
# Readiness reads the verdict of the agent container (mysqlsts agent), which
# judges every second whether the pod can serve its role (the primary is
# writable; a replica replicates with both threads running and lag within
# MAX_LAG_SECONDS) and writes it to AGENT_READY_FILE: empty when ready, else
# the reason. A verdict older than AGENT_STALE_SECONDS means the agent is not
# running (or hangs): not ready. The startup probe passes once the server answers; it
# waits a little within one probe, first for the server and then for the
# agent to settle the role, so a starting pod turns ready without waiting out
# another probe period. prestop is the server container's preStop hook, not a
# probe: it asks the agent to fence the server, then waits for the Services to
# drop the pod.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"


# Why the pod cannot serve its role, or nothing when it can.
not_ready() {
  local modified
  modified=$(stat -c %Y "$AGENT_READY_FILE" 2>/dev/null) || { echo "no verdict from the agent yet"; return; }
  if (($(date +%s) - modified > AGENT_STALE_SECONDS)); then
    echo "the agent's verdict is older than ${AGENT_STALE_SECONDS}s: the agent is not running"
  else
    cat "$AGENT_READY_FILE"
  fi
}

# Poll a command every 0.1 s until it succeeds, for $1 seconds of the clock at most.
within() {
  local deadline=$((${EPOCHREALTIME//[.,]/} + $1 * 1000000)); shift
  until "$@"; do
    ((${EPOCHREALTIME//[.,]/} < deadline)) || return 1
    sleep 0.1
  done
}

ready() { [[ -z $(not_ready) ]]; }

case ${1:-} in
  startup)
    within 3 server_alive || die "server does not answer"
    within 1 ready || true
    ;;
  liveness)
    server_alive || die "server does not answer"
    ;;
  readiness)
    reason=$(not_ready)
    [[ -z $reason ]] || die "$reason"
    ;;
  prestop)
    # Fenced before SIGTERM, a primary stops taking writes: its clients get a
    # read-only error instead of a reset in the middle of a commit, and the
    # controller or the CLI hands over to a replica. A node that comes back
    # boots fenced anyway. The agent fences (a transaction holding locks
    # delays it 2 s at most, then it is ended); this waits 5 s at most.
    rm -f "$FENCED_FILE"
    : >"$STOP_REQUEST_FILE"
    if within 5 test -e "$FENCED_FILE"; then
      answer=$(cat "$FENCED_FILE")
      log "${answer:-fenced before the stop}"
    else
      log "the agent did not fence the server within 5s; stopping anyway"
    fi
    sleep "${2:-0}"
    ;;
  *)
    die "usage: probe.sh startup|liveness|readiness|prestop [SECONDS]"
    ;;
esac
