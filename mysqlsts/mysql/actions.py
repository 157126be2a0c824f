"""The few statements that move a server between roles, for both flavors.

Fencing is read_only (MariaDB, whose mysqlsts accounts lack READ_ONLY ADMIN)
or super_read_only (MySQL). A server is only ever made writable after it is
the source of every other node's replication, so a fresh primary never waits
for semi-sync acknowledgements that cannot come.
"""

from __future__ import annotations

import time

import pymysql

from mysqlsts.decisions import gtid
from mysqlsts.errors import OperationFailed, failing_as
from mysqlsts.flavors import Flavor
from mysqlsts.mysql.observe import held, observe


def execute(conn, *statements: str, args: tuple | None = None) -> None:
    with conn.cursor() as cur:
        for sql in statements:
            cur.execute(sql, args)


SEMI_SYNC_WAIT_STATE = "Waiting for semi-sync ACK%"  # both flavors' processlist state of an unacknowledged commit
# Sessions a fence never ends: its own, the server's threads, and the replicas' binlog dump threads
# (a switchover's candidate still receives the old primary's last transactions through them).
_SPARED = ("id <> CONNECTION_ID() AND user NOT IN ('system user', 'event_scheduler') "
           "AND LEFT(command, 11) <> 'Binlog Dump'")


def fence(conn, flavor: Flavor, grace: float) -> list[int]:
    """Make the server refuse writes; returns the connection ids it ended to get there.

    Setting read_only waits for what holds a commit or a lock: a transaction holding writes, a
    LOCK TABLES ... WRITE, a commit waiting for a semi-sync acknowledgement that may never come (no
    replica, or none connected). After `grace` seconds (at least 1) the holders are ended: the
    transactions and the waiting commits (their clients are cut off, never acknowledged: the commit
    stays on this node only, as a killed primary's tail does), then, if that was not enough, every
    client session. A semi-sync source is switched to async for the moment its waiting commits need
    to finish, and back once fenced: nothing commits on a fenced server. A fence that still cannot be
    set raises error 1205 naming the sessions that hold it."""
    killed: list[int] = []
    with conn.cursor() as cur:
        cur.execute("SET SESSION lock_wait_timeout = %s", (max(1, int(grace)),))
        for ending in (_holders, _clients, None):
            try:
                _set_fence(cur, flavor)
                return killed
            except pymysql.err.OperationalError as e:
                if e.args[0] != 1205:
                    raise
                if ending is None:
                    raise pymysql.err.OperationalError(1205, f"the fence (read_only) is held by: {_sessions(cur)}") \
                        from e
            cur.execute("SET SESSION lock_wait_timeout = 1")
            killed += _kill(cur, ending(cur, flavor))
            _release_waiting_commits(cur, flavor)
    return killed


def _set_fence(cur, flavor: Flavor) -> None:
    cur.execute("SET GLOBAL read_only = ON")
    if flavor.super_read_only_var:
        cur.execute(f"SET GLOBAL {flavor.super_read_only_var} = ON")


def _holders(cur, flavor: Flavor) -> set[int]:
    """Sessions in a transaction, waiting for a semi-sync acknowledgement, or (MySQL) holding a table lock."""
    cur.execute("SELECT trx_mysql_thread_id FROM information_schema.innodb_trx WHERE trx_mysql_thread_id <> "
                "CONNECTION_ID()")
    found = {int(r[0]) for r in cur.fetchall()}
    cur.execute(f"SELECT id FROM information_schema.processlist WHERE {_SPARED} AND state LIKE %s",
                (SEMI_SYNC_WAIT_STATE,))
    found |= {int(r[0]) for r in cur.fetchall()}
    if flavor.name == "mysql":  # MariaDB ships performance_schema off: its clients go in the second round
        cur.execute("SELECT DISTINCT t.processlist_id FROM performance_schema.metadata_locks l "
                    "JOIN performance_schema.threads t ON t.thread_id = l.owner_thread_id "
                    "WHERE l.lock_status = 'GRANTED' AND l.object_type IN ('TABLE', 'GLOBAL', 'COMMIT', 'BACKUP LOCK') "
                    "AND t.processlist_id IS NOT NULL AND t.processlist_id <> CONNECTION_ID() "
                    "AND t.processlist_user NOT IN ('system user', 'event_scheduler')")
        found |= {int(r[0]) for r in cur.fetchall()}
    return found


