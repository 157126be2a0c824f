"""The kubernetes Api wrapper against a scripted transport: every request has a timeout, what
passes (429, 5xx, resets, timeouts) is retried within a budget, what does not is one clear
line, a retried write that meets its own earlier success is recognised, and a watch survives
a dropped stream. The client's urllib3 pool is replaced, so the official client builds every
request and error itself; sleeps are recorded, never slept."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kmock as km
import pytest
import urllib3
from kubernetes import client
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError, ReadTimeoutError, SSLError

from mysqlsts.errors import OperationFailed
from mysqlsts.platform.kubernetes import api as api_module
from mysqlsts.platform.kubernetes.api import Api

NS = "db"
POD = f"/api/v1/namespaces/{NS}/pods/mysql-0"
LEASE = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/mysql-lock"

Answer = urllib3.HTTPResponse | BaseException | Callable[[], Any]


class Body(io.BytesIO):
    """A response body that ends like a socket's: closed once read to the end."""

    def read(self, *args: Any) -> bytes:
        chunk = super().read(*args)
        if not chunk:
            self.close()
        return chunk


class DroppedStream(Body):
    """A watch body that delivers some lines, then the connection is reset."""

    def read(self, *args: Any) -> bytes:
        chunk = super().read(*args)
        if not chunk:
            raise ConnectionResetError(104, "Connection reset by peer")
        return chunk


def response(code: int, payload: dict | None = None, headers: dict[str, str] | None = None,
             body: io.IOBase | None = None) -> urllib3.HTTPResponse:
    data = body or Body(json.dumps(payload or {}).encode())
    return urllib3.HTTPResponse(body=data, status=code, preload_content=False,
                                headers={"Content-Type": "application/json", **(headers or {})})


def status(code: int, message: str = "", headers: dict[str, str] | None = None) -> urllib3.HTTPResponse:
    return response(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                           "message": message, "metadata": {}}, headers)


def pod(uid: str = "u1") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "mysql-0", "namespace": NS, "uid": uid},
            "spec": {"containers": [{"name": "mysql", "image": "mariadb:11.4"}]}}


def pods(*items: dict, version: str = "10") -> dict:
    return {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": version}, "items": list(items)}


def lease(holder: str, renewed: str = "2026-01-01T00:00:00.000001Z", version: str | None = None) -> dict:
    metadata = {"name": "mysql-lock"} | ({"resourceVersion": version} if version else {})
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed}}


def reset() -> ProtocolError:
    return ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer"))


@dataclass
class Sent:
    method: str
    url: str
    timeout: urllib3.Timeout | None
    body: Any

    @property
    def path(self) -> str:
        return urllib3.util.parse_url(self.url).path

    @property
    def watch(self) -> bool:
        return "watch=true" in (urllib3.util.parse_url(self.url).query or "")


@dataclass
class Pool:
    """Stands in for the client's urllib3 pool manager: each request takes the next answer."""

    answers: list[Answer]
    sent: list[Sent] = field(default_factory=list)

    def request(self, method: str, url: str, **kwargs: Any) -> urllib3.HTTPResponse:
        body = kwargs.get("body")
        self.sent.append(Sent(method, url, kwargs.get("timeout"), json.loads(body) if body else None))
        assert self.answers, f"unexpected request {method} {url}"
        answer = self.answers.pop(0)
        if callable(answer) and not isinstance(answer, BaseException):
            answer = answer()
        if isinstance(answer, BaseException):
            raise answer
        return answer


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def connect(sleeps) -> Callable[..., tuple[Api, Pool]]:
    def make(*answers: Answer) -> tuple[Api, Pool]:
        config = client.Configuration()
        config.host = "https://kubernetes.test"
        api_client = client.ApiClient(config)
        pool = Pool(list(answers))
        api_client.rest_client.pool_manager = pool
        api = Api(api_client, NS)
        api.sleep = sleeps.append
        return api, pool

    return make


# -- retried ------------------------------------------------------------------------------


