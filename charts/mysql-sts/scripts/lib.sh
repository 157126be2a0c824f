# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables below are used by the scripts that source this file
# Helpers shared by every pod script; sourced, never run. The same files run in
# a Kubernetes pod and in the mysqlsts local runtime: everything that differs
# between the two comes in through the environment (see script_env in
# mysqlsts/chart/render.py).
#
# Secrets are files in SECRETS_DIR (a read-only Secret volume), read only
# where needed into unexported shell variables. They reach the client through
# an option file on a pipe (<(...)) and the backup tool through a 0600 option
# file on the memory-backed RUN_DIR: never through arguments or any process's
# environment, and never logged. Replication and the clone stream use TLS with
# the CA and certificate in TLS_DIR (another Secret volume).

: "${POD_NAME:?}" "${CLUSTER_NAME:?}" "${HEADLESS_SERVICE:?}" "${POD_NAMESPACE:?}" "${CLUSTER_DOMAIN:?}"
: "${FLAVOR:?}" "${SERVER_ID_OFFSET:?}" "${MYSQL_PORT:?}" "${CLONE_PORT:?}" "${MAX_LAG_SECONDS:?}" "${SEMI_SYNC:?}"
: "${MYSQLSTS_HOME_DIR:?}" "${CONF_DIR:?}" "${PV_DIR:?}" "${RUN_DIR:?}" "${TOOLS_DIR:?}"
: "${SECRETS_DIR:?}" "${TLS_DIR:?}"

BIND_ADDRESS=${BIND_ADDRESS:-0.0.0.0}
PATH=$TOOLS_DIR:$PATH # socat, from the install-tools init container
ORDINAL=${POD_NAME##*-}
SCRIPTS_DIR=$MYSQLSTS_HOME_DIR/scripts
CONFIG_SRC=$MYSQLSTS_HOME_DIR/config
DATA_DIR=$PV_DIR/data          # exists only once complete: created by rename
STAGING_DIR=$PV_DIR/staging    # clone or initialization in progress; wiped on start
CLONE_GTID_FILE=$PV_DIR/clone-gtid        # GTID position of a fresh clone, applied once by server.sh
RECORDED_PRIMARY_FILE=$PV_DIR/recorded-primary  # the primary this pod last followed (or itself)
QUARANTINE_FILE=$PV_DIR/quarantined       # errant transactions found: never rejoin by itself
BOOTSTRAP_MARKER=$PV_DIR/bootstrap-primary # init-mysql just created the first primary: the agent may unfence it once
SOCKET=$RUN_DIR/mysqld.sock
# The agent container (mysqlsts agent, mysqlsts/agent/podenv.py names the same files):
AGENT_READY_FILE=$RUN_DIR/agent-ready     # its readiness verdict, rewritten every second: empty = ready
AGENT_ROLE_FILE=$RUN_DIR/agent-role       # with it, what the pod can serve as: primary, replica or none
AGENT_STALE_SECONDS=10                    # an older verdict means the agent is not running (or hangs)
STOP_REQUEST_FILE=$RUN_DIR/stopping       # probe.sh prestop asks it to fence the server
FENCED_FILE=$RUN_DIR/fenced               # its answer: empty = fenced, else why not
OPERATOR_USER=mysqlsts
REPLICATION_USER=repl
CLONE_USER=mysqlsts_clone # MySQL: the CLONE plugin's donor account (BACKUP_ADMIN), its password the clone secret
TLS_CA=$TLS_DIR/ca.crt
TLS_CERT=$TLS_DIR/tls.crt
TLS_KEY=$TLS_DIR/tls.key
SECRET_NAMES=(root-password replication-password operator-password clone-secret)
# socat options for both ends of a clone stream. A peer whose node vanishes
# sends no reset: keepalive ends the connection after about 10 + 3 x 5 s of
# silence from its kernel, where the clone would wait forever and the donor's
# backup would hold its backup locks. A peer that is alive but quiet (a backup
# waiting for a lock) still answers the probes.
TCP_KEEPALIVE=keepalive,keepidle=10,keepintvl=5,keepcnt=3

case $FLAVOR in
  mysql) SERVER_BIN=mysqld CLIENT_BIN=mysql BACKUP_BIN=xtrabackup STREAM_BIN=xbstream BINLOG_BIN=mysqlbinlog ;;
  mariadb) SERVER_BIN=mariadbd CLIENT_BIN=mariadb BACKUP_BIN=mariabackup STREAM_BIN=mbstream BINLOG_BIN=mariadb-binlog ;;
  *) echo "unknown FLAVOR $FLAVOR" >&2; exit 1 ;;
esac
# How an empty pod copies its data (mysql.cloneMethod): the backup tool's stream over the clone
# port, or MySQL's CLONE plugin over the server's port. Pods rendered before the key cloned with
# their flavor's backup tool.
CLONE_METHOD=${CLONE_METHOD:-$BACKUP_BIN}

