"""The kubernetes platform over real HTTP against a mock API server (kmock): the
requests the official client sends, and how API errors are handled. The
platform's calls are synchronous, so they run in a worker thread while the
mock server answers on the test's event loop."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import re
import socket
import time

import kmock as km
import pytest
from kubernetes import client

from mysqlsts import cli
from mysqlsts.chart import tls
from mysqlsts.chart.render import ISOLATED_LABEL, render
from mysqlsts.chart.values import load
from mysqlsts.commands import cluster as cluster_commands
from mysqlsts.commands.incluster import RoleSteps
from mysqlsts.errors import BadInput, OperationFailed
from mysqlsts.orchestrator.cluster import Cluster
from mysqlsts.orchestrator.failover import Roles
from mysqlsts.platform.kubernetes import platform as platform_module
from mysqlsts.platform.kubernetes.api import Api
from mysqlsts.platform.kubernetes.platform import PRIMARY_ANNOTATION, VALUES_ANNOTATION, KubernetesPlatform, last_json

pytestmark = pytest.mark.kmock(cls=km.RawHandler)

NS = "db"
PASSWORDS = {"rootPassword": "r00t 'x'", "replicationPassword": "repl$pw", "operatorPassword": "op`pw`",
             "cloneSecret": "clone\\secret", **tls.generate(load([], [f"namespace={NS}"]))}
PATH = re.compile(r"^/(?:api/v1|apis/[^/]+/v1)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?$")


def values(**sets: str) -> dict:
    return load([], [f"namespace={NS}", "flavor=mariadb", *(f"{k}={v}" for k, v in sets.items())])


def platform_for(kmock) -> KubernetesPlatform:
    config = client.Configuration()
    config.host = str(kmock.url).rstrip("/")
    p = KubernetesPlatform("mysql", api=Api(client.ApiClient(config), NS), inside=False)
    p.poll_interval = 0.05
    return p


def status(code: int, message: str) -> km.Response:
    reason = {403: "Forbidden", 404: "NotFound", 409: "Conflict", 410: "Expired"}.get(code, "Error")
    return km.Response(status=code, payload={"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                             "code": code, "reason": reason, "message": message, "metadata": {}})


def ok(payload: dict) -> km.Response:
    # kmock keeps the status a callable's Response set on its reaction: always set one.
    return km.Response(status=200, payload=payload)


def merge_patch(target: dict, patch: dict) -> dict:
    """RFC 7386: objects merge key by key, null removes, anything else replaces."""
    merged = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_patch(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class Store:
    """Just enough of an API server to apply, read, list and delete objects by path."""

    def __init__(self):
        self.objects: dict[str, dict] = {}
        self.version = 100

    def install(self, kmock) -> None:
        kmock[km.method.GET] << self.get
        kmock[km.method.PATCH] << self.patch
        kmock[km.method.POST] << self.post
        kmock[km.method.PUT] << self.put
        kmock[km.method.DELETE] << self.delete

    def write(self, path: str, obj: dict) -> dict:
        """Store a new version of the object, as any writer's write does."""
        self.version += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.version)
        obj["metadata"].setdefault("uid", f"uid-{self.version}")
        self.objects[path] = obj
        return obj

    def post(self, request: km.Request):
        path = f"{request.url.path}/{request.data['metadata']['name']}"
        if path in self.objects:
            return status(409, "already exists")
        return ok(self.write(path, request.data))

    def put(self, request: km.Request):
        """A replace holds only at the version it was read at: 409 when another writer came first."""
        current = self.objects.get(request.url.path)
        if current is None:
            return status(404, "not found")
        if request.data["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            return status(409, "the object has been modified; please apply your changes to the latest version")
        return ok(self.write(request.url.path, request.data))

    def get(self, request: km.Request):
        m = PATH.match(request.url.path)
        if m and not m["name"]:
            prefix = request.url.path + "/"
            items = [o for p, o in self.objects.items() if p.startswith(prefix)]
            return ok({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": str(self.version)},
                       "items": items})
        if request.url.path in self.objects:
            return ok(self.objects[request.url.path])
        return status(404, f"{request.url.path} not found")

    def patch(self, request: km.Request):
        old = self.objects.get(request.url.path)
        new = copy.deepcopy(request.data)
        if old is not None and request.headers["Content-Type"] == "application/merge-patch+json":
            new = merge_patch(old, new)
        elif old is not None:
            new["metadata"] = {**old["metadata"], **new["metadata"]}
        comparable = {k: v for k, v in new.items() if k != "metadata"}, {
            k: v for k, v in new["metadata"].items() if k not in ("resourceVersion", "uid")}
        before = None if old is None else ({k: v for k, v in old.items() if k != "metadata"}, {
            k: v for k, v in old["metadata"].items() if k not in ("resourceVersion", "uid")})
        if comparable != before:
            self.version += 1
            new["metadata"]["resourceVersion"] = str(self.version)
            new["metadata"].setdefault("uid", f"uid-{self.version}")
        self.objects[request.url.path] = new
        return ok(new)

    def delete(self, request: km.Request):
        current = self.objects.get(request.url.path)
        if current is None:
            return status(404, "gone")
        wanted = ((request.data or {}).get("preconditions") or {}).get("resourceVersion")
        if wanted is not None and wanted != current["metadata"].get("resourceVersion"):
            return status(409, "Precondition failed: ResourceVersion in precondition does not match")
        del self.objects[request.url.path]
        return ok({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}})


async def run(fn, *args, **kwargs):
    return await asyncio.to_thread(fn, *args, **kwargs)


async def test_apply_is_server_side_apply_by_mysqlsts_and_a_second_run_changes_nothing(kmock):
    store = Store()
    store.install(kmock)
    p = platform_for(kmock)
    v = values()
    objects = render(v, PASSWORDS)
    first = await run(p.apply, v, PASSWORDS, objects)
    assert "StatefulSet mysql created" in first
    assert len([c for c in first if c.endswith("created")]) == len(objects)
    patches = list(kmock["patch"])
    assert len(patches) == len(objects)
    for request in patches:
        assert request.headers["Content-Type"] == "application/apply-patch+yaml"
        assert request.params == {"fieldManager": "mysqlsts", "force": "true"}
        assert request.url.path.startswith(f"/api/v1/namespaces/{NS}/") or \
            (request.url.path.startswith("/apis/") and f"/namespaces/{NS}/" in request.url.path)
    sts = store.objects[f"/apis/apps/v1/namespaces/{NS}/statefulsets/mysql"]
    recorded = json.loads(sts["metadata"]["annotations"][VALUES_ANNOTATION])
    assert recorded["replicas"] == 3 and all(not pw for pw in recorded["auth"].values())
    secret = store.objects[f"/api/v1/namespaces/{NS}/secrets/mysql-secret"]
    assert base64.b64decode(secret["data"]["operator-password"]).decode() == PASSWORDS["operatorPassword"]
    for path, obj in store.objects.items():
        if not path.endswith("/secrets/mysql-secret"):
            text = json.dumps(obj)
            assert not any(pw in text for pw in PASSWORDS.values()), path

    assert await run(p.apply, v, PASSWORDS, objects) == []  # idempotent, and says so
    assert await run(p.stored_passwords) == PASSWORDS
    assert (await run(p.values))["namespace"] == NS


