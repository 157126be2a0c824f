"""The Kubernetes API as mysqlsts uses it: typed client calls per kind, server-side
apply, watches that survive expired resource versions and dropped streams, and API
errors turned into one-line explanations.

Every call has a connect and read timeout, so a hung API server cannot freeze the
controller, and is retried with bounded exponential backoff on what passes (HTTP 429
and 5xx, connection resets, timeouts), so one API server restart cannot crash it."""

from __future__ import annotations

import copy
import json
import os
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from mysqlsts.errors import BadInput, OperationFailed
from mysqlsts.output import progress

FIELD_MANAGER = "mysqlsts"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
WATCH_CHUNK_SECONDS = 30
CONNECT_SECONDS = 5
REQUEST_TIMEOUT = (CONNECT_SECONDS, 30)  # (connect, read) seconds for every call but logs and watches
LOG_TIMEOUT = (CONNECT_SECONDS, 120)  # a whole log may take a while to stream
WATCH_READ_MARGIN = 10  # a watch is silent until its server-side timeout; read a little longer than that
WATCH_RETRY_PAUSE = 1.0  # after a dropped or throttled watch, before listing again
RETRY_ATTEMPTS = 6  # one call: at most this many attempts ...
RETRY_BUDGET_SECONDS = 60.0  # ... and no new attempt once this long has passed since the first
BACKOFF = wait_exponential(multiplier=0.5, max=8) + wait_random(0, 0.5)  # 0.5, 1, 2, 4, 8 s plus jitter
RETRY_AFTER_MAX_SECONDS = 10.0  # a 429's Retry-After is honoured up to this
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Transport failures (reset, refused, timed out, broken stream): urllib3 wraps most, sockets raise the rest.
TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, OSError)
# Writes a retry can meet as 409 once an unanswered attempt has already done them.
NOT_IDEMPOTENT = ("create", "replace")


@dataclass(frozen=True)
class Kind:
    api: type  # typed API class of the official client
    snake: str  # method suffix: patch_namespaced_<snake>
    plural: str


KINDS: dict[str, Kind] = {
    "ServiceAccount": Kind(client.CoreV1Api, "service_account", "serviceaccounts"),
    "Secret": Kind(client.CoreV1Api, "secret", "secrets"),
    "ConfigMap": Kind(client.CoreV1Api, "config_map", "configmaps"),
    "Service": Kind(client.CoreV1Api, "service", "services"),
    "Pod": Kind(client.CoreV1Api, "pod", "pods"),
    "PersistentVolumeClaim": Kind(client.CoreV1Api, "persistent_volume_claim", "persistentvolumeclaims"),
    "Event": Kind(client.CoreV1Api, "event", "events"),
    "Role": Kind(client.RbacAuthorizationV1Api, "role", "roles"),
    "RoleBinding": Kind(client.RbacAuthorizationV1Api, "role_binding", "rolebindings"),
    "StatefulSet": Kind(client.AppsV1Api, "stateful_set", "statefulsets"),
    "Deployment": Kind(client.AppsV1Api, "deployment", "deployments"),
    "PodDisruptionBudget": Kind(client.PolicyV1Api, "pod_disruption_budget", "poddisruptionbudgets"),
    "NetworkPolicy": Kind(client.NetworkingV1Api, "network_policy", "networkpolicies"),
    "Job": Kind(client.BatchV1Api, "job", "jobs"),
    "CronJob": Kind(client.BatchV1Api, "cron_job", "cronjobs"),
    "Lease": Kind(client.CoordinationV1Api, "lease", "leases"),
}


def explain(e: ApiException, what: str) -> str:
    """One line for an API error, naming what was attempted."""
    return f"{what}: {reason(e)}"


def reason(e: ApiException) -> str:
    """Why the API server refused, in words, with its own message."""
    hints = {
        401: "the credentials of the kubeconfig context were rejected",
        403: "forbidden: the account lacks RBAC permission for this",
        404: "not found",
        409: "conflict: the object changed or exists already",
        410: "the resource version expired",
        422: "the API server rejected the object as invalid",
    }
    why = hints.get(e.status, f"HTTP {e.status} {e.reason or ''}".strip())
    message = ""
    if e.body:
        try:
            message = json.loads(e.body).get("message", "")
        except (ValueError, AttributeError):
            message = ""
    return " ".join((why + (f" ({message})" if message else "")).split())