log() { printf '%s %s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "$POD_NAME" "${0##*/}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

pod_fqdn() { printf '%s.%s.%s.svc.%s' "$1" "$HEADLESS_SERVICE" "$POD_NAMESPACE" "$CLUSTER_DOMAIN"; }
SELF_FQDN=$(pod_fqdn "$POD_NAME")

# A string as an SQL literal (default sql_mode: backslash escapes on).
sql_quote() {
  local s=${1//\\/\\\\}
  s=${s//\'/\\\'}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  printf "'%s'" "$s"
}

# A string as an option-file value: quoted, so spaces and '#' survive.
cnf_quote() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }

# The content of one secret file (trailing newlines dropped, as a file made by
# hand often ends with one). Assign it (`pw=$(secret NAME)`) so set -e stops a
# script whose secret is missing.
secret() {
  local file=$SECRETS_DIR/$1
  [[ -r $file && -s $file ]] || { log "ERROR: secret $1 missing or unreadable in $SECRETS_DIR"; return 1; }
  printf '%s' "$(<"$file")"
}

# An option file for USER with the password in secret file NAME: [client] for
# the SQL client, GROUP for another tool.
client_cnf() {
  local password
  password=$(secret "$2") || return 1
  printf '[%s]\nuser=%s\npassword=%s\n' "${3:-client}" "$1" "$(cnf_quote "$password")"
}

# SQL on stdin (or -e) against the local server over the socket, as the operator.
sql_local() {
  "$CLIENT_BIN" --defaults-extra-file=<(client_cnf "$OPERATOR_USER" operator-password) \
    --socket="$SOCKET" --connect-timeout=3 -B "$@"
}

# Error text with every secret replaced: the client echoes failing statements,
# and a syntax error quotes the text near it.
redact() {
  local s=$1 p q name
  for name in "${SECRET_NAMES[@]}"; do
    p=$(secret "$name" 2>/dev/null) || continue
    q=$(sql_quote "$p")
    s=${s//"${q:1:${#q}-2}"/<redacted>}
    s=${s//"$p"/<redacted>}
  done
  printf '%s\n' "$s"
}

# Run a client whose SQL (stdin) carries secrets: on failure, report only the
# redacted ERROR lines, never the statement.
quietly() {
  local err
  if ! err=$("$@" 2>&1 >/dev/null); then
    redact "$(grep -E 'ERROR' <<<"$err" || echo "ERROR (no message)")" >&2
    return 1
  fi
}

server_alive() { sql_local -e 'SELECT 1' >/dev/null 2>&1; }

# Pods of the set that DNS knows, self excluded. Ordinals are contiguous, so
# stop after a few names in a row that do not resolve.
peer_pods() {
  local i=0 misses=0 name
  while ((misses < 3)); do
    name="$CLUSTER_NAME-$i"
    if [[ $name == "$POD_NAME" ]]; then
      misses=0
    elif getent hosts "$(pod_fqdn "$name")" >/dev/null 2>&1; then
      printf '%s\n' "$name"
      misses=0
    else
      misses=$((misses + 1))
    fi
    i=$((i + 1))
  done
}

# What this pod can serve as, by its agent's verdict (a stale one means the
# agent is not running): primary, replica (ready) or none.
agent_role() {
  local modified
  if modified=$(stat -c %Y "$AGENT_ROLE_FILE" 2>/dev/null) &&
    (($(date +%s) - modified <= AGENT_STALE_SECONDS)) && [[ -s $AGENT_ROLE_FILE ]]; then
    cat "$AGENT_ROLE_FILE"
  else
    echo none
  fi
}

# A TLS connection to a peer's clone listener, for socat: the peer is checked
# against the cluster's CA by its per-pod name, and shows it our certificate.
tls_to() { printf 'OPENSSL:%s:%s,cafile=%s,cert=%s,key=%s,verify=1,connect-timeout=%s,%s' \
  "$(pod_fqdn "$1")" "$CLONE_PORT" "$TLS_CA" "$TLS_CERT" "$TLS_KEY" "$2" "$TCP_KEEPALIVE"; }
# What a peer can serve as, by its agent's verdict, from its clone listener's
# first line (-t 5: after our one line, wait for the listener's, which starts a
# script first); empty when it does not answer.
peer_role() {
  printf 'probe %s\n' "$POD_NAME" | timeout 10 socat -t 5 - "$(tls_to "$1" 3)" 2>/dev/null | head -n 1 | cut -s -d' ' -f2
}

record_primary() { printf '%s\n' "$1" >"$RECORDED_PRIMARY_FILE.tmp" && mv -f "$RECORDED_PRIMARY_FILE.tmp" "$RECORDED_PRIMARY_FILE"; }
# GTID position of a prepared copy. The backup tool writes "binlog-file
# position gtid-set" into xtrabackup_binlog_info (mariadb_backup_binlog_info
# from MariaDB 11.1 on), wrapping a set of several UUIDs over lines: every word
# from the third on, joined.
backup_gtid() {
  local info
  for info in "$1/mariadb_backup_binlog_info" "$1/xtrabackup_binlog_info"; do
    [[ -f $info ]] || continue
    tr -s ' \t\n' '   ' <"$info" | sed 's/^ //' | cut -d' ' -f3- | tr -d ' \n'
    return 0
  done
  return 1
}

recorded_primary() { cat "$RECORDED_PRIMARY_FILE" 2>/dev/null || true; }

# The cluster's recorded primary (a ConfigMap mysqlsts writes once a primary
# serves), empty for a cluster that never had one.
cluster_primary() { cat "${RECORD_DIR:-/nonexistent}/primary" 2>/dev/null || true; }

# Keyed answer to a clone challenge: sha256(nonce ":" secret). printf is a
# builtin, so the secret never shows up in any process's arguments.
clone_answer() {
  local clone_secret
  clone_secret=$(secret clone-secret) || return 1
  printf '%s:%s' "$1" "$clone_secret" | sha256sum | cut -d' ' -f1
}
