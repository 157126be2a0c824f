#!/usr/bin/env bash
# Probes: startup and liveness ask whether the server answers; readiness asks
# whether the pod can serve its role: the primary is writable, a replica
# replicates with both threads running and lag within MAX_LAG_SECONDS.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case ${1:-} in
  startup | liveness)
    server_alive || die "server does not answer"
    ;;
  readiness)
    read -r ro host io sq lag _gtid <<<"$(local_state)"
    [[ ! -e $QUARANTINE_FILE ]] || die "quarantined: errant transactions"
    [[ $ro == 0 ]] && exit 0
    [[ $host != - ]] || die "read-only and not replicating"
    [[ $io == Yes && $sq == Yes ]] || die "replication threads: io=$io sql=$sq"
    if [[ $lag == - ]] || ((lag > MAX_LAG_SECONDS)); then die "lag ${lag}s exceeds ${MAX_LAG_SECONDS}s"; fi
    ;;
  *)
    die "usage: probe.sh startup|liveness|readiness"
    ;;
esac
