"""Read one server's replication state over SQL, the same way for both flavors."""

from __future__ import annotations

import functools
import ssl

import pymysql

from mysqlsts.decisions import gtid
from mysqlsts.flavors import Flavor
from mysqlsts.model import ServerState

OPERATOR_USER = "mysqlsts"


@functools.cache
@functools.cache
def client_tls(ca: str | None = None) -> ssl.SSLContext:
    """The TLS of a connection to a server, built once per CA and process (left to pymysql, every
    connection builds its own and loads the system's CA store, some 20 ms of a failover's every step).
    With the cluster's CA (PEM text), the server's certificate must be signed by it; its names are not
    compared: a role change reaches a pod at its address as often as by its name. Without, encrypted
    only (a client of the tests or benchmarks)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    if ca:
        context.load_verify_locations(cadata=ca)
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def connect(host: str, port: int, password: str, flavor: Flavor, timeout: float = 3.0,
            database: str | None = None, read_timeout: float | None = None, user: str = OPERATOR_USER,
            unix_socket: str | None = None, bind_address: str | None = None, ca: str | None = None):
    """A connection by host name over TCP, always TLS (`ca`: the cluster's CA, which must have signed
    the server's certificate), or through the server's unix socket when one is given (the pod agent and
    its own server). `bind_address`: the source address, for a client on an isolated pod's side of a
    partition (local runtime)."""
    read_timeout = read_timeout or timeout + 2
    tls = unix_socket is None
    return pymysql.connect(host=host, port=port, user=user, password=password, database=database,
                           connect_timeout=timeout, read_timeout=read_timeout, write_timeout=read_timeout,
                           autocommit=True, ssl=client_tls(ca) if tls else None, ssl_disabled=not tls,
                           unix_socket=unix_socket, bind_address=bind_address)


def held(conn, flavor: Flavor) -> str:
    """The GTIDs the server holds, in its flavor's notation, as a server takes them back."""
    with conn.cursor() as cur:
        cur.execute(flavor.gtid_executed_sql)
        return str(gtid.parse(flavor, (cur.fetchone()[0] or "").replace("\n", "")))


def observe(conn, flavor: Flavor) -> ServerState:
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        sro = f", @@GLOBAL.{flavor.super_read_only_var} AS sro" if flavor.super_read_only_var else ""
        cur.execute(f"SELECT @@GLOBAL.read_only AS ro{sro}")
        row = cur.fetchone()
        gtids = held(conn, flavor)
        cur.execute(flavor.replica_status_sql)
        replica = cur.fetchone()
        cur.execute("SHOW GLOBAL STATUS WHERE Variable_name = %s", (flavor.semi_sync_source_status,))
        source_status = cur.fetchone()
        cur.execute(f"SELECT @@GLOBAL.{flavor.semi_sync_replica_var} AS v, {flavor.origin_sql} AS origin, "
                    f"@@GLOBAL.{flavor.semi_sync_wait_alone_var} AS alone")
        extra = cur.fetchone()
        replica_on = bool(int(extra["v"]))

    def field(mysql_name: str):
        """A replica status column by its MySQL 8.4 name, read as the flavor names it."""
        if not replica:
            return None
        return replica.get(flavor.column(mysql_name))

    lag = field("Seconds_Behind_Source")
    retrieved = str(field("Retrieved_Gtid_Set") or "").replace("\n", "")
    errors = [str(field(name) or "") for name in ("Last_IO_Error", "Last_SQL_Error")]
    return ServerState(
        read_only=bool(int(row["ro"])),
        super_read_only=bool(int(row["sro"])) if "sro" in row else None,
        gtid=gtids,
        source_host=field("Source_Host") or None,
        io_running=field("Replica_IO_Running"),
        sql_running=field("Replica_SQL_Running"),
        lag=int(lag) if lag is not None else None,
        last_error="; ".join(e for e in errors if e),
        semi_sync_source_on=bool(source_status) and str(source_status["Value"]).upper() == "ON",
        semi_sync_replica_on=replica_on,
        retrieved=retrieved,
        io_errno=int(field("Last_IO_Errno") or 0),
        origin=str(extra["origin"]),
        semi_sync_waits_alone=bool(int(extra["alone"])),
    )
