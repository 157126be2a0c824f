"""The database seam: what the orchestrator asks of one server while it moves roles, and the
pymysql implementation of it. Switchover, failover, recovery and the controller speak only
through `Servers`, so they run unchanged against real servers and against the in-memory
fake of the tests (tests/fakeservers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

import pymysql

from mysqlsts.decisions import gtid
from mysqlsts.errors import failing_as
from mysqlsts.flavors import Flavor
from mysqlsts.model import ServerError, ServerState
from mysqlsts.mysql import actions
from mysqlsts.mysql.observe import OPERATOR_USER, connect, held, observe

REPLICATION_USER = "repl"


class Server(Protocol):
    """One server, reached as the operator. Every method raises ServerError when the server
    does not answer or refuses."""

    def state(self) -> ServerState: ...
    def fence(self, grace: float) -> list[int]: ...  # read-only; kills writers left after `grace` s
    def unfence(self) -> None: ...
    def executed(self) -> str: ...  # its GTIDs, as the flavor writes them
    def stop_receiving(self) -> None: ...  # the receiver only; what arrived is applied (the applier runs)
    def stop_replicating(self) -> None: ...
    def replicate_from(self, source_fqdn: str, semi_sync: bool) -> None: ...  # GTID auto-position, TLS
    def wait_applied(self, gtids: str, timeout: float) -> bool: ...
    def become_source(self, semi_sync: bool) -> None: ...  # stops replicating; still fenced
    def wait_alone(self, wait: bool) -> None: ...  # semi-sync with no replica connected: hold commits, or not
    def booted_at(self) -> float: ...  # when the server started (epoch seconds)
    def set_commit_delay(self, usec: int) -> None: ...  # every group commit waits this long (0: none)
    def binlogs(self) -> list[tuple[str, str | None]]: ...  # oldest first, with the GTIDs logged before each
    def purge_binlogs(self, to: str) -> None: ...  # every binary log before `to`
    def accept_password(self, user: str, host: str, old: str, new: str) -> None: ...  # either logs in
    def reload_tls(self) -> None: ...  # its certificate files again
    def only_password(self, user: str, host: str, new: str) -> None: ...  # the old one no longer


class Servers(Protocol):
    """How the orchestrator reaches servers: by a per-pod DNS name (or the primary's name)."""

    def operator(self, host: str, timeout: float, read_timeout: float | None = None, address: str | None = None
                 ) -> AbstractContextManager[Server]: ...  # address: reach the pod there, not through its name
    def write_probe(self, host: str, timeout: float) -> None: ...  # one write as a client: the fence holds


class SqlServer:
    """A Server over one pymysql connection."""

    def __init__(self, conn, flavor: Flavor, port: int, replication_password: str):
        self.conn = conn
        self.flavor = flavor
        self.port = port
        self.replication_password = replication_password

    def state(self) -> ServerState:
        return observe(self.conn, self.flavor)

    def fence(self, grace: float) -> list[int]:
        return actions.fence(self.conn, self.flavor, grace)

    def unfence(self) -> None:
        actions.unfence(self.conn, self.flavor)

    def executed(self) -> str:
        return held(self.conn, self.flavor)

    def stop_receiving(self) -> None:
        actions.stop_receiving(self.conn, self.flavor)

    def stop_replicating(self) -> None:
        actions.execute(self.conn, self.flavor.stop_replica_sql)

    def replicate_from(self, source_fqdn: str, semi_sync: bool) -> None:
        actions.replicate_from(self.conn, self.flavor, source_fqdn, self.port, REPLICATION_USER,
                               self.replication_password, semi_sync)

    def wait_applied(self, gtids: str, timeout: float) -> bool:
        with failing_as(gtid.GtidError):
            return actions.wait_applied(self.conn, self.flavor, gtids, timeout)

    def become_source(self, semi_sync: bool) -> None:
        actions.become_source(self.conn, self.flavor, semi_sync)

    def wait_alone(self, wait: bool) -> None:
        actions.wait_alone(self.conn, self.flavor, wait)

    def booted_at(self) -> float:
        return actions.booted_at(self.conn, self.flavor)

    def set_commit_delay(self, usec: int) -> None:
        actions.set_commit_delay(self.conn, self.flavor, usec)

    def binlogs(self) -> list[tuple[str, str | None]]:
        return actions.binlogs(self.conn)

    def purge_binlogs(self, to: str) -> None:
        actions.purge_binlogs(self.conn, to)

    def accept_password(self, user: str, host: str, old: str, new: str) -> None:
        actions.accept_password(self.conn, self.flavor, user, host, old, new)

    def reload_tls(self) -> None:
        actions.reload_tls(self.conn, self.flavor)

    def only_password(self, user: str, host: str, new: str) -> None:
        actions.only_password(self.conn, self.flavor, user, host, new)


class SqlServers:
    """Servers reached with pymysql; a pymysql error leaves as ServerError, with the server's words.
    `passwords` by values key, with the cluster's CA as `tlsCA` (every TCP connection checks it).
    `sockets` maps a host name to the unix socket of that server (the pod agent reaches its own server
    so); every other host is reached over TCP by its name."""

    def __init__(self, flavor: Flavor, port: int, passwords: dict[str, str], sockets: dict[str, str] | None = None):
        self.flavor = flavor
        self.port = port
        self.passwords = passwords
        self.sockets = sockets or {}

    @contextmanager
    def operator(self, host: str, timeout: float, read_timeout: float | None = None,
                 address: str | None = None) -> Iterator[SqlServer]:
        """`address`: the pod's own address, as the platform reports it now. A per-pod name can resolve,
        in one cluster DNS replica's cache, to the address a re-created pod had before: a role change
        goes to the pod itself. Errors still name `host`."""
        with as_server_error(host):
            conn = connect(address or host, self.port, self.passwords["operatorPassword"], self.flavor,
                           timeout=timeout, read_timeout=read_timeout, user=OPERATOR_USER,
                           unix_socket=self.sockets.get(host), ca=self.passwords.get("tlsCA"))
            with conn:
                yield SqlServer(conn, self.flavor, self.port, self.passwords["replicationPassword"])

    def write_probe(self, host: str, timeout: float) -> None:
        with as_server_error(host), connect(host, self.port, self.passwords["rootPassword"], self.flavor,
                                            timeout=timeout, user="root", ca=self.passwords.get("tlsCA")) as conn:
            actions.write_probe(conn)


@contextmanager
def as_server_error(host: str) -> Iterator[None]:
    try:
        yield
    except pymysql.MySQLError as e:
        message = str(e.args[-1]) if e.args else str(e)
        timed_out = isinstance(getattr(e, "original_exception", None), TimeoutError) or "(timed out)" in message
        raise ServerError(host, message, e.args[0] if e.args else 0, timed_out=timed_out) from e