def test_a_503_then_success_is_retried(connect, sleeps):
    api, pool = connect(status(503, "etcd leader changed"), response(200, pod()))
    assert api.get("Pod", "mysql-0")["metadata"]["uid"] == "u1"
    assert [s.path for s in pool.sent] == [POD, POD]
    assert len(sleeps) == 1 and 0 < sleeps[0] <= 1.5


def test_a_429_is_retried_after_the_servers_retry_after(connect, sleeps):
    api, pool = connect(status(429, "too many requests", {"Retry-After": "3"}), response(200, pods(pod())))
    assert [p["metadata"]["name"] for p in api.list("Pod")["items"]] == ["mysql-0"]
    assert len(pool.sent) == 2
    assert sleeps == [3.0]


def test_a_huge_retry_after_is_capped(connect, sleeps):
    api, _ = connect(status(429, headers={"Retry-After": "3600"}), response(200, pod()))
    api.get("Pod", "mysql-0")
    assert sleeps == [api_module.RETRY_AFTER_MAX_SECONDS]


@pytest.mark.parametrize("error", [
    reset(),
    ReadTimeoutError(None, POD, "Read timed out. (read timeout=30)"),
    MaxRetryError(None, POD, NewConnectionError(None, "Failed to establish a new connection: [Errno 111]")),
    ConnectionRefusedError(111, "Connection refused"),
], ids=["ProtocolError", "ReadTimeoutError", "MaxRetryError", "ConnectionRefusedError"])
def test_a_transport_error_is_retried_then_succeeds(connect, sleeps, error):
    api, pool = connect(error, error, response(200, pod()))
    assert api.get("Pod", "mysql-0")["metadata"]["name"] == "mysql-0"
    assert len(pool.sent) == 3
    assert len(sleeps) == 2 and sleeps[0] < sleeps[1]  # exponential


def test_a_patch_is_retried_after_a_reset(connect):
    api, pool = connect(reset(), response(200, pod()))
    api.patch("Pod", "mysql-0", {"metadata": {"labels": {"role": "primary"}}})
    assert [s.method for s in pool.sent] == ["PATCH", "PATCH"]
    assert pool.sent[0].body == pool.sent[1].body


# -- given up -----------------------------------------------------------------------------


def test_persistent_503_is_one_clear_line_within_the_budget(connect, sleeps):
    api, pool = connect(*[status(503, "the server is\ncurrently unable")] * 20)
    with pytest.raises(OperationFailed) as e:
        api.get("Pod", "mysql-0")
    (line,) = e.value.problems
    assert "\n" not in line
    assert line.startswith("reading Pod mysql-0: HTTP 503")
    assert "the server is currently unable" in line
    assert f"gave up after {api_module.RETRY_ATTEMPTS} attempts" in line
    assert len(pool.sent) == api_module.RETRY_ATTEMPTS
    assert len(sleeps) == api_module.RETRY_ATTEMPTS - 1
    assert sum(sleeps) < api_module.RETRY_BUDGET_SECONDS


def test_a_dead_api_server_is_one_clear_line_not_a_traceback(connect):
    refused = MaxRetryError(None, POD, NewConnectionError(None, "Failed to establish a new connection"))
    api, pool = connect(*[refused] * 20)
    with pytest.raises(OperationFailed) as e:
        api.delete("Pod", "mysql-0")
    (line,) = e.value.problems
    assert line.startswith("deleting Pod mysql-0: the API server did not answer: MaxRetryError")
    assert len(pool.sent) == api_module.RETRY_ATTEMPTS


def test_no_attempt_starts_once_the_budget_is_spent(connect, sleeps):
    api, pool = connect(reset(), response(200, pod()))
    with pytest.raises(OperationFailed, match="listing pods: the API server did not answer: ProtocolError"):
        api.retried(lambda: api.core.list_namespaced_pod(NS), "listing pods", budget=0.0)
    assert len(pool.sent) == 1 and not sleeps


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 422])
def test_a_client_error_is_not_retried(connect, sleeps, code):
    api, pool = connect(status(code, "no"), response(200, pod()))
    with pytest.raises(OperationFailed) as e:
        api.patch("Pod", "mysql-0", {"metadata": {"labels": {"a": "b"}}})
    assert e.value.problems[0].startswith("patching Pod mysql-0: ")
    assert len(pool.sent) == 1 and not sleeps