def _clients(cur, flavor: Flavor) -> set[int]:
    cur.execute(f"SELECT id FROM information_schema.processlist WHERE {_SPARED}")
    return {int(r[0]) for r in cur.fetchall()}


def _kill(cur, threads: set[int]) -> list[int]:
    killed = []
    for thread in sorted(threads):
        try:
            cur.execute(f"KILL CONNECTION {int(thread)}")
            killed.append(thread)
        except pymysql.MySQLError:
            pass  # it finished meanwhile
    return killed


def _release_waiting_commits(cur, flavor: Flavor) -> None:
    """A killed session's commit goes on waiting for its acknowledgement, and holds the fence: switch
    the source to async until the fence is set, then back (a 1205 here is the caller's next try's)."""
    cur.execute("SELECT COUNT(*) FROM information_schema.processlist WHERE state LIKE %s", (SEMI_SYNC_WAIT_STATE,))
    if not cur.fetchone()[0]:
        return
    cur.execute(f"SELECT @@GLOBAL.{flavor.semi_sync_source_var}")
    if not int(cur.fetchone()[0]):
        return
    cur.execute(f"SET GLOBAL {flavor.semi_sync_source_var} = OFF")
    try:
        _set_fence(cur, flavor)
    except pymysql.err.OperationalError as e:
        if e.args[0] != 1205:
            raise
    finally:
        cur.execute(f"SET GLOBAL {flavor.semi_sync_source_var} = ON")


def _sessions(cur) -> str:
    cur.execute(f"SELECT id, user, host, command, state, LEFT(COALESCE(info, ''), 80) FROM "
                f"information_schema.processlist WHERE {_SPARED}")
    rows = cur.fetchall()
    return "; ".join(f"#{i} {u}@{h} {c} {st or '-'}: {info or '-'}" for i, u, h, c, st, info in rows) or \
        "no session (a server thread)"


def unfence(conn, flavor: Flavor) -> None:
    statements = [f"SET GLOBAL {flavor.super_read_only_var} = OFF"] if flavor.super_read_only_var else []
    execute(conn, *statements, "SET GLOBAL read_only = OFF")


def wait_applied(conn, flavor: Flavor, gtids: str, timeout: float) -> bool:
    """Until the server has applied every transaction in `gtids` (its relay log drained up to it).
    The connection's read timeout must exceed `timeout`."""
    if not gtids:
        return True
    with conn.cursor() as cur:
        if flavor.wait_sees_own_transactions:
            cur.execute(flavor.wait_gtids_sql, (gtids, timeout))
            return cur.fetchone()[0] == 0
        # MASTER_GTID_WAIT follows gtid_slave_pos only: a former primary holds its own
        # transactions in gtid_binlog_pos, so look at the whole position first.
        deadline = time.monotonic() + timeout
        with failing_as(gtid.GtidError):
            wanted = gtid.parse(flavor, gtids)
        while True:
            cur.execute(flavor.gtid_executed_sql)
            with failing_as(gtid.GtidError):
                applied = gtid.parse(flavor, cur.fetchone()[0])
            if applied.contains(wanted):
                return True
            if time.monotonic() >= deadline:
                return False
            cur.execute(flavor.wait_gtids_sql, (gtids, min(1.0, max(0.01, deadline - time.monotonic()))))
            cur.fetchone()


def stop_receiving(conn, flavor: Flavor) -> None:
    """Stop the IO thread only: nothing new arrives, and an isolated old primary can no longer collect
    acknowledgements from this node; what arrived is still applied. A server restarted keeps its relay log
    with its applier stopped (skip_replica_start): a failover waits for the candidate to apply it, and
    it may hold an acknowledged commit nobody else has, so a stopped applier of a replica is started."""
    execute(conn, flavor.stop_receiving_sql)
    state = observe(conn, flavor)
    if state.source_host and state.sql_running != "Yes":
        execute(conn, flavor.start_applying_sql)


