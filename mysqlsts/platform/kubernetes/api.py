"""The Kubernetes API as mysqlsts uses it: typed client calls per kind, server-side
apply, watches that survive expired resource versions, and API errors turned
into one-line explanations."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from mysqlsts.errors import BadInput, OperationFailed

FIELD_MANAGER = "mysqlsts"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
WATCH_CHUNK_SECONDS = 30


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
    hints = {
        401: "the credentials of the kubeconfig context were rejected",
        403: "forbidden: the account lacks RBAC permission for this",
        404: "not found",
        409: "conflict: the object changed or exists already",
        410: "the resource version expired",
        422: "the API server rejected the object as invalid",
    }
    reason = hints.get(e.status, f"HTTP {e.status} {e.reason or ''}".strip())
    message = ""
    if e.body:
        try:
            message = json.loads(e.body).get("message", "")
        except (ValueError, AttributeError):
            message = ""
    return f"{what}: {reason}" + (f" ({message})" if message else "")


class Api:
    """Typed calls by kind, in one namespace."""

    def __init__(self, api_client: client.ApiClient, namespace: str):
        self.client = api_client
        self.namespace = namespace
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
                if namespace is None:
                    contexts, active = config.list_kube_config_contexts(config_file=files)
                    if context:
                        active = next((c for c in contexts if c["name"] == context), active)
                    namespace = (active or {}).get("context", {}).get("namespace")
        except (ConfigException, OSError) as e:
            flag = "--in-cluster" if in_cluster else "--context"
            raise BadInput(f"{flag}: cannot load the Kubernetes configuration: {e}") from e
        return cls(api_client, namespace or "default")

    def _method(self, verb: str, kind: str) -> Callable[..., Any]:
        k = KINDS[kind]
        return getattr(k.api(self.client), f"{verb}_namespaced_{k.snake}")

    def call(self, verb: str, kind: str, *args: Any, what: str, missing_ok: bool = False, **kwargs: Any) -> Any:
        try:
            return self._method(verb, kind)(*args, **kwargs)
        except ApiException as e:
            if missing_ok and e.status == 404:
                return None
            raise OperationFailed(explain(e, what)) from e

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        obj = self.call("read", kind, name, self.namespace, what=f"reading {kind} {name}", missing_ok=True)
        return None if obj is None else self.client.sanitize_for_serialization(obj)

    def list(self, kind: str, selector: str | None = None, field_selector: str | None = None) -> dict[str, Any]:
        kwargs = {k: v for k, v in (("label_selector", selector), ("field_selector", field_selector)) if v}
        result = self.call("list", kind, self.namespace, what=f"listing {KINDS[kind].plural}", **kwargs)
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

    def delete(self, kind: str, name: str, propagation: str = "Background", grace_seconds: int | None = None) -> bool:
        """True when something was deleted, False when it was gone already."""
        body = client.V1DeleteOptions(propagation_policy=propagation, grace_period_seconds=grace_seconds)
        done = self.call("delete", kind, name, self.namespace, body=body, what=f"deleting {kind} {name}",
                         missing_ok=True)
        return done is not None

    def log(self, pod: str, container: str | None = None, tail: int | None = None) -> str:
        try:
            # Raw bytes: some client versions parse a log that looks like JSON into a dict.
            raw = self.core.read_namespaced_pod_log(pod, self.namespace, container=container, tail_lines=tail,
                                                    _preload_content=False)
            return raw.data.decode("utf-8", "replace")
        except ApiException as e:
            return f"(no log: {explain(e, f'reading the log of {pod}/{container or str()}')})"

    def wait(self, kind: str, done: Callable[[dict[str, dict[str, Any]]], bool], timeout: float,
             selector: str | None = None, field_selector: str | None = None) -> dict[str, dict[str, Any]]:
        """Watch objects until done(objects by name) holds; an expired watch starts over from a list."""
        deadline = time.monotonic() + timeout
        kwargs = {k: v for k, v in (("label_selector", selector), ("field_selector", field_selector)) if v}
        while True:
            listed = self.list(kind, selector, field_selector)
            objects = {o["metadata"]["name"]: o for o in listed.get("items") or []}
            if done(objects):
                return objects
            version = listed["metadata"].get("resourceVersion")
            seen = 0
            try:
                for event in self._events(kind, version, deadline, kwargs):
                    seen += 1
                    obj = event["raw_object"]
                    if event["type"] == "DELETED":
                        objects.pop(obj["metadata"]["name"], None)
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        objects[obj["metadata"]["name"]] = obj
                    if done(objects):
                        return objects
            except ApiException as e:
                if e.status != 410:
                    raise OperationFailed(explain(e, f"watching {KINDS[kind].plural}")) from e
                continue  # expired: list again
            except urllib3.exceptions.HTTPError:
                time.sleep(0.5)  # the API server dropped the stream (restart, proxy timeout): list again
                continue
            if time.monotonic() >= deadline:
                raise TimeoutError
            if not seen:
                time.sleep(0.2)  # a watch that ended at once: do not spin on list calls

    def _events(self, kind: str, version: str | None, deadline: float,
                kwargs: dict[str, str]) -> Iterator[dict[str, Any]]:
        remaining = int(max(1, min(WATCH_CHUNK_SECONDS, deadline - time.monotonic())))
        with _closing(watch.Watch()) as w:
            yield from w.stream(self._method("list", kind), self.namespace, resource_version=version,
                                timeout_seconds=remaining, allow_watch_bookmarks=True,
                                _request_timeout=(10, remaining + 10), **kwargs)


@contextmanager
def _closing(w: watch.Watch) -> Iterator[watch.Watch]:
    try:
        yield w
    finally:
        w.stop()