async def test_a_switched_off_feature_is_pruned(kmock):
    store = Store()
    store.install(kmock)
    p = platform_for(kmock)
    with_controller = values(**{"controller.enabled": "true"})
    await run(p.apply, with_controller, PASSWORDS, render(with_controller, PASSWORDS))
    assert f"/apis/apps/v1/namespaces/{NS}/deployments/mysql-controller" in store.objects
    plain = values()
    changes = await run(p.apply, plain, PASSWORDS, render(plain, PASSWORDS))
    assert "Deployment mysql-controller deleted (no longer rendered)" in changes
    assert f"/apis/apps/v1/namespaces/{NS}/deployments/mysql-controller" not in store.objects
    deletes = [r.url.path for r in kmock["delete"]]
    assert deletes == [f"/apis/apps/v1/namespaces/{NS}/deployments/mysql-controller"]


async def test_forbidden_is_one_clear_line(kmock):
    kmock[f"get /apis/apps/v1/namespaces/{NS}/statefulsets/mysql"] << (
        lambda: status(403, 'statefulsets.apps "mysql" is forbidden: User "dev" cannot get resource'))
    p = platform_for(kmock)
    with pytest.raises(OperationFailed) as e:
        await run(p.values)
    (line,) = e.value.problems
    assert line.startswith("reading StatefulSet mysql: forbidden: the account lacks RBAC permission")
    assert 'User "dev" cannot get resource' in line


async def test_a_missing_cluster_is_bad_input_naming_the_flag(kmock):
    kmock[f"get /apis/apps/v1/namespaces/{NS}/statefulsets/mysql"] << (lambda: status(404, "not found"))
    with pytest.raises(BadInput) as e:
        await run(platform_for(kmock).values)
    assert e.value.problems[0].startswith("--name: no cluster 'mysql' in namespace 'db'")


LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"


def lease(holder: str, renewed: str) -> dict:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "mysql-mysqlsts-lock", "resourceVersion": "7"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 900, "renewTime": renewed}}


async def hold_lock(kmock) -> None:
    p = platform_for(kmock)

    def take():
        with p.lock():
            pass

    await run(take)


async def test_the_lock_is_a_lease_and_a_conflict_means_someone_else_holds_it(kmock):
    kmock[f"get {LEASES}/mysql-mysqlsts-lock"] << (lambda: status(404, "no lease"))
    kmock[f"post {LEASES}"] << (lambda: status(409, "leases.coordination.k8s.io already exists"))
    with pytest.raises(OperationFailed) as e:
        await hold_lock(kmock)
    assert "took the lock on cluster 'mysql' first" in e.value.problems[0]
    (create,) = list(kmock["post"])
    assert create.data["spec"]["leaseDurationSeconds"] == 30  # short: a live holder renews it
    assert create.data["spec"]["holderIdentity"]


async def test_a_lock_held_by_a_live_command_is_refused(kmock):
    from datetime import UTC, datetime

    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    kmock[f"get {LEASES}/mysql-mysqlsts-lock"] << lease("ci-runner-42", now)
    with pytest.raises(OperationFailed) as e:
        await hold_lock(kmock)
    assert "another mysqlsts command (ci-runner-42) is working on cluster 'mysql'" in e.value.problems[0]
    assert not list(kmock["post"]) and not list(kmock["put"])


async def test_an_expired_lock_is_taken_over_with_its_resource_version_and_released(kmock):
    kmock[f"get {LEASES}/mysql-mysqlsts-lock"] << lease("crashed-cli", "2026-01-01T00:00:00.000000Z")
    kmock[f"put {LEASES}/mysql-mysqlsts-lock"] << (lambda request: request.data)
    kmock[f"delete {LEASES}/mysql-mysqlsts-lock"] << {"kind": "Status", "apiVersion": "v1", "metadata": {}}
    await hold_lock(kmock)
    (replace,) = list(kmock["put"])
    assert replace.data["metadata"]["resourceVersion"] == "7"  # a racing taker gets 409, not both
    assert replace.data["spec"]["holderIdentity"] != "crashed-cli"
    assert len(list(kmock["delete"])) == 1


# -- the cluster lock: renewed while held, deleted only while ours ---------------------------------------

LOCK = f"{LEASES}/mysql-mysqlsts-lock"


def successor_takes(store: Store, holder: str = "successor-7") -> None:
    """Another command takes the lock over (its holder stopped renewing, say), as the API server stores it."""
    lease = copy.deepcopy(store.objects[LOCK])
    lease["spec"]["holderIdentity"] = holder
    store.write(LOCK, lease)


async def test_the_lock_is_released_by_a_delete_of_the_version_its_holder_wrote_last(kmock):
    store = Store()
    store.install(kmock)
    await hold_lock(kmock)
    assert len(list(kmock["post"])) == 1
    (delete,) = list(kmock["delete"])
    assert delete.url.path == LOCK
    assert delete.data["preconditions"] == {"resourceVersion": "101"}  # the version its create returned
    assert store.objects == {}


async def test_a_holder_that_lost_the_lock_leaves_its_successors_lease_alone(kmock, capsys):
    store = Store()
    store.install(kmock)
    p = platform_for(kmock)

    def taken_over_while_held():
        with p.lock():
            successor_takes(store)

    await run(taken_over_while_held)
    assert store.objects[LOCK]["spec"]["holderIdentity"] == "successor-7"  # never deleted
    (delete,) = list(kmock["delete"])
    assert delete.data["preconditions"] == {"resourceVersion": "101"}
    assert "Lease mysql-mysqlsts-lock: written by another holder since our last renewal; left to it" \
        in capsys.readouterr().err


async def test_a_long_action_keeps_its_lease_renewed_past_the_lease_duration(kmock, monkeypatch):
    """A 1 s lease held for 2 s: without renewal a second command would take it over after 1 s."""
    monkeypatch.setattr(platform_module, "LOCK_SECONDS", 1)
    store = Store()
    store.install(kmock)
    refusals = []

    def long_action():
        holder = platform_for(kmock)
        with holder.lock():
            for _ in range(4):
                time.sleep(0.5)
                with pytest.raises(OperationFailed) as e, platform_for(kmock).lock():
                    pass
                refusals.append(e.value.problems[0])
                holder.check_lock("the next step")  # still ours

    await run(long_action)
    assert len(refusals) == 4
    assert all("another mysqlsts command" in r and "is working on cluster 'mysql'" in r for r in refusals)
    puts = list(kmock["put"])
    assert len(puts) >= 4  # every third of the duration
    versions = [r.data["metadata"]["resourceVersion"] for r in puts]
    assert versions == sorted(set(versions), key=int)  # each renewal at the version the one before wrote
    (delete,) = list(kmock["delete"])
    assert int(delete.data["preconditions"]["resourceVersion"]) > int(versions[-1])
    assert store.objects == {}


