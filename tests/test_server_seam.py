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


def test_a_pod_is_reached_at_its_address_and_errors_name_the_pod(attempts):
    """A per-pod name may still resolve to a re-created pod's old address in a DNS cache: the
    address the platform reports goes first, and what fails is reported under the pod's name."""
    queue, calls = attempts
    with seam.SqlServers(flavors.MARIADB, 3306, PASSWORDS).operator("mysql-0.mysql", 1.0,
                                                                    address="10.0.0.10") as server:
        assert isinstance(server, seam.SqlServer)
    assert calls == ["10.0.0.10"]
    queue.append(failure(TimeoutError("timed out")))
    with pytest.raises(ServerError) as e, seam.SqlServers(flavors.MARIADB, 3306, PASSWORDS).operator(
            "mysql-0.mysql", 1.0, address="10.0.0.10"):
        pass
    assert e.value.host == "mysql-0.mysql" and e.value.code == 2003 and calls == ["10.0.0.10"] * 2


def test_without_an_address_the_name_is_used_and_a_failure_is_a_server_error_at_once(attempts):
    queue, calls = attempts
    queue.append(failure(socket.gaierror(-2, "Name or service not known")))
    with pytest.raises(ServerError) as e, seam.SqlServers(flavors.MARIADB, 3306, PASSWORDS).operator("mysql-0", 1.0):
        pass
    assert e.value.code == 2003 and "Name or service not known" in e.value.message and calls == ["mysql-0"]