def become_source(conn, flavor: Flavor, semi_sync: bool) -> None:
    """Stop replicating and start acknowledging as a semi-sync source, which holds a commit while no replica
    is connected; still fenced."""
    on = "ON" if semi_sync else "OFF"
    execute(conn, flavor.stop_replica_sql, flavor.reset_replica_sql,
            f"SET GLOBAL {flavor.semi_sync_replica_var} = OFF", f"SET GLOBAL {flavor.semi_sync_source_var} = {on}",
            f"SET GLOBAL {flavor.semi_sync_wait_alone_var} = ON")


def wait_alone(conn, flavor: Flavor, wait: bool) -> None:
    """Whether a semi-sync source with no replica connected holds a commit until one acknowledges it (the
    only setting once a cluster has replicas: no silent fall-back to async), or commits it unacknowledged
    (the first primary of a new cluster: its replicas must clone from it first, and a commit held there
    would hold their clone forever). Off, the source turns semi-sync on by itself once replicas connect."""
    execute(conn, f"SET GLOBAL {flavor.semi_sync_wait_alone_var} = {'ON' if wait else 'OFF'}")


def set_commit_delay(conn, flavor: Flavor, usec: int) -> None:
    """Make every binary-log group commit wait `usec` microseconds (0: not at all): the primary's
    throttle. MySQL has the delay itself (binlog_group_commit_sync_delay); MariaDB waits up to
    binlog_commit_wait_usec for a count of commits no group reaches, so every group waits that long."""
    if flavor.name == "mysql":
        execute(conn, "SET GLOBAL binlog_group_commit_sync_delay = %s", args=(usec,))
    elif usec:
        execute(conn, "SET GLOBAL binlog_commit_wait_usec = %s", args=(usec,))
        execute(conn, "SET GLOBAL binlog_commit_wait_count = 1000000")
    else:
        execute(conn, "SET GLOBAL binlog_commit_wait_count = 0")


def binlogs(conn) -> list[tuple[str, str | None]]:
    """The server's binary logs, oldest first, each with what was logged before it: the GTIDs of its
    first event (Previous_gtids on MySQL, Gtid_list on MariaDB), None where it has none."""
    with conn.cursor() as cur:
        cur.execute("SHOW BINARY LOGS")
        names = [row[0] for row in cur.fetchall()]
        out = []
        for name in names:
            cur.execute("SHOW BINLOG EVENTS IN %s LIMIT 4", (name,))
            info = next((row[5] for row in cur.fetchall() if row[2] in ("Previous_gtids", "Gtid_list")), None)
            out.append((name, None if info is None else info.strip("[]").replace("\n", "")))
    return out


def accept_password(conn, flavor: Flavor, user: str, host: str, old: str, new: str) -> None:
    """The account logs in with either password (MySQL's dual passwords; MariaDB's second
    authentication method, tried when the first fails)."""
    if flavor.name == "mysql":
        execute(conn, "ALTER USER %s@%s IDENTIFIED BY %s RETAIN CURRENT PASSWORD", args=(user, host, new))
    else:
        execute(conn, "ALTER USER %s@%s IDENTIFIED VIA mysql_native_password USING PASSWORD(%s) "
                      "OR mysql_native_password USING PASSWORD(%s)", args=(user, host, old, new))


def only_password(conn, flavor: Flavor, user: str, host: str, new: str) -> None:
    """The account logs in with `new` alone."""
    if flavor.name == "mysql":
        execute(conn, "ALTER USER %s@%s DISCARD OLD PASSWORD", args=(user, host))
    else:
        execute(conn, "ALTER USER %s@%s IDENTIFIED BY %s", args=(user, host, new))