async def test_a_reclone_whose_lease_was_taken_over_stops_before_its_next_step(kmock, monkeypatch):
    monkeypatch.setattr(platform_module, "LOCK_SECONDS", 1)  # renewed every third of a second
    store = DeletingStore()
    store.install(kmock)
    v = values()
    store.objects[f"/apis/apps/v1/namespaces/{NS}/statefulsets/mysql"] = sts_with(v, 3)
    for i in range(3):
        store.objects[f"/api/v1/namespaces/{NS}/pods/mysql-{i}"] = pod(f"mysql-{i}", f"u{i}", phase="Running")
    p = platform_for(kmock)
    began = time.monotonic()

    def reclone():
        with p.lock():
            Cluster(p, v).reclone("mysql-1", timeout=10)

    action = asyncio.create_task(run(reclone))
    while f"/api/v1/namespaces/{NS}/pods/mysql-1" in store.objects:  # the reclone waits for the new pod
        await asyncio.sleep(0.05)
    successor_takes(store)
    with pytest.raises(OperationFailed) as e:
        await action
    assert e.value.problems == ["lost the mysqlsts command lock on cluster 'mysql' (Lease mysql-mysqlsts-lock: "
                                "successor-7 holds it now): stopping before waiting longer for mysql-1"]
    assert time.monotonic() - began < 5  # at its next renewal, not at the end of the wait
    assert store.objects[LOCK]["spec"]["holderIdentity"] == "successor-7"
    assert [r.url.path for r in kmock["delete"]] == [f"/api/v1/namespaces/{NS}/persistentvolumeclaims/data-mysql-1",
                                                     f"/api/v1/namespaces/{NS}/pods/mysql-1"]


def expire(store: Store) -> None:
    """Its holder stops renewing the lock (killed, or cut off from the API server) and it expires."""
    lease = copy.deepcopy(store.objects[LOCK])
    lease["spec"]["renewTime"] = "2026-01-01T00:00:00.000001Z"
    store.write(LOCK, lease)


@pytest.mark.parametrize("meanwhile, stopped", [
    (None, None),
    (successor_takes, "successor-7 holds it now"),
    (expire, "it expired at 2026-01-01 00:00:30.000001+00:00: its holder stopped renewing it"),
])
async def test_a_job_run_for_a_command_outside_checks_before_each_step_that_its_caller_holds_the_lock(
        kmock, monkeypatch, capsys, meanwhile, stopped):
    """A lifecycle command's role change runs as a Job; its argv names the command's Lease holder, and
    the Job stops before a step once that holder no longer holds the lock."""
    store = Store()
    store.install(kmock)
    v = values()
    store.objects[f"/apis/apps/v1/namespaces/{NS}/statefulsets/mysql"] = sts_with(v, 3)
    caller, job = platform_for(kmock), platform_for(kmock)
    job.inside = True
    argvs: list[list[str]] = []
    monkeypatch.setattr(caller, "run_in_cluster", lambda values, argv, timeout: argvs.append(argv) or {})
    monkeypatch.setattr(cluster_commands, "platform_for", lambda args, name, namespace=None: job)
    steps: list[str] = []

    def switchover(roles: Roles, to: str | None = None) -> dict:
        for step in ("fencing mysql-0", "making mysql-1 the source"):
            roles.step(step)
            steps.append(step)
            if meanwhile:
                meanwhile(store)
        return {"operation": "switchover"}

    monkeypatch.setattr(Roles, "switchover", switchover)

    def lifecycle_command() -> int:
        with caller.lock():
            RoleSteps().switchover(Cluster(caller, v), 60)
            (argv,) = argvs
            assert argv == ["switchover", "--caller-holds-lock", store.objects[LOCK]["spec"]["holderIdentity"]]
            return cli.main([*argv, "--target", "kubernetes", "-o", "json"])  # as the Job runs it

    code = await run(lifecycle_command)
    holder = argvs[0][-1]
    err = capsys.readouterr().err
    if stopped is None:
        assert code == 0 and steps == ["fencing mysql-0", "making mysql-1 the source"]
    else:
        assert code == 1 and steps == ["fencing mysql-0"]
        assert (f"mysqlsts switchover: the caller's mysqlsts command lock on cluster 'mysql' (Lease "
                f"mysql-mysqlsts-lock) is no longer held by {holder} ({stopped}): stopping before making "
                "mysql-1 the source") in err.splitlines()


def pod(name: str, uid: str, **status) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "uid": uid, "labels": {"app.kubernetes.io/name": "mysql-sts"}},
            "spec": {"containers": [{"name": "mysql", "image": "mariadb:10.11.15"}],
                     "terminationGracePeriodSeconds": 1}, "status": status}


