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
cp -f "$CONFIG_SRC/$FLAVOR.cnf" "$CONF_DIR/flavor.cnf"
cp -f "$CONFIG_SRC/$role.cnf" "$CONF_DIR/role.cnf"
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
# TLS: replicas check this certificate against the CA; the replication
# account requires TLS.
ssl_ca = $TLS_CA
ssl_cert = $TLS_CERT
ssl_key = $TLS_KEY
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
# Only a cluster that never held data gets a new primary: once one served, its
# data is on the other volumes (or gone, and only `destroy --delete-data`
# starts over), and an empty primary would have them quarantined and recloned.
held_by=$(cluster_primary)
if [[ -n $held_by ]]; then
  log "no data, but this cluster has held data (its recorded primary: $held_by): never initializing an" \
    "empty primary over it; clone-mysql clones from a peer with the data (to start over without it:" \
    "mysqlsts destroy --delete-data, then bootstrap)"
  exit 0
fi
peers=$(peer_pods)
if [[ -n $peers ]]; then
  log "no data, but peers exist ($(tr '\n' ' ' <<<"$peers")): cloning instead of bootstrapping a new primary"
  exit 0
fi

log "no data and no peers: initializing the first primary"

# Accounts, from the Secret, run by the server's own bootstrap: no temporary
# server, and the SQL reaches it through a pipe, never argv or a file.
root_password=$(secret root-password)
operator_password=$(secret operator-password)
replication_password=$(secret replication-password)
clone_secret=$(secret clone-secret)
accounts_sql() {
  echo "SET sql_log_bin = 0;"
  if [[ $FLAVOR == mariadb ]]; then
    echo "FLUSH PRIVILEGES;" # bootstrap mode starts with the grant tables unloaded
  else
    echo "ALTER USER 'root'@'localhost' IDENTIFIED BY $(sql_quote "$root_password");"
  fi
  echo "CREATE USER 'root'@'%' IDENTIFIED BY $(sql_quote "$root_password");"
  echo "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;"
  echo "CREATE USER '$OPERATOR_USER'@'%' IDENTIFIED BY $(sql_quote "$operator_password");"
  echo "GRANT ALL PRIVILEGES ON *.* TO '$OPERATOR_USER'@'%';"
  echo "CREATE USER '$REPLICATION_USER'@'%' IDENTIFIED BY $(sql_quote "$replication_password") REQUIRE SSL;"
  echo "GRANT REPLICATION SLAVE ON *.* TO '$REPLICATION_USER'@'%';"
  if [[ $FLAVOR == mysql ]]; then
    # The CLONE plugin's donor account, whatever mysql.cloneMethod says now (it may change): a
    # recipient proves itself twice, with a certificate of the cluster's CA and the clone secret.
    echo "CREATE USER '$CLONE_USER'@'%' IDENTIFIED BY $(sql_quote "$clone_secret") REQUIRE X509;"
    echo "GRANT BACKUP_ADMIN ON *.* TO '$CLONE_USER'@'%';"
  fi
  if [[ $FLAVOR == mariadb ]]; then
    # read_only is MariaDB's fence. Only the operator account keeps READ_ONLY
    # ADMIN, which it needs to move the fence; every other account loses it.
    echo "SELECT CONCAT('REVOKE READ_ONLY ADMIN ON *.* FROM ', GROUP_CONCAT(CONCAT(QUOTE(User), '@', QUOTE(Host))))" \
      "INTO @revoke FROM mysql.global_priv WHERE User NOT IN ('', 'PUBLIC', 'mariadb.sys', '$OPERATOR_USER');"
    echo "PREPARE revoke_fence_admin FROM @revoke;"
    echo "EXECUTE revoke_fence_admin;"
  fi
}

mkdir -p "$STAGING_DIR"
os_user=$(id -un)
if [[ $FLAVOR == mysql ]]; then
  quietly "$SERVER_BIN" --no-defaults --initialize-insecure --datadir="$STAGING_DIR" --user="$os_user" \
    --init-file=<(accounts_sql) || die "initializing the data directory failed"
else
  mariadb-install-db --no-defaults --datadir="$STAGING_DIR" --user="$os_user" --skip-test-db \
    --auth-root-authentication-method=socket >/dev/null || die "mariadb-install-db failed"
  accounts_sql | quietly "$SERVER_BIN" --defaults-file="$CONF_DIR/my.cnf" --bootstrap --datadir="$STAGING_DIR" \
    --read-only=OFF || die "creating the accounts failed"
fi

record_primary "$POD_NAME"
touch "$BOOTSTRAP_MARKER"
mv "$STAGING_DIR" "$DATA_DIR"
sync "$PV_DIR" 2>/dev/null || sync
cp -f "$CONFIG_SRC/primary.cnf" "$CONF_DIR/role.cnf"
log "initialized the first primary"
