"""The pymysql side of the database seam: how connection failures cross it."""

from __future__ import annotations

import socket

import pymysql
import pytest

from mysqlsts import flavors
from mysqlsts.model import ServerError
from mysqlsts.mysql import server as seam

PASSWORDS = {"operatorPassword": "o", "replicationPassword": "r", "rootPassword": "x"}


def failure(original: BaseException) -> pymysql.err.OperationalError:
    e = pymysql.err.OperationalError(2003, f"Can't connect to MySQL server on 'mysql-0' ({original})")
    e.original_exception = original
    return e


class Conn:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def attempts(monkeypatch):
    """connect() fails with the queued errors, then connects."""
    queue: list[BaseException] = []
    calls: list[str] = []

    def connect(host, *args, **kwargs):
        calls.append(host)
        if queue:
            raise queue.pop(0)
        return Conn()

    monkeypatch.setattr(seam, "connect", connect)
    return queue, calls


def test_a_name_that_does_not_resolve_yet_is_waited_out_within_settle(attempts):
    queue, calls = attempts
    queue.extend([failure(socket.gaierror(-2, "Name or service not known"))] * 2)
    with seam.SqlServers(flavors.MARIADB, 3306, PASSWORDS).operator("mysql-0.mysql", 1.0, settle=5) as server:
        assert isinstance(server, seam.SqlServer)
    assert len(calls) == 3


def test_without_settle_or_for_a_refused_connection_it_fails_at_once_as_a_server_error(attempts):
    queue, calls = attempts
    queue.append(failure(socket.gaierror(-2, "Name or service not known")))
    with pytest.raises(ServerError) as e, seam.SqlServers(flavors.MARIADB, 3306, PASSWORDS).operator("mysql-0", 1.0):
        pass
    assert e.value.code == 2003 and "Name or service not known" in e.value.message and len(calls) == 1
    queue.append(failure(ConnectionRefusedError(111, "Connection refused")))
    with pytest.raises(ServerError), seam.SqlServers(flavors.MARIADB, 3306, PASSWORDS).operator("mysql-0", 1.0,
                                                                                               settle=5):
        pass
    assert len(calls) == 2  # a server that refuses is not waited for: only a name that does not resolve
