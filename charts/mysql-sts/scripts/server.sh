#!/usr/bin/env bash
# Main container: the database server with the config init-mysql wrote. It
# always boots read-only; only the agent container or the orchestrator promotes it.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -d $DATA_DIR ]] || die "no data directory: the init containers did not complete"
mkdir -p "$RUN_DIR"

# MariaDB with semi-sync boots as a replica (init_rpl_role, mariadb.cnf), so its
# crash recovery cuts an unacknowledged tail from the binlog. Recovery refuses,
# and the server will not start, when a statement it cannot roll back (DDL, a
# non-transactional table) lies past the cut. The server's log is watched for
# that refusal; the next start then recovers the tail as it is, once, and the
# agent quarantines the pod if the primary lacks it.
REFUSED_FILE=$PV_DIR/truncation-refused
REFUSAL="Cannot truncate the binary log"
args=()
if [[ -s $REFUSED_FILE ]]; then
  log "the last crash recovery refused to cut the unacknowledged tail ($(<"$REFUSED_FILE")): recovering it as it is"
  args+=(--init-rpl-role=MASTER)
  rm -f "$REFUSED_FILE"
fi

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

exec "$SERVER_BIN" --defaults-file="$CONF_DIR/my.cnf" "${args[@]}" 2> >(watch_recovery)
