#!/usr/bin/env bash
# Main container: the database server with the config init-mysql wrote. It
# always boots read-only; only the agent container or the orchestrator promotes it.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -d $DATA_DIR ]] || die "no data directory: the init containers did not complete"
mkdir -p "$RUN_DIR"
exec "$SERVER_BIN" --defaults-file="$CONF_DIR/my.cnf"
