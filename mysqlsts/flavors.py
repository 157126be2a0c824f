"""The two server flavors: which binaries, packages and SQL each one speaks.

Everything that differs between MySQL (9.7, and 8.4) and MariaDB 10.11+ is named here once,
so the orchestrator and the runtime stay flavor-agnostic.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Flavor:
    name: str
    server: str  # server binary
    client: str
    backup: str  # hot-backup tool used to clone
    stream: str  # its stream extractor
    install_hint: dict[str, str]  # binary -> how to get it
    extra_binaries: tuple[str, ...]  # needed beyond server, client, backup and stream
    replica_status_sql: str
    gtid_executed_sql: str
    semi_sync_source_var: str
    semi_sync_replica_var: str
    semi_sync_source_status: str  # status variable: is the source waiting for acks
    # ON: with no replica connected, a commit waits for one (no silent fall-back to async); OFF: it commits
    # unacknowledged, and the source turns semi-sync on by itself once enough replicas connect.
    semi_sync_wait_alone_var: str
    super_read_only_var: str | None  # None: read_only is the fence (no bypass account)
    origin_sql: str  # how a server names the transactions it originates
    gtid_notation: str  # "set": uuid:intervals, exact per source; "position": domain-server-seq, last per domain
    stop_replica_sql: str
    start_replica_sql: str
    stop_receiving_sql: str  # the IO thread only
    start_applying_sql: str  # the SQL thread only: a server restarted with a relay log applies it
    reset_replica_sql: str  # forget the source altogether
    # Statements that prepare a stopped replica for the change of source, %s what it holds (MariaDB: replicate
    # from there, not from a gtid_slave_pos that may lag it).
    before_change_source_sql: tuple[str, ...]
    # Waits until the given GTIDs are applied: (gtids, timeout) -> 0 when they are.
    wait_gtids_sql: str
    # False: the wait follows only what came through replication (MariaDB's gtid_slave_pos), so a former
    # primary's own transactions must be checked against gtid_executed_sql first, and the wait polled.
    wait_sees_own_transactions: bool
    # SHOW REPLICA STATUS columns, by their MySQL 8.4 name -> this flavor's name.
    replica_columns: dict[str, str]

    def __str__(self) -> str:
        return self.name

    def column(self, mysql_name: str) -> str:
        """A replica status column as this flavor names it."""
        return self.replica_columns.get(mysql_name, mysql_name)

    def pick(self, mysql: str, mariadb: str) -> str:
        """Of two spellings of one statement, this flavor's (where the text belongs beside its use)."""
        return mysql if self.name == "mysql" else mariadb


MYSQL = Flavor(
    name="mysql",
    server="mysqld",
    client="mysql",
    backup="xtrabackup",
    stream="xbstream",
    install_hint={
        "mysqld": "scripts/install-deps.sh builds the image mysql:9.7.4 (Debian sid's MySQL 9.7) into it",
        "mysql": "scripts/install-deps.sh builds the image mysql:9.7.4 (Debian sid's MySQL 9.7) into it",
        "xtrabackup": "install percona-xtrabackup-84 (Percona's repository), with MySQL 8.4",
        "xbstream": "install percona-xtrabackup-84 (Percona's repository), with MySQL 8.4",
    },
    extra_binaries=(),
    replica_status_sql="SHOW REPLICA STATUS",
    gtid_executed_sql="SELECT @@GLOBAL.gtid_executed",
    semi_sync_source_var="rpl_semi_sync_source_enabled",
    semi_sync_replica_var="rpl_semi_sync_replica_enabled",
    semi_sync_source_status="Rpl_semi_sync_source_status",
    semi_sync_wait_alone_var="rpl_semi_sync_source_wait_no_replica",
    super_read_only_var="super_read_only",
    origin_sql="@@GLOBAL.server_uuid",
    gtid_notation="set",
    stop_replica_sql="STOP REPLICA",
    start_replica_sql="START REPLICA",
    stop_receiving_sql="STOP REPLICA IO_THREAD",
    start_applying_sql="START REPLICA SQL_THREAD",
    reset_replica_sql="RESET REPLICA ALL",
    before_change_source_sql=(),
    wait_gtids_sql="SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)",
    wait_sees_own_transactions=True,
    replica_columns={},
)

MARIADB = Flavor(
    name="mariadb",
    server="mariadbd",
    client="mariadb",
    backup="mariabackup",
    stream="mbstream",
    install_hint={
        "mariadbd": "apt-get install mariadb-server",
        "mariadb": "apt-get install mariadb-client",
        "mariadb-install-db": "apt-get install mariadb-server",
        "mariabackup": "apt-get install mariadb-backup",
        "mbstream": "apt-get install mariadb-backup",
    },
    replica_status_sql="SHOW SLAVE STATUS",
    # What the server holds: its binary log's position beside its replication position, the further per
    # domain (gtid_current_pos takes the binlog's only for the server's own transactions). A replica's
    # gtid_slave_pos may lag its binlog: a DDL records the position in a transaction of its own, after it
    # is binlogged, so a crash between the two leaves the position behind what the server holds (seen
    # here: a replica restarted at 0-100-46 with 0-100-47 in its binlog, then refused 0-100-47 again).
    gtid_executed_sql="SELECT CONCAT_WS(',', NULLIF(@@GLOBAL.gtid_binlog_pos, ''), "
                      "NULLIF(@@GLOBAL.gtid_slave_pos, ''))",
    semi_sync_source_var="rpl_semi_sync_master_enabled",
    semi_sync_replica_var="rpl_semi_sync_slave_enabled",
    semi_sync_source_status="Rpl_semi_sync_master_status",
    semi_sync_wait_alone_var="rpl_semi_sync_master_wait_no_slave",
    super_read_only_var=None,
    origin_sql="@@GLOBAL.server_id",
    gtid_notation="position",
    stop_replica_sql="STOP SLAVE",
    start_replica_sql="START SLAVE",
    stop_receiving_sql="STOP SLAVE IO_THREAD",
    start_applying_sql="START SLAVE SQL_THREAD",
    reset_replica_sql="RESET SLAVE ALL",
    before_change_source_sql=("SET GLOBAL gtid_slave_pos = %s",),
    wait_gtids_sql="SELECT MASTER_GTID_WAIT(%s, %s)",
    wait_sees_own_transactions=False,
    replica_columns={
        "Seconds_Behind_Source": "Seconds_Behind_Master",
        "Retrieved_Gtid_Set": "Gtid_IO_Pos",
        "Source_Host": "Master_Host",
        "Replica_IO_Running": "Slave_IO_Running",
        "Replica_SQL_Running": "Slave_SQL_Running",
    },
    extra_binaries=("mariadb-install-db",),
)

FLAVORS = {f.name: f for f in (MYSQL, MARIADB)}


def get(name: str) -> Flavor:
    return FLAVORS[name]
