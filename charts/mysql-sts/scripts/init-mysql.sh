#!/usr/bin/env bash
# Init container 1: ordinal -> server-id and config; on a brand-new cluster,
# ordinal 0 initializes the first primary's data directory.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mkdir -p "$CONF_DIR" "$PV_DIR" "$RUN_DIR"

# Config: shared flavor settings, then this pod's identity, then its role.
role=replica
[[ $(recorded_primary) == "$POD_NAME" ]] && role=primary
cp "$CONFIG_SRC/$FLAVOR.cnf" "$CONF_DIR/flavor.cnf"
cp "$CONFIG_SRC/$role.cnf" "$CONF_DIR/role.cnf"
cat >"$CONF_DIR/my.cnf" <<CNF
!include $CONF_DIR/flavor.cnf
!include $CONF_DIR/role.cnf
[mysqld]
user = ${MYSQL_OS_USER:-mysql}
server_id = $((SERVER_ID_OFFSET + ORDINAL))
report_host = $SELF_FQDN
report_port = $MYSQL_PORT
bind_address = $BIND_ADDRESS
datadir = $DATA_DIR
socket = $SOCKET
pid_file = $RUN_DIR/mysqld.pid
tmpdir = ${TMPDIR:-/tmp}
[client]
socket = $SOCKET
CNF
log "config written (server_id $((SERVER_ID_OFFSET + ORDINAL)), boots read-only as $role)"

# Anything in staging is an interrupted clone or initialization: never data.
rm -rf "$STAGING_DIR"

if [[ -d $DATA_DIR ]]; then
  log "data directory present; keeping it"
  exit 0
fi
if ((ORDINAL != 0)); then
  log "no data yet; clone-mysql will clone it from a peer"
  exit 0
fi
peers=$(peer_pods)
if [[ -n $peers ]]; then
  log "no data, but peers exist ($(tr '\n' ' ' <<<"$peers")): cloning instead of bootstrapping a new primary"
  exit 0
fi

log "no data and no peers: initializing the first primary"
mkdir -p "$STAGING_DIR"
os_user=$(id -un)
if [[ $FLAVOR == mysql ]]; then
  "$SERVER_BIN" --no-defaults --initialize-insecure --datadir="$STAGING_DIR" --user="$os_user" >&2
  admin_user=root
else
  mariadb-install-db --no-defaults --datadir="$STAGING_DIR" --user="$os_user" --skip-test-db \
    --auth-root-authentication-method=socket >/dev/null
  admin_user=$os_user # unix_socket account of the OS user running the server
fi

init_socket=$RUN_DIR/init.sock
unfenced=(--read-only=OFF)
[[ $FLAVOR == mysql ]] && unfenced+=(--super-read-only=OFF)
"$SERVER_BIN" --defaults-file="$CONF_DIR/my.cnf" --datadir="$STAGING_DIR" --skip-networking \
  --socket="$init_socket" --pid-file="$RUN_DIR/init.pid" "${unfenced[@]}" >&2 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true' EXIT
admin() { "$CLIENT_BIN" --no-defaults --user="$admin_user" --socket="$init_socket" -N -B "$@"; }
for _ in $(seq 1 120); do
  admin -e 'SELECT 1' >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || die "the server exited while initializing"
  sleep 0.5
done
admin -e 'SELECT 1' >/dev/null || die "the server did not come up to initialize"

# Accounts, from the Secret. SQL goes through stdin: no password in argv.
{
  echo "SET sql_log_bin = 0;"
  echo "CREATE USER 'root'@'%' IDENTIFIED BY $(sql_quote "$MYSQLSTS_ROOT_PASSWORD");"
  echo "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;"
  echo "CREATE USER '$OPERATOR_USER'@'%' IDENTIFIED BY $(sql_quote "$MYSQLSTS_OPERATOR_PASSWORD");"
  echo "GRANT ALL PRIVILEGES ON *.* TO '$OPERATOR_USER'@'%';"
  echo "CREATE USER '$REPLICATION_USER'@'%' IDENTIFIED BY $(sql_quote "$MYSQLSTS_REPLICATION_PASSWORD");"
  echo "GRANT REPLICATION SLAVE ON *.* TO '$REPLICATION_USER'@'%';"
} | quietly admin || die "creating the accounts failed"
if [[ $FLAVOR == mariadb ]]; then
  # read_only is MariaDB's fence. Only the operator account keeps READ_ONLY ADMIN,
  # which it needs to move the fence; root and every other account lose it.
  admin -e "SELECT CONCAT(QUOTE(User), '@', QUOTE(Host)) FROM mysql.global_priv
            WHERE User NOT IN ('', 'PUBLIC', 'mariadb.sys', '$OPERATOR_USER')" |
    while read -r account; do
      admin --force -e "REVOKE READ_ONLY ADMIN ON *.* FROM $account" 2>/dev/null || true
    done
fi
admin -e 'SHUTDOWN'
wait "$server_pid" || true
trap - EXIT

record_primary "$POD_NAME"
mv "$STAGING_DIR" "$DATA_DIR"
sync "$PV_DIR" 2>/dev/null || sync
cp "$CONFIG_SRC/primary.cnf" "$CONF_DIR/role.cnf"
log "initialized the first primary"
