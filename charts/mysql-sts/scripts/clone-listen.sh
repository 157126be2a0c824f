#!/usr/bin/env bash
# Container "clone" (backup image): the clone listener. TLS both ways: the
# peer must present a certificate signed by the cluster's CA (verify=1 on a
# listener asks for one and refuses a connection without it) before
# clone-serve.sh even sends its challenge. socat forks one clone-serve.sh per
# connection; a listener that exits is started again. The role, the
# readiness and the fence before a stop are the agent container's
# (mysqlsts agent).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

socat_pid=""
trap '[[ -n $socat_pid ]] && kill "$socat_pid" 2>/dev/null; exit 0' TERM INT

# A backup needs the server: serve once it answers.
until server_alive; do sleep 1; done
while true; do
  log "serving clone streams over TLS on $BIND_ADDRESS:$CLONE_PORT"
  socat "OPENSSL-LISTEN:$CLONE_PORT,bind=$BIND_ADDRESS,reuseaddr,fork,cert=$TLS_CERT,key=$TLS_KEY,cafile=$TLS_CA,verify=1,$TCP_KEEPALIVE" \
    "EXEC:bash $SCRIPTS_DIR/clone-serve.sh" &
  socat_pid=$!
  wait "$socat_pid" || true
  log "clone listener exited; restarting it"
  sleep 1 &
  wait $! || true
done