def reload_tls(conn, flavor: Flavor) -> None:
    """The server takes its certificate, key and CA from their files again (renewed in place)."""
    execute(conn, flavor.pick(mysql="ALTER INSTANCE RELOAD TLS", mariadb="FLUSH SSL"))


def purge_binlogs(conn, to: str) -> None:
    execute(conn, "PURGE BINARY LOGS TO %s", args=(to,))


def booted_at(conn, flavor: Flavor) -> float:
    """When the running server started (epoch seconds): a new value means it restarted, however long
    nobody looked (uptimes compared across a quick restart miss it). One statement: the clock and the
    uptime read apart drift by the time between them, and a server stalled for a second between two
    statements read as a restart (MySQL 8.0 removed information_schema.GLOBAL_STATUS; MariaDB ships
    performance_schema off)."""
    status = flavor.pick(mysql="performance_schema.global_status", mariadb="information_schema.GLOBAL_STATUS")
    with conn.cursor() as cur:
        cur.execute(f"SELECT UNIX_TIMESTAMP() - (SELECT VARIABLE_VALUE FROM {status} "
                    "WHERE VARIABLE_NAME = 'Uptime')")
        return float(cur.fetchone()[0])


def server_ca(conn) -> str:
    """The CA file the server was configured with (init-mysql.sh writes ssl_ca): the replica checks its
    source's certificate against the same CA. The path is the server's own, on either platform."""
    with conn.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.ssl_ca")
        ca = cur.fetchone()[0]
    if not ca:
        raise OperationFailed("the server has no ssl_ca: its configuration predates TLS replication; "
                              "restart its pod so init-mysql rewrites it")
    return ca


def replicate_from(conn, flavor: Flavor, source_fqdn: str, port: int, user: str, password: str,
                   semi_sync: bool) -> None:
    """Point a (fenced) server at a source with GTID auto-position, over TLS with the source's
    certificate verified, and start replicating."""
    on = "ON" if semi_sync else "OFF"
    ca = server_ca(conn)
    execute(conn, flavor.stop_replica_sql)
    if flavor.before_change_source_sql:
        execute(conn, *flavor.before_change_source_sql, args=(held(conn, flavor),))
    # The two statements differ in more than their words: each stays here, beside its arguments.
    execute(conn, flavor.pick(
        mysql="CHANGE REPLICATION SOURCE TO SOURCE_HOST = %s, SOURCE_PORT = %s, SOURCE_USER = %s, "
              "SOURCE_PASSWORD = %s, SOURCE_SSL = 1, SOURCE_SSL_CA = %s, SOURCE_SSL_VERIFY_SERVER_CERT = 1, "
              "SOURCE_AUTO_POSITION = 1, SOURCE_CONNECT_RETRY = 1, SOURCE_RETRY_COUNT = 86400, "
              "SOURCE_HEARTBEAT_PERIOD = 0.25",
        mariadb="CHANGE MASTER TO MASTER_HOST = %s, MASTER_PORT = %s, MASTER_USER = %s, MASTER_PASSWORD = %s, "
                "MASTER_SSL = 1, MASTER_SSL_CA = %s, MASTER_SSL_VERIFY_SERVER_CERT = 1, "
                "MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1, MASTER_HEARTBEAT_PERIOD = 0.25"),
            args=(source_fqdn, port, user, password, ca))
    execute(conn, f"SET GLOBAL {flavor.semi_sync_source_var} = OFF",
            f"SET GLOBAL {flavor.semi_sync_replica_var} = {on}", flavor.start_replica_sql)


CANARY_TABLE = "mysqlsts.canary"


def create_canary_table(conn) -> None:
    execute(conn, "CREATE DATABASE IF NOT EXISTS mysqlsts",
            f"CREATE TABLE IF NOT EXISTS {CANARY_TABLE} (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
            "token CHAR(32) NOT NULL, written_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))")


def write_probe(conn) -> None:
    """One acknowledged write: what "the primary takes writes again" means."""
    create_canary_table(conn)
    execute(conn, f"INSERT INTO {CANARY_TABLE} (token) VALUES (%s)", args=(f"probe-{time.time_ns()}",))