def test_a_certificate_problem_is_not_retried(connect, sleeps):
    api, pool = connect(MaxRetryError(None, POD, SSLError("certificate verify failed")), response(200, pod()))
    with pytest.raises(OperationFailed, match="certificate verify failed"):
        api.get("Pod", "mysql-0")
    assert len(pool.sent) == 1 and not sleeps


# -- timeouts -----------------------------------------------------------------------------


def assert_timeout(sent: Sent, connect_seconds: float, read_seconds: float) -> None:
    assert isinstance(sent.timeout, urllib3.Timeout), f"{sent.method} {sent.path} has no timeout"
    assert (sent.timeout.connect_timeout, sent.timeout.read_timeout) == (connect_seconds, read_seconds)


def test_every_call_has_a_connect_and_read_timeout(connect):
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"}, "data": {"a": "b"}}
    listed = {"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {}, "items": [obj]}
    api, pool = connect(response(200, obj), response(200, listed), *[lambda: response(200, obj)] * 4,
                        response(200, lease("me")), response(200, body=Body(b"log line\n")))
    api.get("ConfigMap", "m")
    api.list("ConfigMap", "a=b")
    api.apply(obj)
    api.patch("ConfigMap", "m", {"data": {"a": "c"}})
    api.create(obj)
    api.delete("ConfigMap", "m")
    api.call("replace", "Lease", "mysql-lock", NS, lease("me", version="3"), what="renewing mysql-lock")
    assert api.log("mysql-0", "mysql") == "log line\n"
    assert [s.method for s in pool.sent] == ["GET", "GET", "PATCH", "PATCH", "POST", "DELETE", "PUT", "GET"]
    read, connect_seconds = api_module.REQUEST_TIMEOUT[1], api_module.REQUEST_TIMEOUT[0]
    for sent in pool.sent[:-1]:
        assert_timeout(sent, connect_seconds, read)
    assert_timeout(pool.sent[-1], connect_seconds, api_module.LOG_TIMEOUT[1])
    assert api_module.REQUEST_TIMEOUT == (5, 30)


def test_a_watch_reads_a_little_longer_than_its_server_side_timeout(connect):
    added = json.dumps({"type": "DELETED", "object": pod()}).encode() + b"\n"
    api, pool = connect(response(200, pods(pod())), response(200, body=Body(added)))
    assert api.wait("Pod", lambda objs: "mysql-0" not in objs, 20) == {}
    list_call, watch_call = pool.sent
    assert_timeout(list_call, *api_module.REQUEST_TIMEOUT)
    assert watch_call.watch
    server_side = int(re.search(r"timeoutSeconds=(\d+)", watch_call.url)[1])
    assert 15 <= server_side <= 20  # what is left of the wait's timeout
    assert_timeout(watch_call, api_module.CONNECT_SECONDS, server_side + api_module.WATCH_READ_MARGIN)


# -- not idempotent -----------------------------------------------------------------------


def test_a_create_retried_after_a_reset_that_meets_its_own_object_reads_it_back(connect):
    mine = lease("me")
    stored = json.loads(json.dumps(mine))
    stored["metadata"] |= {"resourceVersion": "8", "uid": "x", "namespace": NS}
    api, pool = connect(reset(), status(409, 'leases "mysql-lock" already exists'), response(200, stored))
    assert api.create(mine)["metadata"]["uid"] == "x"
    assert [(s.method, s.path) for s in pool.sent] == [
        ("POST", LEASE.rsplit("/", 1)[0]), ("POST", LEASE.rsplit("/", 1)[0]), ("GET", LEASE)]


def test_a_create_retried_that_meets_someone_elses_object_is_a_conflict(connect):
    api, pool = connect(reset(), status(409, "already exists"), response(200, lease("another-controller")))
    with pytest.raises(OperationFailed, match="creating Lease mysql-lock: conflict"):
        api.create(lease("me"))
    assert len(pool.sent) == 3


def test_a_create_that_conflicts_at_once_is_a_conflict_without_reading_back(connect):
    api, pool = connect(status(409, "already exists"), response(200, lease("me")))
    with pytest.raises(OperationFailed, match="conflict"):
        api.create(lease("me"))
    assert len(pool.sent) == 1


def test_a_lease_renewal_whose_answer_was_lost_is_recognised_as_done(connect):
    renewed = lease("me", "2026-01-01T00:00:05.000001Z", version="3")
    stored = lease("me", "2026-01-01T00:00:05.000001Z", version="4")
    api, pool = connect(ReadTimeoutError(None, LEASE, "Read timed out."), status(409, "the object has been modified"),
                        response(200, stored))
    got = api.call("replace", "Lease", "mysql-lock", NS, renewed, what="renewing mysql-lock")
    assert got["metadata"]["resourceVersion"] == "4"
    assert [s.method for s in pool.sent] == ["PUT", "PUT", "GET"]


# -- logs and watches ---------------------------------------------------------------------


def test_a_log_read_is_retried_and_a_lost_log_is_a_line_not_an_error(connect):
    api, _ = connect(reset(), response(200, body=Body(b"ready\n")))
    assert api.log("mysql-0") == "ready\n"
    api, _ = connect(*[reset()] * 20)
    text = api.log("mysql-0", "mysql")
    assert text.startswith("(no log: reading the log of mysql-0/mysql: the API server did not answer")


def test_a_watch_survives_a_dropped_stream_by_listing_again(connect, sleeps):
    modified = json.dumps({"type": "MODIFIED", "object": pod("u1")}).encode() + b"\n"
    api, pool = connect(response(200, pods(pod("u1"))), response(200, body=DroppedStream(modified)),
                        response(200, pods(pod("u2"), version="12")))
    objs = api.wait("Pod", lambda objs: objs["mysql-0"]["metadata"]["uid"] == "u2", 30)
    assert objs["mysql-0"]["metadata"]["uid"] == "u2"
    assert [s.watch for s in pool.sent] == [False, True, False]
    assert sleeps == [api_module.WATCH_RETRY_PAUSE]


def test_a_watch_refused_with_503_or_reset_is_watched_again(connect):
    api, pool = connect(response(200, pods(pod("u1"))), status(503, "apiserver restarting"),
                        response(200, pods(pod("u1"))), reset(), response(200, pods(version="13")))
    assert api.wait("Pod", lambda objs: not objs, 30) == {}
    assert [s.watch for s in pool.sent] == [False, True, False, True, False]
    assert "resourceVersion=10" in pool.sent[1].url


def test_a_watch_that_is_forbidden_fails_at_once(connect):
    api, pool = connect(response(200, pods(pod())), status(403, "cannot watch pods"))
    with pytest.raises(OperationFailed, match="watching pods: forbidden"):
        api.wait("Pod", lambda objs: not objs, 30)
    assert len(pool.sent) == 2


# -- over real HTTP ---------------------------------------------------------------------


@pytest.mark.kmock(cls=km.RawHandler)
async def test_a_503_over_http_is_retried(kmock, sleeps):
    import asyncio

    answers = iter([km.Response(status=503, payload={"kind": "Status", "code": 503, "message": "busy"}),
                    km.Response(status=200, payload=pod())])
    kmock[f"get {POD}"] << (lambda: next(answers))
    config = client.Configuration()
    config.host = str(kmock.url).rstrip("/")
    api = Api(client.ApiClient(config), NS)
    api.sleep = sleeps.append
    got = await asyncio.to_thread(api.get, "Pod", "mysql-0")
    assert got["metadata"]["uid"] == "u1"
    assert len(list(kmock["get"])) == 2 and len(sleeps) == 1
