"""The two server flavors: which binaries, packages and SQL each one speaks.

Everything that differs between MySQL 8.4 and MariaDB 10.11+ is named here once,
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
    replica_status_sql: str
    gtid_executed_sql: str
    semi_sync_source_var: str
    semi_sync_replica_var: str
    semi_sync_source_status: str  # status variable: is the source waiting for acks
    super_read_only_var: str | None  # None: read_only is the fence (no bypass account)
    # MySQL makes itself a TLS certificate and its caching_sha2_password wants TLS over TCP.
    # The MariaDB servers have no TLS configured, and probing for it costs ~30 ms a connection.
    client_tls: bool
    origin_sql: str  # how a server names the transactions it originates

    def __str__(self) -> str:
        return self.name


MYSQL = Flavor(
    name="mysql",
    server="mysqld",
    client="mysql",
    backup="xtrabackup",
    stream="xbstream",
    install_hint={
        "mysqld": "install MySQL 8.4 server (Oracle's mysql-server 8.4 packages)",
        "mysql": "install the MySQL 8.4 client (mysql-client)",
        "xtrabackup": "install percona-xtrabackup-84 (Percona's repository)",
        "xbstream": "install percona-xtrabackup-84 (Percona's repository)",
    },
    replica_status_sql="SHOW REPLICA STATUS",
    gtid_executed_sql="SELECT @@GLOBAL.gtid_executed",
    semi_sync_source_var="rpl_semi_sync_source_enabled",
    semi_sync_replica_var="rpl_semi_sync_replica_enabled",
    semi_sync_source_status="Rpl_semi_sync_source_status",
    super_read_only_var="super_read_only",
    client_tls=True,
    origin_sql="@@GLOBAL.server_uuid",
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
    gtid_executed_sql="SELECT @@GLOBAL.gtid_current_pos",
    semi_sync_source_var="rpl_semi_sync_master_enabled",
    semi_sync_replica_var="rpl_semi_sync_slave_enabled",
    semi_sync_source_status="Rpl_semi_sync_master_status",
    super_read_only_var=None,
    client_tls=False,
    origin_sql="@@GLOBAL.server_id",
)

FLAVORS = {f.name: f for f in (MYSQL, MARIADB)}


def get(name: str) -> Flavor:
    return FLAVORS[name]