def pod_list(*pods: dict, version: str = "10") -> dict:
    return {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": version}, "items": list(pods)}


async def test_stop_pod_deletes_and_watches_until_the_old_pod_is_gone_relisting_after_410(kmock):
    pods = f"/api/v1/namespaces/{NS}/pods"
    kmock[f"get {pods}/mysql-1"] << pod("mysql-1", "old")
    kmock[f"delete {pods}/mysql-1"] << pod("mysql-1", "old")
    expired = {"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                           "code": 410, "reason": "Expired", "message": "too old", "metadata": {}}}
    kmock[f"get {pods}", km.params(watch="true")] << (expired,)
    lists = iter([pod_list(pod("mysql-1", "old")), pod_list(pod("mysql-1", "new"), version="12")])
    kmock[f"get {pods}"] << (lambda: next(lists))
    await run(platform_for(kmock).stop_pod, "mysql-1")
    calls = [(r.method.value if hasattr(r.method, "value") else str(r.method), r.params.get("watch"))
             for r in kmock if r.url.path == pods]
    assert [w for _, w in calls] == [None, "true", None]  # list, watch (expired), list again
    watch = next(r for r in kmock if r.params.get("watch") == "true")
    assert watch.params["resourceVersion"] == "10"
    assert watch.params["fieldSelector"] == "metadata.name=mysql-1"
    (delete,) = list(kmock["delete"])
    assert delete.data["propagationPolicy"] == "Background"


async def test_a_watch_that_never_sees_the_change_times_out(kmock):
    pods = f"/api/v1/namespaces/{NS}/pods"
    kmock[f"get {pods}", km.params(watch="true")] << ()
    kmock[f"get {pods}"] << pod_list(pod("mysql-1", "old"))
    api = platform_for(kmock).api
    with pytest.raises(TimeoutError):
        await run(api.wait, "Pod", lambda objs: "mysql-1" not in objs, 0.5)


def sts_with(v: dict, replicas: int, primary: str | None = None) -> dict:
    stored = {**v, "auth": {k: "" for k in v["auth"]}}
    annotations = {VALUES_ANNOTATION: json.dumps(stored)}
    if primary:
        annotations[PRIMARY_ANNOTATION] = primary
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "mysql", "resourceVersion": "3", "annotations": annotations},
            "spec": {"replicas": replicas, "serviceName": "mysql", "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}}}


async def test_a_stuck_rollout_is_diagnosed_with_phase_conditions_events_and_the_init_log(kmock):
    v = values()
    kmock[f"get /apis/apps/v1/namespaces/{NS}/statefulsets/mysql"] << sts_with(v, 3)
    kmock[f"get /api/v1/namespaces/{NS}/configmaps/mysql-primary-record"] << 404
    crashing = pod("mysql-1", "u1", phase="Pending", podIP="10.244.1.7",
                   conditions=[{"type": "Ready", "status": "False", "reason": "ContainersNotReady",
                                "message": "containers with unready status: [mysql agent]"}],
                   initContainerStatuses=[
                       {"name": "install-tools", "ready": True, "restartCount": 0, "image": "t", "imageID": "",
                        "state": {"terminated": {"exitCode": 0}}},
                       {"name": "init-mysql", "ready": True, "restartCount": 0, "image": "s", "imageID": "",
                        "state": {"terminated": {"exitCode": 0}}},
                       {"name": "clone-mysql", "ready": False, "restartCount": 6, "image": "b", "imageID": "",
                        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m"}}}])
    ready = pod("mysql-0", "u0", phase="Running", conditions=[{"type": "Ready", "status": "True"}])
    kmock[f"get /api/v1/namespaces/{NS}/pods"] << pod_list(ready, crashing)
    kmock[f"get /api/v1/namespaces/{NS}/persistentvolumeclaims"] << {
        "apiVersion": "v1", "kind": "PersistentVolumeClaimList", "metadata": {"resourceVersion": "1"}, "items": []}
    kmock[f"get /api/v1/namespaces/{NS}/pods/mysql-1/log"] << (
        b"2026-11-22T00:00:01.000Z mysql-1 clone-mysql.sh: ERROR: no donor: no peer is a writable primary\n")
    kmock[f"get /api/v1/namespaces/{NS}/pods/mysql-1"] << crashing
    kmock[f"get /api/v1/namespaces/{NS}/events"] << {
        "apiVersion": "v1", "kind": "EventList", "metadata": {"resourceVersion": "1"},
        "items": [{"metadata": {"name": "e1"}, "involvedObject": {"name": "mysql-1"}, "type": "Warning",
                   "reason": "BackOff", "message": "Back-off restarting failed container clone-mysql",
                   "lastTimestamp": "2026-11-22T00:00:02Z"}]}
    p = platform_for(kmock)
    infos = {i.name: i for i in await run(p.pods)}
    assert infos["mysql-1"].phase == "Init:CrashLoopBackOff (clone-mysql)"
    assert infos["mysql-1"].restarts == 6 and not infos["mysql-1"].ready
    assert infos["mysql-2"].phase == "Pending (not created yet)" and infos["mysql-2"].running
    assert infos["mysql-0"].fqdn == "mysql-0.mysql.db.svc.cluster.local"
    with pytest.raises(OperationFailed) as e:
        await run(Cluster(p, v, PASSWORDS).wait_ready, ["mysql-1"], 0.0)
    text = "\n".join(e.value.problems)
    assert "mysql-1 keeps failing (6 restarts)" in text
    assert "condition Ready=False (ContainersNotReady" in text
    assert "event Warning BackOff: Back-off restarting failed container clone-mysql" in text
    assert "clone-mysql.sh: ERROR: no donor" in text
    log = next(r for r in kmock if r.url.path.endswith("/log"))
    assert log.params == {"container": "clone-mysql", "tailLines": "20"}
    events = next(r for r in kmock if r.url.path.endswith("/events"))
    assert events.params["fieldSelector"] == "involvedObject.name=mysql-1"


async def test_set_primary_moves_role_labels_and_records_the_primary_in_its_own_configmap(kmock):
    record = f"/api/v1/namespaces/{NS}/configmaps/mysql-primary-record"
    kmock[f"get {record}"] << {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mysql-primary-record"},
                               "data": {"primary": "mysql-0"}}
    pods = [pod(f"mysql-{i}", f"u{i}") for i in range(3)]
    pods[0]["metadata"]["labels"]["mysqlsts.io/role"] = "primary"
    pods[2]["metadata"]["labels"]["mysqlsts.io/role"] = "quarantined"
    kmock[f"get /api/v1/namespaces/{NS}/pods"] << pod_list(*pods)
    kmock["patch"] << (lambda request: {**pods[0], "metadata": {**pods[0]["metadata"]}}
                       if "/pods/" in request.url.path else {**request.data, "metadata": {"name": "x"}})
    await run(platform_for(kmock).set_primary, "mysql-1")
    patches = {r.url.path.rsplit("/", 1)[1]: r for r in kmock["patch"]}
    assert set(patches) == {"mysql-0", "mysql-1", "mysql-primary-record"}  # mysql-2 stays quarantined
    assert patches["mysql-0"].data == {"metadata": {"labels": {"mysqlsts.io/role": "replica"}}}
    assert patches["mysql-1"].data == {"metadata": {"labels": {"mysqlsts.io/role": "primary"}}}
    assert patches["mysql-0"].headers["Content-Type"] == "application/merge-patch+json"
    assert patches["mysql-primary-record"].data["data"] == {"primary": "mysql-1"}
    assert not [r for r in kmock if "/statefulsets" in r.url.path and r.method != "GET"]


async def test_a_primary_recorded_on_the_statefulset_by_0_1_is_still_read(kmock):
    kmock[f"get /api/v1/namespaces/{NS}/configmaps/mysql-primary-record"] << 404
    kmock[f"get /apis/apps/v1/namespaces/{NS}/statefulsets/mysql"] << sts_with(values(), 3, primary="mysql-2")
    assert await run(platform_for(kmock).recorded_primary) == "mysql-2"


def role_rules(**sets: str) -> list[dict]:
    (role,) = [o for o in render(values(**sets), PASSWORDS) if o["kind"] == "Role"]
    return role["rules"]


def granted(rules: list[dict], resource: str, verb: str, name: str | None = None) -> bool:
    return any(resource in r["resources"] and verb in r["verbs"]
               and ("resourceNames" not in r or name in r["resourceNames"]) for r in rules)


def test_the_role_grants_exactly_what_mysqlsts_does_in_the_cluster_on_the_objects_it_names():
    rules = role_rules(replicas="3")
    assert granted(rules, "persistentvolumeclaims", "delete", "data-mysql-2")  # autoReclone in the cluster
    assert not granted(rules, "persistentvolumeclaims", "delete", "data-other-0")
    assert not granted(rules, "persistentvolumeclaims", "delete", "data-mysql-3")
    assert granted(rules, "pods/exec", "create", "mysql-1")  # kill and hang faults
    assert not granted(rules, "pods/exec", "create", "other-0")
    assert not granted(rules, "statefulsets", "patch", "mysql")  # it could rewrite the pod template
    assert granted(rules, "statefulsets", "get", "mysql")
    assert granted(rules, "configmaps", "patch", "mysql-primary-record")
    assert not granted(rules, "configmaps", "patch", "mysql-config")
    assert not any(v in ("create", "patch") for r in rules if "events" in r["resources"] for v in r["verbs"])
    assert granted(rules, "networkpolicies", "delete", "mysql-0-mysqlsts-isolate")
    assert not granted(rules, "networkpolicies", "delete", "mysql")  # the chart's own policy
    assert not granted(rules, "pods", "delete", "other-0")
    # A scale-out renders the new ordinals' names.
    assert granted(role_rules(replicas="5"), "persistentvolumeclaims", "delete", "data-mysql-4")


JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"


def mock_job(kmock, outcome: str, runner: dict, log: str) -> None:
    """The API side of one in-cluster run: the Job is created, ends with `outcome`, its pod logs `log`."""
    name = runner["metadata"]["name"]
    kmock[f"post {JOBS}"] << (lambda request: request.data)
    kmock[f"get {JOBS}"] << (lambda request: {
        "apiVersion": "batch/v1", "kind": "JobList", "metadata": {"resourceVersion": "5"},
        "items": [{**next(iter(kmock["post"])).data,
                   "status": {"conditions": [{"type": outcome, "status": "True"}]}}]})
    kmock[f"get /api/v1/namespaces/{NS}/pods/{name}/log"] << log.encode()  # text/plain, as the API server sends
    kmock[f"get /api/v1/namespaces/{NS}/pods/{name}"] << runner
    kmock[f"get /api/v1/namespaces/{NS}/pods"] << pod_list(runner)


async def test_in_cluster_verification_runs_as_a_job_and_its_report_comes_back(kmock):
    v = values()
    report = {"cluster": "mysql", "target": "kubernetes", "healthy": True,
              "checks": [{"name": "exactly one writable node", "ok": True, "detail": "mysql-0"}]}
    mock_job(kmock, "Complete", pod("runner-x", "u9"),
             "target: kubernetes, cluster: mysql (namespace db, in-cluster)\n"
             "[   0.1s] primary is mysql-0; pointing mysql-primary.db.svc.cluster.local at it\n"
             + json.dumps(report, indent=2) + "\n")
    kmock[km.method.DELETE] << {"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}
    got = await run(platform_for(kmock).run_in_cluster, v, ["verify", "--publish-primary"], 60)
    assert got == report
    (create,) = list(kmock["post"])
    job = create.data
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == v["images"]["tools"]
    assert container["args"] == ["verify", "--publish-primary", "--target", "kubernetes", "--name", "mysql",
                                 "-n", NS, "-o", "json"]
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] == 60
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "mysql-mysqlsts"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert "mysql-sts" not in json.dumps(job["spec"]["template"]["metadata"]["labels"])  # not a database pod
    pods_query = next(r for r in kmock if r.url.path.endswith("/pods"))
    assert pods_query.params["labelSelector"] == f"job-name={job['metadata']['name']}"
    (delete,) = list(kmock["delete"])
    assert delete.url.path == f"{JOBS}/{job['metadata']['name']}"


async def test_a_report_that_is_the_whole_log_comes_back_verbatim_from_the_jobs_newest_pod(kmock):
    """A log that is one JSON document is read as text (some client versions parse such a log into a dict),
    and of a retried Job's pods the newest one's log counts, whatever the names' order."""
    report = {"cluster": "mysql", "target": "kubernetes", "healthy": True, "checks": []}
    old, new = pod("runner-b", "u1"), pod("runner-a", "u2")
    old["metadata"]["creationTimestamp"], new["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z", \
        "2026-01-01T00:01:00Z"
    kmock[f"get /api/v1/namespaces/{NS}/pods"] << pod_list(new, old)
    mock_job(kmock, "Complete", new, json.dumps(report) + "\n")
    kmock[f"get /api/v1/namespaces/{NS}/pods/runner-b/log"] << b"an earlier attempt's log\n"
    kmock[km.method.DELETE] << {"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}
    assert await run(platform_for(kmock).run_in_cluster, values(), ["verify"], 60) == report


def failed_runner(exit_code: int) -> dict:
    return pod("runner-y", "u8", phase="Failed", containerStatuses=[
        {"name": "mysqlsts", "ready": False, "restartCount": 0, "image": "t", "imageID": "",
         "state": {"terminated": {"exitCode": exit_code}}}])


async def test_a_job_that_stops_on_bad_input_reports_that_alone_with_its_exit_code(kmock):
    """What the command in the Job said is what the user sees, as if it ran here: one line, not a diagnosis."""
    v = values()
    mock_job(kmock, "Failed", failed_runner(2),
             "[   0.1s] target: kubernetes\nmysqlsts verify: --name: no cluster 'mysql'\n")
    kmock[km.method.DELETE] << {"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}
    with pytest.raises(BadInput) as e:
        await run(platform_for(kmock).run_in_cluster, v, ["verify"], 60)
    assert e.value.problems == ["--name: no cluster 'mysql'"]
    assert len(list(kmock["delete"])) == 1  # the Job is cleaned up on failure too


async def test_a_job_that_crashes_without_a_report_fails_with_a_diagnosis(kmock):
    v = values()
    mock_job(kmock, "Failed", failed_runner(1), "Traceback (most recent call last):\nMemoryError\n")
    kmock[f"get /api/v1/namespaces/{NS}/events"] << {"apiVersion": "v1", "kind": "EventList",
                                                    "metadata": {"resourceVersion": "1"}, "items": []}
    kmock[km.method.DELETE] << {"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}
    with pytest.raises(OperationFailed) as e:
        await run(platform_for(kmock).run_in_cluster, v, ["verify"], 60)
    text = "\n".join(e.value.problems)
    assert "failed without a report" in text and "MemoryError" in text
    assert len(list(kmock["delete"])) == 1


def test_last_json_skips_progress_and_finds_the_document():
    log = 'progress\n{"not": "last"}\n[ 1.0s] more\n{\n  "a": {"b": 1}\n}\n'
    assert last_json(log) == {"a": {"b": 1}}
    assert last_json("no report at all\n") is None


async def test_a_failing_cleanup_does_not_hide_the_report(kmock):
    v = values()
    mock_job(kmock, "Complete", pod("runner-z", "u7"), '{"healthy": true, "checks": []}\n')
    kmock[km.method.DELETE] << (lambda: status(403, "jobs.batch is forbidden: cannot delete"))
    got = await run(platform_for(kmock).run_in_cluster, v, ["verify"], 60)
    assert got == {"healthy": True, "checks": []}


def kubeconfig(tmp_path, url: str) -> str:
    import yaml

    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "mock",
        "clusters": [{"name": "mock", "cluster": {"server": url}}],
        "users": [{"name": "dev", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "mock", "context": {"cluster": "mock", "user": "dev", "namespace": NS}}]}))
    return str(path)


@pytest.mark.parametrize("healthy", [True, False])
async def test_verify_from_outside_prints_the_in_cluster_report_like_the_local_target(
        kmock, tmp_path, monkeypatch, capsys, healthy):
    from mysqlsts import cli

    monkeypatch.setenv("KUBECONFIG", kubeconfig(tmp_path, str(kmock.url).rstrip("/")))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    v = values()
    kmock[f"get /apis/apps/v1/namespaces/{NS}/statefulsets/mysql"] << sts_with(v, 3, primary="mysql-0")
    report = {"cluster": "mysql", "target": "kubernetes", "healthy": healthy, "checks": [
        {"name": "exactly one writable node", "ok": True, "detail": "mysql-0"},
        {"name": "replica mysql-1 replicates from the primary", "ok": healthy, "detail": "io/sql Yes"}]}
    mock_job(kmock, "Complete" if healthy else "Failed", pod("runner", "u1"), json.dumps(report) + "\n")
    kmock[km.method.DELETE] << {"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}
    rc = await run(cli.main, ["verify"])  # a kubeconfig with a current context: kubernetes by default
    out, err = capsys.readouterr()
    assert rc == (0 if healthy else 1), err
    assert out.splitlines()[0] == "target: kubernetes, cluster: mysql (namespace db, context mock)"
    assert "replica mysql-1 replicates from the primary" in out
    assert ("cluster is HEALTHY: 2/2" if healthy else "cluster is UNHEALTHY: 1/2") in out
    assert all(r.headers.get("Authorization") == "Bearer t0ken" for r in kmock)
    assert not [r for r in kmock if "/secrets/" in r.url.path]  # the CLI outside never reads the passwords


def isolate_mocks(kmock) -> str:
    policies = f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies"
    kmock[f"post {policies}"] << (lambda request: request.data)
    kmock[f"delete {policies}/mysql-0-mysqlsts-isolate"] << {"kind": "Status", "apiVersion": "v1", "metadata": {}}
    kmock[f"get /api/v1/namespaces/{NS}/pods"] << pod_list(pod("mysql-0", "u0", phase="Running", podIP="127.0.0.1"))
    kmock[f"patch /api/v1/namespaces/{NS}/pods/mysql-0"] << pod("mysql-0", "u0")
    kmock[f"get /api/v1/namespaces/{NS}/persistentvolumeclaims"] << {
        "apiVersion": "v1", "kind": "PersistentVolumeClaimList", "metadata": {"resourceVersion": "1"}, "items": []}
    kmock[f"get /apis/apps/v1/namespaces/{NS}/statefulsets/mysql"] << 404
    return policies


def isolated_label_patches(kmock) -> list:
    return [r.data["metadata"]["labels"][ISOLATED_LABEL] for r in kmock["patch"]]


async def test_isolate_labels_the_pod_out_of_the_chart_policy_and_denies_all_until_undone(kmock, monkeypatch):
    policies = isolate_mocks(kmock)
    with socket.socket() as s:  # a port nothing listens on: the policy "took"
        s.bind(("127.0.0.1", 0))
        monkeypatch.setattr(platform_module, "MYSQL_PORT", s.getsockname()[1])
    p = platform_for(kmock)
    assert p.fault_unavailable("isolate") is None and p.fault_unavailable("hang") is None
    undo = await run(p.inject, "mysql-0", "isolate")
    # Labelled first: the chart's policy (which lets clients in) stops selecting the pod.
    assert isolated_label_patches(kmock) == ["true"]
    (create,) = list(kmock["post"])
    assert create.data["spec"] == {"podSelector": {"matchLabels": {"statefulset.kubernetes.io/pod-name": "mysql-0"}},
                                   "policyTypes": ["Ingress", "Egress"]}  # no rule: nothing in, nothing out
    assert not list(kmock["delete"])
    await run(undo)
    assert [r.url.path for r in kmock["delete"]] == [f"{policies}/mysql-0-mysqlsts-isolate"]
    assert isolated_label_patches(kmock) == ["true", None]  # null in a merge patch removes the label


def test_the_chart_policy_leaves_out_an_isolated_pod():
    (policy,) = [o for o in render(values(**{"networkPolicy.enabled": "true"}), PASSWORDS)
                 if o["kind"] == "NetworkPolicy"]
    assert {"key": ISOLATED_LABEL, "operator": "DoesNotExist"} in policy["spec"]["podSelector"]["matchExpressions"]


async def test_isolate_is_refused_and_undone_when_the_pod_stays_reachable(kmock, monkeypatch):
    """A network plugin that ignores NetworkPolicies (kind's bridge) would make the drill measure nothing."""
    policies = isolate_mocks(kmock)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        monkeypatch.setattr(platform_module, "MYSQL_PORT", listener.getsockname()[1])
        monkeypatch.setattr(platform_module, "ISOLATE_PROOF_SECONDS", 0.5)
        with pytest.raises(OperationFailed, match="does not enforce NetworkPolicies"):
            await run(platform_for(kmock).inject, "mysql-0", "isolate")
    assert [r.url.path for r in kmock["delete"]] == [f"{policies}/mysql-0-mysqlsts-isolate"]
    assert isolated_label_patches(kmock) == ["true", None]


@pytest.mark.parametrize(("fault", "signal"), [("kill", "KILL"), ("hang", "STOP")])
async def test_kill_and_hang_signal_the_server_in_its_pod_and_never_delete_the_pod(kmock, fault, signal):
    """An exec of signal-server.sh in the server container; kmock answers no websocket upgrade, so the
    exec fails here and says so: what matters is what was asked, and that nothing was deleted."""
    kmock[f"get /api/v1/namespaces/{NS}/pods/mysql-0/exec"] << 403
    with pytest.raises(OperationFailed, match=f"mysql-0: could not send SIG{signal} to its server"):
        await run(platform_for(kmock).inject, "mysql-0", fault)
    (request,) = [r for r in kmock if r.url.path.endswith("/exec")]
    assert request.url.query.getall("command") == ["bash", "/opt/mysqlsts/scripts/signal-server.sh", signal]
    assert request.url.query["container"] == "mysql"
    assert not list(kmock["delete"])


def test_the_server_is_not_pid_1_of_its_container_so_an_exec_can_signal_it():
    (sts,) = [o for o in render(values(), PASSWORDS) if o["kind"] == "StatefulSet"]
    assert sts["spec"]["template"]["spec"]["shareProcessNamespace"] is True


async def test_discarding_data_deletes_the_claim_before_the_pod(kmock):
    """The other order lets the StatefulSet re-create the pod on the old (quarantined) claim."""
    pods, claims = f"/api/v1/namespaces/{NS}/pods", f"/api/v1/namespaces/{NS}/persistentvolumeclaims"
    kmock[f"delete {claims}/data-mysql-1"] << {"kind": "Status", "apiVersion": "v1", "metadata": {}}
    kmock[f"get {pods}/mysql-1"] << pod("mysql-1", "old")
    kmock[f"delete {pods}/mysql-1"] << pod("mysql-1", "old")
    kmock[f"get {pods}"] << pod_list(pod("mysql-1", "new"))
    await run(platform_for(kmock).discard_data, "mysql-1")
    assert [r.url.path for r in kmock["delete"]] == [f"{claims}/data-mysql-1", f"{pods}/mysql-1"]
    assert all(r.data.get("gracePeriodSeconds") is None for r in kmock["delete"])  # never a force delete


async def test_a_drill_summary_is_kept_in_a_configmap(kmock):
    store = Store()
    store.install(kmock)
    p = platform_for(kmock)
    report = {"started_at": "2026-11-22T01:00:00+00:00", "run_id": "abc", "fault": "kill", "rto_seconds": 1.5,
              "lost_writes": 0, "passed": True, "cluster": "mysql"}
    await run(p.record_drill, report, "mysqlsts_drill_passed 1.0\n")
    await run(p.record_drill, {**report, "run_id": "def"}, "mysqlsts_drill_passed 1.0\n")
    cm = store.objects[f"/api/v1/namespaces/{NS}/configmaps/mysql-drill-history"]
    assert [r["run_id"] for r in json.loads(cm["data"]["runs.json"])] == ["abc", "def"]
    assert json.loads(cm["data"]["last.json"])["run_id"] == "def"
    assert cm["data"]["metrics.prom"] == "mysqlsts_drill_passed 1.0\n"
    assert all(r.headers["Content-Type"] == "application/apply-patch+yaml" for r in kmock["patch"])


class DeletingStore(Store):
    """Deletes answer like the API server: the object itself for the kinds whose client method
    returns it, a Status for the others."""

    def delete(self, request: km.Request):
        obj = self.objects.get(request.url.path)
        answer = super().delete(request)
        if obj is not None and PATH.match(request.url.path)["plural"] in (
                "services", "pods", "persistentvolumeclaims", "serviceaccounts"):
            return ok(obj)
        return answer


async def applied_with_controller(kmock, store: Store) -> KubernetesPlatform:
    store.install(kmock)
    p = platform_for(kmock)
    v = values(**{"controller.enabled": "true"})
    await run(p.apply, v, PASSWORDS, render(v, PASSWORDS))
    return p


async def test_destroy_also_removes_what_mysqlsts_made_besides_the_chart(kmock):
    store = DeletingStore()
    p = await applied_with_controller(kmock, store)
    labels = {"app.kubernetes.io/name": "mysql-sts", "app.kubernetes.io/instance": "mysql"}
    extra = {f"/api/v1/namespaces/{NS}/configmaps/mysql-drill-history": "ConfigMap",
             f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/mysql-mysqlsts-controller": "Lease",
             f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/mysql-0-mysqlsts-isolate": "NetworkPolicy",
             f"/apis/batch/v1/namespaces/{NS}/jobs/mysql-verify-abc123": "Job",
             f"/api/v1/namespaces/{NS}/persistentvolumeclaims/data-mysql-0": "PersistentVolumeClaim"}
    for path, kind in extra.items():
        store.objects[path] = {"kind": kind, "metadata": {"name": path.rsplit("/", 1)[1], "labels": labels}}
    await run(p.destroy, True)
    assert store.objects == {}


class TerminatingStore(DeletingStore):
    """Pods outlive the deletion of their owner for a while, as they do while they terminate; every
    delete notes which pods were still there."""

    LINGER = 0.3

    def __init__(self):
        super().__init__()
        self.gone_at: dict[str, float] = {}  # pod path -> when it is gone
        self.deletes: list[tuple[str, list[str]]] = []

    def live_pods(self) -> list[str]:
        now = time.monotonic()
        for path in [p for p, t in self.gone_at.items() if t <= now]:
            self.objects.pop(path, None)
            del self.gone_at[path]
        return sorted(p.rsplit("/", 1)[1] for p in self.objects if "/pods/" in p)

    def get(self, request: km.Request):
        self.live_pods()
        answer = super().get(request)
        wanted = dict(kv.split("=", 1) for kv in (request.params.get("labelSelector") or "").split(",") if kv)
        if wanted and request.url.path.endswith("/pods"):
            items = [o for o in answer.payload["items"]
                     if wanted.items() <= ((o["metadata"].get("labels") or {}).items())]
            return ok({**answer.payload, "items": items})
        return answer

    def delete(self, request: km.Request):
        self.deletes.append((request.url.path.rsplit("/", 2)[-2], self.live_pods()))
        owned = {"deployments": "controller", "statefulsets": "mysql-sts"}.get(request.url.path.rsplit("/", 2)[-2])
        for path, obj in self.objects.items():
            labels = obj["metadata"].get("labels") or {}
            if owned and "/pods/" in path and owned in (labels.get("app.kubernetes.io/component"),
                                                         labels.get("app.kubernetes.io/name")):
                self.gone_at.setdefault(path, time.monotonic() + self.LINGER)
        return super().delete(request)


async def test_destroy_stops_the_controller_then_the_pods_before_it_deletes_the_leases(kmock):
    """A controller left running while the pods go acts on them, and one killed in the middle of a
    failover leaves its lock Lease behind (seen on kind): nothing that could take a Lease runs by then."""
    kmock[f"get /api/v1/namespaces/{NS}/pods", km.params(watch="true")] << ()
    store = TerminatingStore()
    p = await applied_with_controller(kmock, store)
    db = {"app.kubernetes.io/name": "mysql-sts", "app.kubernetes.io/instance": "mysql"}
    tools = {"app.kubernetes.io/name": "mysqlsts", "app.kubernetes.io/instance": "mysql",
             "app.kubernetes.io/component": "controller"}
    for name, labels in (("mysql-0", db), ("mysql-1", db), ("mysql-controller-7d9f-x2", tools)):
        store.objects[f"/api/v1/namespaces/{NS}/pods/{name}"] = {"kind": "Pod",
                                                                  "metadata": {"name": name, "labels": labels}}
    store.objects[f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/mysql-mysqlsts-lock"] = {
        "kind": "Lease", "metadata": {"name": "mysql-mysqlsts-lock", "labels": db}}
    await run(p.destroy, True)
    kinds = [kind for kind, _ in store.deletes]
    assert kinds.index("deployments") < kinds.index("statefulsets") < kinds.index("leases")
    pods_then = dict(store.deletes)
    assert pods_then["statefulsets"] == ["mysql-0", "mysql-1"]  # the controller is gone already
    assert pods_then["leases"] == []
    assert store.live_pods() == [] and store.objects == {}


async def test_a_pod_on_an_older_revision_is_outdated_and_its_role_label_is_read(kmock):
    sts = sts_with(values(), 3)
    sts["status"] = {"replicas": 3, "updateRevision": "mysql-new"}
    kmock[f"get /apis/apps/v1/namespaces/{NS}/statefulsets/mysql"] << sts
    pods = [pod(f"mysql-{i}", f"u{i}", phase="Running") for i in range(2)]
    pods[0]["metadata"]["labels"].update({"controller-revision-hash": "mysql-old", "mysqlsts.io/role": "primary"})
    pods[1]["metadata"]["labels"].update({"controller-revision-hash": "mysql-new"})
    kmock[f"get /api/v1/namespaces/{NS}/pods"] << pod_list(*pods)
    kmock[f"get /api/v1/namespaces/{NS}/persistentvolumeclaims"] << {
        "apiVersion": "v1", "kind": "PersistentVolumeClaimList", "metadata": {"resourceVersion": "1"}, "items": []}
    infos = {i.name: i for i in await run(platform_for(kmock).pods)}
    assert [infos[n].outdated for n in ("mysql-0", "mysql-1", "mysql-2")] == [True, False, False]
    assert [infos[n].role_label for n in ("mysql-0", "mysql-1", "mysql-2")] == ["primary", "", None]


def test_pods_start_together_and_mysqlsts_rolls_template_changes():
    (sts,) = [o for o in render(values(), PASSWORDS) if o["kind"] == "StatefulSet"]
    assert sts["spec"]["podManagementPolicy"] == "Parallel"  # after a full restart any pod may hold the newest data
    assert sts["spec"]["updateStrategy"] == {"type": "OnDelete"}  # no primary restart without a switchover
    assert sts["spec"]["template"]["metadata"]["labels"]["mysqlsts.io/role"] == "replica"


def test_a_set_made_with_ordered_ready_is_re_created_for_parallel_its_pods_kept():
    """podManagementPolicy cannot change in place: apply deletes the old set with Orphan propagation."""
    old = {"spec": {"serviceName": "mysql", "selector": {"matchLabels": {"a": "b"}}}}  # the API's default: OrderedReady
    new = {"spec": {**old["spec"], "podManagementPolicy": "Parallel"}}
    assert platform_module._immutable_change(old, new)
    assert not platform_module._immutable_change(new, new)


# -- the drill Lease: a manual switchover/failover waits for a running drill ---------------------------

DRILL_LEASE = f"{LEASES}/mysql-mysqlsts-drill"


def drill_lease(holder: str, seconds: int = 1800, version: str = "7") -> dict:
    from datetime import UTC, datetime

    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "mysql-mysqlsts-drill", "resourceVersion": version},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": seconds,
                     "renewTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}


async def hold_drill_lock(kmock, wait: float) -> None:
    p = platform_for(kmock)

    def take():
        with p.drill_lock(wait=wait):
            pass

    await run(take)


async def test_a_second_drill_is_refused_at_once_by_a_live_drill_lease(kmock):
    kmock[f"get {DRILL_LEASE}"] << drill_lease("mysql-drill-28")
    with pytest.raises(OperationFailed) as e:
        await hold_drill_lock(kmock, wait=0)
    (line,) = e.value.problems
    assert line.startswith("another drill (mysql-drill-28) is working on cluster 'mysql'; its lock expires at ")
    assert len(list(kmock["get"])) == 1


async def test_waiting_on_a_live_drill_lease_retries_then_refuses_naming_its_holder(kmock, capsys):
    kmock[f"get {DRILL_LEASE}"] << (lambda: ok(drill_lease("mysql-drill-28")))
    with pytest.raises(OperationFailed) as e:
        await hold_drill_lock(kmock, wait=1)
    (line,) = e.value.problems
    assert line.startswith("another drill (mysql-drill-28) is working on cluster 'mysql'; "
                           "waited 1s for it to finish; its lock expires at ")
    assert len(list(kmock["get"])) >= 2  # asked again while waiting
    assert not list(kmock["post"]) and not list(kmock["put"]) and not list(kmock["delete"])
    assert "waiting for the running drill (mysql-drill-28) to finish (up to 1s)" in capsys.readouterr().err


async def test_a_drill_lease_released_during_the_wait_is_taken_and_released(kmock, capsys):
    answers = iter([ok(drill_lease("mysql-drill-28"))] * 3)
    kmock[f"get {DRILL_LEASE}"] << (lambda: next(answers, status(404, "no lease")))
    kmock[f"post {LEASES}"] << (lambda request: request.data)
    kmock[f"delete {DRILL_LEASE}"] << {"kind": "Status", "apiVersion": "v1", "metadata": {}}
    await hold_drill_lock(kmock, wait=10)
    assert len(list(kmock["get"])) == 4
    (create,) = list(kmock["post"])
    assert create.data["metadata"]["name"] == "mysql-mysqlsts-drill"
    assert create.data["spec"]["holderIdentity"] not in ("", "mysql-drill-28")
    assert len(list(kmock["delete"])) == 1
    assert "waiting for the running drill (mysql-drill-28) to finish" in capsys.readouterr().err


async def test_a_drill_that_dies_during_the_wait_is_taken_over_when_its_lease_expires(kmock):
    stale = drill_lease("dead-drill", seconds=1)  # renewed now, never again
    kmock[f"get {DRILL_LEASE}"] << (lambda: ok(stale))
    kmock[f"put {DRILL_LEASE}"] << (lambda request: request.data)
    kmock[f"delete {DRILL_LEASE}"] << {"kind": "Status", "apiVersion": "v1", "metadata": {}}
    await hold_drill_lock(kmock, wait=10)
    (replace,) = list(kmock["put"])
    assert replace.data["metadata"]["resourceVersion"] == "7"
    assert replace.data["spec"]["holderIdentity"] != "dead-drill"


async def test_losing_the_race_for_a_freed_drill_lease_is_retried_while_waiting(kmock):
    kmock[f"get {DRILL_LEASE}"] << (lambda: status(404, "no lease"))
    creates = iter([status(409, "leases.coordination.k8s.io already exists")])
    kmock[f"post {LEASES}"] << (lambda request: next(creates, ok(request.data)))
    kmock[f"delete {DRILL_LEASE}"] << {"kind": "Status", "apiVersion": "v1", "metadata": {}}
    await hold_drill_lock(kmock, wait=10)
    assert len(list(kmock["post"])) == 2 and len(list(kmock["delete"])) == 1


async def test_destroy_keeping_the_data_keeps_what_the_data_needs_and_a_bootstrap_starts_from_it(kmock):
    """Passwords, the values the data was made with, and the primary it last had stay with the volumes;
    destroy --delete-data then removes them too."""
    store = DeletingStore()
    p = await applied_with_controller(kmock, store)
    v = await run(p.values)
    store.objects[f"/api/v1/namespaces/{NS}/configmaps/mysql-primary-record"] = {
        "kind": "ConfigMap", "metadata": {"name": "mysql-primary-record", "labels": {
            "app.kubernetes.io/name": "mysql-sts", "app.kubernetes.io/instance": "mysql"}},
        "data": {"primary": "mysql-1"}}
    claim = f"/api/v1/namespaces/{NS}/persistentvolumeclaims/data-mysql-0"
    store.objects[claim] = {"kind": "PersistentVolumeClaim", "metadata": {"name": "data-mysql-0", "labels": {
        "app.kubernetes.io/name": "mysql-sts", "app.kubernetes.io/instance": "mysql"}}}
    await run(p.destroy, False)
    assert sorted(path.rsplit("/", 2)[-2] + "/" + path.rsplit("/", 1)[1] for path in store.objects) == [
        "configmaps/mysql-primary-record", "persistentvolumeclaims/data-mysql-0", "secrets/mysql-secret"]
    assert not await run(p.exists)
    assert await run(p.recorded_values) == v
    assert await run(p.stored_passwords) == PASSWORDS
    assert await run(p.recorded_primary) == "mysql-1"
    await run(p.destroy, True)
    assert store.objects == {}
    assert await run(p.recorded_values) is None
