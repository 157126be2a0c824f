"""What the layers pass to each other about a server, with no behaviour of its own.

It sits at the bottom so that `decisions/` (pure) and `mysql/` (SQL) can both
speak of a server's state without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerState:
    """One server's replication state, as `mysql.observe` reads it and `decisions/` judges it."""

    read_only: bool
    super_read_only: bool | None  # None on MariaDB, where read_only is the fence
    gtid: str
    source_host: str | None  # None: not configured as a replica
    io_running: str | None
    sql_running: str | None
    lag: int | None
    last_error: str
    semi_sync_source_on: bool  # the source is waiting for acknowledgements
    semi_sync_replica_on: bool
    retrieved: str = ""  # transactions received into the relay log (applied or not)
    origin: str = ""  # server_uuid (MySQL) / server_id (MariaDB): the name of its own transactions
    io_errno: int = 0  # 1236: the source refuses this node's GTID position (diverged history)
    # A semi-sync source holds a commit when no replica is connected (False: the first primary of a new
    # cluster, until its first replicas join)
    semi_sync_waits_alone: bool = True

    @property
    def writable(self) -> bool:
        return not self.read_only


class ServerError(Exception):
    """A server did not answer, or refused a statement: the database seam's one error."""

    def __init__(self, host: str, message: str, code: int = 0, timed_out: bool = False):
        self.host = host
        self.message = message
        self.code = code  # the server's error number, 0 when it never answered
        # No answer within the time given: the server may be hung, or only slow. A refused
        # connection, by contrast, means nothing listens there: the server is down.
        self.timed_out = timed_out
        super().__init__(f"{host}: {message}")