def status_of(e: OperationFailed) -> int | None:
    """The HTTP status a call failed with, when the API server answered (409: someone wrote it first)."""
    cause = e.__cause__
    return cause.status if isinstance(cause, ApiException) else None


def transient(e: BaseException) -> bool:
    """Whether trying again may succeed: throttling, server errors and transport failures, but
    not a certificate problem, which no retry fixes."""
    if isinstance(e, ApiException):
        return e.status in RETRY_STATUSES
    if isinstance(e, urllib3.exceptions.MaxRetryError):
        e = e.reason or e
    if isinstance(e, urllib3.exceptions.SSLError | ssl.SSLError):
        return False
    return isinstance(e, TRANSPORT_ERRORS)


def retry_after(e: BaseException | None) -> float | None:
    """The seconds a 429 or 503 asks us to wait (Retry-After), when it says."""
    headers = getattr(e, "headers", None) if isinstance(e, ApiException) else None
    try:
        return float(headers.get("Retry-After")) if headers else None
    except (TypeError, ValueError):
        return None  # absent, or an HTTP date: the API server sends seconds


def backoff(state: RetryCallState) -> float:
    """Exponential backoff with jitter, or the server's Retry-After (capped) when it sends one."""
    after = retry_after(state.outcome.exception() if state.outcome else None)
    if after is not None:
        return min(max(after, 0.0), RETRY_AFTER_MAX_SECONDS)
    return BACKOFF(state)


def failure(e: BaseException) -> str:
    """One line for the last failure of a call."""
    if isinstance(e, ApiException):
        return reason(e)
    return "the API server did not answer: " + " ".join(f"{type(e).__name__}: {e}".split())


def _announce(what: str, state: RetryCallState) -> None:
    """Say on stderr that a call is being retried: a slow command shows why it is slow."""
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    progress(f"{what}: {failure(error) if error else 'failed'}; attempt {state.attempt_number + 1} "
             f"in {wait:.1f}s")


def _gave_up(what: str, e: BaseException, statistics: dict[str, Any]) -> str:
    """The last failure, and how hard we tried when we did: a user tells a blip from an outage."""
    attempts = statistics.get("attempt_number", 1)
    tried = f" (gave up after {attempts} attempts in {statistics.get('delay_since_first_attempt', 0):.0f}s)"
    return f"{what}: {failure(e)}" + (tried if attempts > 1 else "")


def contains(actual: Any, wanted: Any) -> bool:
    """Whether actual holds every field of wanted: the server adds defaults, status and metadata."""
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(contains(actual.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(actual, list) and len(actual) == len(wanted) and all(map(contains, actual, wanted))
    return actual == wanted


class Api:
    """Typed calls by kind, in one namespace, each with a timeout and retries."""

    sleep: Callable[[float], None] = staticmethod(time.sleep)  # tests replace it

    def __init__(self, api_client: client.ApiClient, namespace: str, context: str | None = None):
        self.client = api_client
        self.namespace = namespace
        self.context = context  # the kubeconfig context in use, by name (None: in-cluster)
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)

    @classmethod
    def connect(cls, namespace: str | None, context: str | None, in_cluster: bool) -> Api:
        try:
            if in_cluster:
                config.load_incluster_config()
                api_client = client.ApiClient()
                if namespace is None:
                    with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
                        namespace = f.read().strip()
            else:
                files = os.environ.get("KUBECONFIG") or None  # read now: the client reads it at import
                api_client = config.new_client_from_config(config_file=files, context=context)
                contexts, active = config.list_kube_config_contexts(config_file=files)
                if context:
                    active = next((c for c in contexts if c["name"] == context), active)
                context = (active or {}).get("name")
                if namespace is None:
                    namespace = (active or {}).get("context", {}).get("namespace")
        except (ConfigException, OSError) as e:
            flag = "--in-cluster" if in_cluster else "--context"
            raise BadInput(f"{flag}: cannot load the Kubernetes configuration: {e}") from e
        return cls(api_client, namespace or "default", context)

    def unanswered(self, seconds: float = 3.0) -> str | None:
        """Why the API server does not answer one request within `seconds`, tried once; None when it does.
        Any answer counts, a refusal too: the server is there."""
        try:
            client.VersionApi(self.client).get_code(_request_timeout=(seconds, seconds), _preload_content=False)
        except ApiException:
            return None
        except TRANSPORT_ERRORS as e:
            reason = e.reason if isinstance(e, urllib3.exceptions.MaxRetryError) and e.reason else e
            return f"{self.client.configuration.host}: {reason}"
        return None

    def _method(self, verb: str, kind: str) -> Callable[..., Any]:
        k = KINDS[kind]
        return getattr(k.api(self.client), f"{verb}_namespaced_{k.snake}")

    def call(self, verb: str, kind: str, *args: Any, what: str, missing_ok: bool = False, **kwargs: Any) -> Any:
        """One typed call with a timeout and retries; None for 404 when missing_ok."""
        method = self._method(verb, kind)
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
        first = True

        def attempt() -> Any:
            nonlocal first
            unanswered, first = not first, False
            try:
                return method(*args, **kwargs)
            except ApiException as e:
                mine = unanswered and e.status == 409 and verb in NOT_IDEMPOTENT and self._written(kind, args[-1])
                if not mine:
                    raise
                return mine

        return self.retried(attempt, what, missing_ok=missing_ok)

    def retried(self, attempt: Callable[[], Any], what: str, missing_ok: bool = False,
                budget: float = RETRY_BUDGET_SECONDS) -> Any:
        """attempt() until it succeeds, fails for good or the budget is spent; the last failure
        becomes one OperationFailed line naming what was attempted, never a traceback."""
        retrying = Retrying(retry=retry_if_exception(transient), wait=backoff, sleep=self.sleep, reraise=True,
                            stop=stop_after_attempt(RETRY_ATTEMPTS) | stop_after_delay(budget),
                            before_sleep=lambda state: _announce(what, state))
        try:
            return retrying(attempt)
        except ApiException as e:
            if missing_ok and e.status == 404:
                return None
            raise OperationFailed(_gave_up(what, e, retrying.statistics)) from e
        except TRANSPORT_ERRORS as e:
            raise OperationFailed(_gave_up(what, e, retrying.statistics)) from e

    def _written(self, kind: str, sent: Any) -> dict[str, Any] | None:
        """After an unanswered create or replace, a 409 may be our own write: the object read back,
        when it holds everything we sent (a lease holder, a renew time), else None."""
        sent = copy.deepcopy(self.client.sanitize_for_serialization(sent))
        if not isinstance(sent, dict) or not (sent.get("metadata") or {}).get("name"):
            return None
        sent["metadata"].pop("resourceVersion", None)
        name, read = sent["metadata"]["name"], self._method("read", kind)
        # Raw JSON: the client's round trip through datetime rewrites times (a Lease's renewTime).
        raw = self.retried(lambda: read(name, self.namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT),
                           f"reading {kind} {name} back")
        current = json.loads(raw.data)
        return current if contains(current, sent) else None

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        obj = self.call("read", kind, name, self.namespace, what=f"reading {kind} {name}", missing_ok=True)
        return None if obj is None else self.client.sanitize_for_serialization(obj)

    def list(self, kind: str, selector: str | None = None, field_selector: str | None = None) -> dict[str, Any]:
        return self._list(kind, _selectors(selector, field_selector), RETRY_BUDGET_SECONDS)

    def _list(self, kind: str, selectors: dict[str, str], budget: float) -> dict[str, Any]:
        method = self._method("list", kind)
        result = self.retried(lambda: method(self.namespace, _request_timeout=REQUEST_TIMEOUT, **selectors),
                              f"listing {KINDS[kind].plural}", budget=budget)
        return self.client.sanitize_for_serialization(result)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply: the fields mysqlsts sets are owned by field manager mysqlsts."""
        kind, name = obj["kind"], obj["metadata"]["name"]
        result = self.call("patch", kind, name, self.namespace, obj, field_manager=FIELD_MANAGER, force=True,
                           _content_type=APPLY, what=f"applying {kind} {name}")
        return self.client.sanitize_for_serialization(result)

    def patch(self, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        result = self.call("patch", kind, name, self.namespace, body, field_manager=FIELD_MANAGER,
                           _content_type=MERGE, what=f"patching {kind} {name}")
        return self.client.sanitize_for_serialization(result)

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        kind, name = obj["kind"], obj["metadata"]["name"]
        result = self.call("create", kind, self.namespace, obj, field_manager=FIELD_MANAGER,
                           what=f"creating {kind} {name}")
        return self.client.sanitize_for_serialization(result)

    def delete(self, kind: str, name: str, propagation: str = "Background", grace_seconds: int | None = None,
               version: str | None = None) -> bool:
        """True when something was deleted, False when it was gone already. `version`: only while the
        object is still at that resourceVersion (409 when someone wrote it since)."""
        preconditions = client.V1Preconditions(resource_version=version) if version else None
        body = client.V1DeleteOptions(propagation_policy=propagation, grace_period_seconds=grace_seconds,
                                      preconditions=preconditions)
        done = self.call("delete", kind, name, self.namespace, body=body, what=f"deleting {kind} {name}",
                         missing_ok=True)
        return done is not None

    def log(self, pod: str, container: str | None = None, tail: int | None = None) -> str:
        """The pod's log, or one line saying why there is none: a diagnosis must not fail on it."""
        def read() -> str:
            # Raw bytes: some client versions parse a log that looks like JSON into a dict.
            raw = self.core.read_namespaced_pod_log(pod, self.namespace, container=container, tail_lines=tail,
                                                    _preload_content=False, _request_timeout=LOG_TIMEOUT)
            return raw.data.decode("utf-8", "replace")

        try:
            return self.retried(read, f"reading the log of {pod}/{container or ''}")
        except OperationFailed as e:
            return f"(no log: {e})"

    def wait(self, kind: str, done: Callable[[dict[str, dict[str, Any]]], bool], timeout: float,
             selector: str | None = None, field_selector: str | None = None) -> dict[str, dict[str, Any]]:
        """Watch objects until done(objects by name) holds. A watch that expires, is throttled or
        drops (API server restart, proxy timeout) starts over from a list, until the timeout."""
        deadline = time.monotonic() + timeout
        selectors = _selectors(selector, field_selector)
        while True:
            listed = self._list(kind, selectors, max(1.0, deadline - time.monotonic()))
            objects = {o["metadata"]["name"]: o for o in listed.get("items") or []}
            if done(objects):
                return objects
            pause = self._follow(kind, listed["metadata"].get("resourceVersion"), deadline, selectors, objects, done)
            if pause is None:
                return objects
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if pause:
                self.sleep(min(remaining, pause))

    def _follow(self, kind: str, version: str | None, deadline: float, selectors: dict[str, str],
                objects: dict[str, dict[str, Any]], done: Callable[[dict[str, dict[str, Any]]], bool]) -> float | None:
        """Apply watch events to objects: None once done holds, else the pause before listing again:
        none after events or an expired version, a little after an empty watch (no spinning on
        list calls), longer after a throttled or dropped one."""
        seen = 0
        try:
            for event in self._events(kind, version, deadline, selectors):
                seen += 1
                obj = event["raw_object"]
                if event["type"] == "DELETED":
                    objects.pop(obj["metadata"]["name"], None)
                elif event["type"] in ("ADDED", "MODIFIED"):
                    objects[obj["metadata"]["name"]] = obj
                if done(objects):
                    return None
        except ApiException as e:
            if e.status != 410 and not transient(e):
                raise OperationFailed(explain(e, f"watching {KINDS[kind].plural}")) from e
            return 0.0 if e.status == 410 else WATCH_RETRY_PAUSE
        except TRANSPORT_ERRORS as e:
            if not transient(e):
                raise OperationFailed(f"watching {KINDS[kind].plural}: {failure(e)}") from e
            return WATCH_RETRY_PAUSE
        return 0.0 if seen else 0.2

    def _events(self, kind: str, version: str | None, deadline: float,
                selectors: dict[str, str]) -> Iterator[dict[str, Any]]:
        remaining = int(max(1, min(WATCH_CHUNK_SECONDS, deadline - time.monotonic())))
        with _closing(watch.Watch()) as w:
            yield from w.stream(self._method("list", kind), self.namespace, resource_version=version,
                                timeout_seconds=remaining, allow_watch_bookmarks=True,
                                _request_timeout=(CONNECT_SECONDS, remaining + WATCH_READ_MARGIN), **selectors)


def _selectors(selector: str | None, field_selector: str | None) -> dict[str, str]:
    return {k: v for k, v in (("label_selector", selector), ("field_selector", field_selector)) if v}


@contextmanager
def _closing(w: watch.Watch) -> Iterator[watch.Watch]:
    try:
        yield w
    finally:
        w.stop()
