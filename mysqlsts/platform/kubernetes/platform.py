"""The kubernetes platform: the StatefulSet controller runs the pods, labels and a
Service publish the primary, and SQL reaches the pods only from inside the
cluster, so commands that need it run there as a short-lived Job."""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mysqlsts.chart import values as chart_values
from mysqlsts.chart.render import ISOLATED_LABEL, ROLE_LABEL, Names, render_job, selector
from mysqlsts.chart.secrets import SECRET_DATA_KEYS
from mysqlsts.decisions.topology import published_role
from mysqlsts.errors import BadInput, OperationFailed
from mysqlsts.output import progress
from mysqlsts.platform.base import PodInfo, unreachable
from mysqlsts.platform.kubernetes.api import KINDS, Api
from mysqlsts.platform.kubernetes.lease import CallersLease, Lease, Taken

VALUES_ANNOTATION = "mysqlsts.io/values"
PRIMARY_ANNOTATION = "mysqlsts.io/primary"
TOKEN_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
# Its holder renews a Lease while it lives (lease.py): one that dies lets go after this long.
LOCK_SECONDS = 30  # a command's and a drill's
LEADER_SECONDS = 15  # a controller's
# Kinds a release may stop rendering (a feature switched off): pruned when absent.
PRUNABLE = ("Deployment", "CronJob", "NetworkPolicy", "PodDisruptionBudget")
# Kinds mysqlsts creates outside the chart (labelled with the release): destroy removes them too.
LEFTOVERS = ("Job", "NetworkPolicy", "ConfigMap", "Lease")
MYSQL_PORT = 3306
# How long a NetworkPolicy may take to be enforced before isolate gives up on it.
ISOLATE_PROOF_SECONDS = 5.0
# Signals the server inside its pod (kill and hang faults, fencing a silent primary).
SIGNAL_SERVER = ["bash", "/opt/mysqlsts/scripts/signal-server.sh"]
EXEC_SECONDS = 10


def in_cluster() -> bool:
    return "KUBERNETES_SERVICE_HOST" in os.environ and TOKEN_FILE.is_file()


def selector_string(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


STAGED = "next-"  # Secret keys of passwords being changed to (stage_passwords)


class KubernetesPlatform:
    target = "kubernetes"
    poll_interval = 1.0
    job_margin = 30.0  # past a Job's activeDeadlineSeconds, how long to wait for it to be marked failed

    def __init__(self, name: str, namespace: str | None = None, context: str | None = None,
                 api: Api | None = None, inside: bool | None = None):
        self.name = name
        self.context = context
        self.inside = in_cluster() and context is None if inside is None else inside
        self.api = api or Api.connect(namespace, context, self.inside)
        self.namespace = self.api.namespace
        self.names = Names.of(name)
        self.pod_selector = selector_string(selector({"name": name}))
        self._held: list[Lease | CallersLease] = []  # the Leases this process holds now, or acts for

    # -- state ---------------------------------------------------------------------------

    def describe(self) -> str:
        where = "in-cluster" if self.inside else f"context {self.api.context or self.context or '(current)'}"
        return f"target: kubernetes, cluster: {self.name} (namespace {self.namespace}, {where})"

    def _sts(self) -> dict[str, Any] | None:
        return self.api.get("StatefulSet", self.names.sts)

    def exists(self) -> bool:
        return self._sts() is not None

    def values(self) -> dict[str, Any]:
        sts = self._sts()
        if sts is None:
            raise BadInput(f"--name: no cluster {self.name!r} in namespace {self.namespace!r} "
                           "(bootstrap it first, or pass -n/--context)")
        annotations = sts["metadata"].get("annotations") or {}
        if VALUES_ANNOTATION not in annotations:
            raise OperationFailed(f"StatefulSet {self.name} was not created by mysqlsts (no {VALUES_ANNOTATION})")
        return chart_values.upgrade(json.loads(annotations[VALUES_ANNOTATION]))

    def recorded_values(self) -> dict[str, Any] | None:
        if self.exists():
            return self.values()
        secret = self.api.get("Secret", self.names.secret) or {}
        kept = (secret.get("metadata", {}).get("annotations") or {}).get(VALUES_ANNOTATION)
        return chart_values.upgrade(json.loads(kept)) if kept else None

    def stored_passwords(self) -> dict[str, str]:
        secret = self.api.get("Secret", self.names.secret) or {}
        data = secret.get("data") or {}
        return {key: base64.b64decode(data[k]).decode() for key, k in SECRET_DATA_KEYS.items() if k in data}

    def stage_passwords(self, passwords: dict[str, str] | None) -> None:
        """As `next-<key>` in the cluster's Secret: its volume names the keys it mounts, so no pod sees them."""
        if passwords is None:
            data = (self.api.get("Secret", self.names.secret) or {}).get("data") or {}
            staged = {k: None for k in data if k.startswith(STAGED)}
        else:
            staged = {f"{STAGED}{SECRET_DATA_KEYS[k]}": base64.b64encode(v.encode()).decode()
                      for k, v in passwords.items()}
        if staged:
            self.api.patch("Secret", self.names.secret, {"data": staged})

    def staged_passwords(self) -> dict[str, str]:
        data = (self.api.get("Secret", self.names.secret) or {}).get("data") or {}
        return {key: base64.b64decode(data[STAGED + k]).decode() for key, k in SECRET_DATA_KEYS.items()
                if STAGED + k in data}

    def passwords(self) -> dict[str, str]:
        stored = self.stored_passwords()
        missing = [k for k in SECRET_DATA_KEYS if k not in stored]
        if missing:
            raise OperationFailed(f"Secret {self.names.secret} lacks {', '.join(SECRET_DATA_KEYS[k] for k in missing)}")
        own = ((self.recorded_values() or {}).get("tls") or {}).get("existingSecret")
        if own:  # the pods present certificates of the user's CA
            data = (self.api.get("Secret", own) or {}).get("data") or {}
            if "ca.crt" not in data:
                raise OperationFailed(f"tls.existingSecret: Secret {own} has no ca.crt")
            stored["tlsCA"] = base64.b64decode(data["ca.crt"]).decode()
        return stored

    @contextmanager
    def lock(self, held_by: str | None = None):
        """One mutating command per cluster at a time: a Lease renewed while its holder lives. With
        `held_by` (a Job run for a command outside the cluster that holds it), nothing is taken:
        check_lock reads the Lease and stops this process's action once `held_by` holds it no longer."""
        name, what = f"{self.name}-mysqlsts-lock", "mysqlsts command"
        if held_by is None:
            with self._lease(name, LOCK_SECONDS, what):
                yield
            return
        lease = CallersLease(self.api, name, what, self.name, held_by)
        self._held.append(lease)
        try:
            yield
        finally:
            self._held.remove(lease)

    def lock_holder(self) -> str | None:
        """Who holds the cluster lock for this process (its own Lease's holder, or its caller's)."""
        name = f"{self.name}-mysqlsts-lock"
        return next((lease.holder for lease in self._held if lease.name == name), None)

    @contextmanager
    def drill_lock(self, wait: float = 0.0):
        """One drill at a time: a Lease renewed while its holder lives. A drill takes it without waiting
        (a second drill is refused at once); `mysqlsts switchover` and `failover` by hand take it with
        `wait` (their --timeout) before the cluster lock, so they wait for a running drill, then refuse
        naming it: see docs/drills.md. The controller's automatic failover and the drill's own switchover
        fault never take it."""
        with self._lease(f"{self.name}-mysqlsts-drill", LOCK_SECONDS, "drill", wait):
            yield

    @contextmanager
    def leadership(self):
        """Exactly one active controller: a Lease renewed while it lives; yields the check its loop
        makes before every check of the cluster."""
        with self._lease(f"{self.name}-mysqlsts-controller", LEADER_SECONDS, "controller") as lease:
            yield lambda: lease.check("its next check")

    def check_lock(self, before: str) -> None:
        """Raise when a Lease this process holds, or acts for, may be someone else's now (see lease.py)."""
        for lease in list(self._held):
            lease.check(before)

    @contextmanager
    def _lease(self, name: str, seconds: int, what: str, wait: float = 0.0):
        """Hold the Lease `name`; while another live holder has it (or wins a race for it), retry for
        up to `wait` seconds, then refuse naming that holder. A holder that stopped renewing is taken over."""
        holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        deadline = time.monotonic() + wait
        waiting = False
        while True:
            try:
                lease = Lease.take(self.api, name, what, self.name, seconds, holder)
                break
            except Taken as e:
                if wait <= 0:
                    raise
                left = deadline - time.monotonic()
                if left <= 0:
                    raise OperationFailed(f"{e.message}; waited {wait:g}s for it to finish{e.detail}") from e
                if not waiting:
                    progress(f"waiting for the running {what}{e.holder} to finish (up to {wait:g}s)")
                    waiting = True
                time.sleep(min(self.poll_interval, left))
        self._held.append(lease)
        try:
            yield lease
        finally:
            self._held.remove(lease)
            lease.release()

    def ensure_controller(self, values: dict[str, Any]) -> str | None:
        """Nothing to do: the chart's controller Deployment is applied with everything else."""
        return None

    # -- apply ---------------------------------------------------------------------------

    def apply(self, values: dict[str, Any], passwords: dict[str, str], objects: list[dict[str, Any]]) -> list[str]:
        stored = {**values, "auth": {k: "" for k in values["auth"]}}
        changes = []
        for obj in objects:
            obj = json.loads(json.dumps(obj))
            if obj["kind"] == "StatefulSet":
                obj["metadata"].setdefault("annotations", {})[VALUES_ANNOTATION] = json.dumps(stored, sort_keys=True)
            before = self.api.get(obj["kind"], obj["metadata"]["name"])
            if obj["kind"] == "StatefulSet" and before is not None and _immutable_change(before, obj):
                self._orphan(before)  # its pods and claims stay; the new StatefulSet adopts them
                before = None
            after = self.api.apply(obj)
            label = f"{obj['kind']} {obj['metadata']['name']}"
            if before is None:
                changes.append(f"{label} created")
            elif before["metadata"].get("resourceVersion") != after["metadata"].get("resourceVersion"):
                changes.append(f"{label} configured")
        rendered = {(o["kind"], o["metadata"]["name"]) for o in objects}
        instance = selector_string({"app.kubernetes.io/instance": self.name,
                                    "app.kubernetes.io/managed-by": "mysqlsts"})
        for kind in PRUNABLE:
            for item in self.api.list(kind, instance).get("items") or []:
                if (kind, item["metadata"]["name"]) not in rendered:
                    self.api.delete(kind, item["metadata"]["name"])
                    changes.append(f"{kind} {item['metadata']['name']} deleted (no longer rendered)")
        return changes

    def _orphan(self, sts: dict[str, Any]) -> None:
        """Delete a StatefulSet and leave its pods running (a field that cannot change, changed)."""
        name = sts["metadata"]["name"]
        progress(f"StatefulSet {name}: re-creating it for a field that cannot change in place "
                 "(its pods keep running and are adopted)")
        self.api.delete("StatefulSet", name, propagation="Orphan")
        try:
            self.api.wait("StatefulSet", lambda objs: name not in objs, timeout=120,
                          field_selector=f"metadata.name={name}")
        except TimeoutError:
            raise OperationFailed(f"StatefulSet {name} was not deleted within 120s") from None

    # -- pods ----------------------------------------------------------------------------

    def pods(self) -> list[PodInfo]:
        sts = self._sts() or {}
        replicas = sts.get("spec", {}).get("replicas", 0)
        revision = (sts.get("status") or {}).get("updateRevision")
        recorded = (sts.get("metadata", {}).get("annotations") or {}).get(VALUES_ANNOTATION)
        domain = json.loads(recorded)["clusterDomain"] if recorded else "cluster.local"
        pods = {p["metadata"]["name"]: p for p in self.api.list("Pod", self.pod_selector).get("items") or []}
        claims = {c["metadata"]["name"] for c in self.api.list("PersistentVolumeClaim", self.pod_selector)
                  .get("items") or []}
        names = set(self.names.pods(replicas)) | set(pods)
        out = []
        for name in sorted(names, key=lambda n: int(n.rsplit("-", 1)[1])):
            pod = pods.get(name)
            status = (pod or {}).get("status") or {}
            labels = (pod or {}).get("metadata", {}).get("labels") or {}
            statuses = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
            out.append(PodInfo(
                name=name, ordinal=int(name.rsplit("-", 1)[1]), fqdn=self.fqdn(name, domain),
                address=status.get("podIP"),
                # a wanted pod the StatefulSet controller has not created yet is on its way
                running=pod is None or status.get("phase") not in ("Succeeded", "Failed"),
                ready=any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []),
                phase=pod_phase(pod), restarts=sum(s.get("restartCount", 0) for s in statuses),
                has_data=f"data-{name}" in claims, quarantined=labels.get(ROLE_LABEL) == "quarantined",
                started=any(s.get("name") == "mysql" and s.get("started") for s in status.get("containerStatuses")
                            or []),
                outdated=pod is not None and revision is not None
                and labels.get("controller-revision-hash") != revision,
                role_label=labels.get(ROLE_LABEL, "") if pod is not None else None))
        return out

    def fqdn(self, pod: str, domain: str) -> str:
        return f"{pod}.{self.names.headless}.{self.namespace}.svc.{domain}"

    def start_pod(self, name: str) -> None:
        """Nothing to do: the StatefulSet controller creates its pods in ordinal order."""

    def stop_pod(self, name: str) -> None:
        """Delete the pod and wait until it is gone (the StatefulSet controller may recreate it)."""
        pod = self.api.get("Pod", name)
        if pod is None:
            return
        uid = pod["metadata"]["uid"]
        self.api.delete("Pod", name)
        grace = float((pod.get("spec") or {}).get("terminationGracePeriodSeconds") or 30)
        try:
            self.api.wait("Pod", lambda objs: name not in objs or objs[name]["metadata"]["uid"] != uid,
                          timeout=grace + 60, field_selector=f"metadata.name={name}")
        except TimeoutError:
            raise OperationFailed(f"{name} did not terminate within {grace + 60:.0f}s") from None

    def delete_pod_data(self, name: str) -> None:
        self.api.delete("PersistentVolumeClaim", f"data-{name}")

    def discard_data(self, name: str) -> None:
        """Claim first, then pod: a claim in use is only marked for deletion and goes with the pod,
        and the StatefulSet waits for it to be gone before it re-creates both, empty. Deleting the
        pod first lets the StatefulSet re-create it on the old claim."""
        self.api.delete("PersistentVolumeClaim", f"data-{name}")
        self.stop_pod(name)

    def kill_server(self, name: str) -> None:
        """SIGKILL the server inside its pod; the kubelet restarts it there, fenced. Never a force delete
        of the pod: on a partitioned node the old server would keep running while the StatefulSet
        starts another on the same volume. A node that cannot be reached cannot be signalled either:
        then the stopped receivers and semi-sync without fallback keep its writes unacknowledged."""
        self.signal_server(name, "KILL")

    def signal_server(self, name: str, signal: str) -> None:
        """Run signal-server.sh in the pod's server container (the pod shares one process namespace,
        so the server is not PID 1 there and SIGKILL and SIGSTOP reach it)."""
        from kubernetes import client
        from kubernetes.stream import stream

        # Its own client: stream() swaps the request method of the client it is given while it runs.
        core = client.CoreV1Api(client.ApiClient(self.api.client.configuration))
        try:
            ws = stream(core.connect_get_namespaced_pod_exec, name, self.namespace, container="mysql",
                        command=[*SIGNAL_SERVER, signal], stdin=False, stdout=True, stderr=True, tty=False,
                        _preload_content=False, _request_timeout=EXEC_SECONDS)
            ws.run_forever(timeout=EXEC_SECONDS)
            said = (ws.read_stdout() + ws.read_stderr()).strip()
            code = ws.returncode
            ws.close()
        except Exception as e:  # the exec channel: API errors, a websocket refused, a node gone
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            if "unable to upgrade connection:" in reason:  # the kubelet's answer, wrapped by the client
                reason = reason.split("unable to upgrade connection:", 1)[1].strip(" '\"")
            raise OperationFailed(f"{name}: could not send SIG{signal} to its server: {reason}") from None
        if code != 0:
            raise OperationFailed(f"{name}: could not send SIG{signal} to its server: {said or f'exit {code}'}")

    @staticmethod
    def fault_unavailable(fault: str) -> str | None:
        return None

    @staticmethod
    def client_side_address() -> str | None:
        """A deny-all NetworkPolicy lets no client in: nothing stays on an isolated pod's side."""
        return None

    def inject(self, name: str, fault: str):
        """Break the pod; returns how to undo it. kill and hang signal the server in its pod. isolate
        labels the pod out of the chart's NetworkPolicy and denies all its traffic with one of its own,
        and proves it took: only a network plugin that enforces NetworkPolicies honours one."""
        if fault == "kill":
            self.kill_server(name)
            return lambda: None
        if fault == "hang":
            self.signal_server(name, "STOP")
            return lambda: self.signal_server(name, "CONT")
        address = next((p.address for p in self.pods() if p.name == name), None)
        policy = f"{name}-mysqlsts-isolate"
        self.api.patch("Pod", name, {"metadata": {"labels": {ISOLATED_LABEL: "true"}}})
        self.api.create({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                         "metadata": {"name": policy, "labels": selector({"name": self.name})},
                         "spec": {"podSelector": {"matchLabels": {"statefulset.kubernetes.io/pod-name": name}},
                                  "policyTypes": ["Ingress", "Egress"]}})

        def undo() -> None:
            self.api.delete("NetworkPolicy", policy)
            self.api.patch("Pod", name, {"metadata": {"labels": {ISOLATED_LABEL: None}}})

        if address and not unreachable(address, MYSQL_PORT, within=ISOLATE_PROOF_SECONDS):
            undo()
            raise OperationFailed(f"--fault isolate: {name} still accepts connections on {address}:{MYSQL_PORT} "
                                  f"{ISOLATE_PROOF_SECONDS:g}s after NetworkPolicy {policy} denied all its traffic: "
                                  "this cluster's network plugin does not enforce NetworkPolicies, so isolate "
                                  "cannot be injected here; use kill or hang")
        return undo

    def record_drill(self, report: dict[str, Any], metrics: str) -> str:
        """A summary ConfigMap next to the history table: the last runs, the last report, its metrics."""
        name = self.names.drill_history
        current = self.api.get("ConfigMap", name) or {}
        runs = json.loads((current.get("data") or {}).get("runs.json", "[]"))
        keys = ("started_at", "run_id", "fault", "rto_seconds", "lost_writes", "passed")
        runs = [*runs, {k: report[k] for k in keys}][-50:]
        self.api.apply({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name, "labels": selector({"name": self.name})},
                        "data": {"runs.json": json.dumps(runs, indent=1), "last.json": json.dumps(report, indent=1),
                                 "metrics.prom": metrics}})
        return f"ConfigMap {name} (keys runs.json, last.json, metrics.prom)"

    def quarantine(self, name: str, reason: str) -> None:
        self.api.patch("Pod", name, {"metadata": {"labels": {ROLE_LABEL: "quarantined"},
                                                  "annotations": {"mysqlsts.io/quarantined": reason[:1000]}}})

    # -- primary -------------------------------------------------------------------------

    def set_primary(self, name: str | None) -> None:
        """The role labels select the primary Service's endpoint; a ConfigMap records the primary, so
        the account needs no write access to the StatefulSet (whose pod template it could rewrite)."""
        for pod in self.api.list("Pod", self.pod_selector).get("items") or []:
            pod_name = pod["metadata"]["name"]
            current = (pod["metadata"].get("labels") or {}).get(ROLE_LABEL)
            wanted = published_role(pod_name, current == "quarantined", name)
            if current != wanted:
                self.api.patch("Pod", pod_name, {"metadata": {"labels": {ROLE_LABEL: wanted}}})
        if name is not None and self.recorded_primary() != name:
            self.api.apply({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": self.names.record, "labels": selector({"name": self.name})},
                            "data": {"primary": name}})

    def recorded_primary(self) -> str | None:
        record = self.api.get("ConfigMap", self.names.record)
        if record is not None:
            return (record.get("data") or {}).get("primary")
        # Recorded by mysqlsts 0.1 on the StatefulSet: read until the next change moves it.
        sts = self._sts() or {}
        return (sts.get("metadata", {}).get("annotations") or {}).get(PRIMARY_ANNOTATION)

    def primary_fqdn(self) -> str:
        return f"{self.names.primary}.{self.namespace}.svc.{self.values()['clusterDomain']}"

    def enter_network(self) -> None:
        if not self.inside:
            raise OperationFailed("the pods' per-pod DNS names resolve only inside the cluster; "
                                  "this step runs in an in-cluster Job")

    # -- in-cluster commands ---------------------------------------------------------------

    def run_in_cluster(self, values: dict[str, Any], args: list[str], timeout: float) -> dict[str, Any]:
        """Run `mysqlsts ARGS -o json` in a Job from the mysqlsts image and return its JSON report."""
        job_name = f"{self.name}-{args[0]}-{uuid.uuid4().hex[:6]}"
        argv = [*args, "--target", "kubernetes", "--name", self.name, "-n", self.namespace, "-o", "json"]
        self.api.create(render_job(values, job_name, argv, max(1, int(timeout))))
        progress(f"running `mysqlsts {' '.join(args)}` in the cluster as Job {job_name}")
        try:
            try:
                jobs = self.api.wait("Job", lambda objs: _finished(objs.get(job_name)),
                                     timeout=timeout + self.job_margin, field_selector=f"metadata.name={job_name}")
            except TimeoutError:
                raise OperationFailed([f"Job {job_name} did not finish within {timeout + self.job_margin:.0f}s",
                                       *self._job_diagnosis(job_name)]) from None
            pod = self._job_pod(job_name)
            log = self.api.log(pod["metadata"]["name"]) if pod else ""
            report = last_json(log)
            if report is None:
                # The command said why it stopped (bad input, a refused fault): that, as if run here.
                said = [line.removeprefix(f"mysqlsts {args[0]}: ") for line in log.splitlines()
                        if line.startswith(f"mysqlsts {args[0]}: ")]
                if said:
                    raise (BadInput if _exit_code(pod) == 2 else OperationFailed)(said)
                state = "failed" if _finished(jobs[job_name], "Failed") else "finished"
                raise OperationFailed([f"Job {job_name} {state} without a report", *self._job_diagnosis(job_name)])
            for line in log.splitlines():
                if line.startswith("["):
                    progress(f"(in cluster) {line}")
            return report
        finally:
            try:
                self.api.delete("Job", job_name)
            except OperationFailed as e:  # the TTL removes it later; never hide the outcome for this
                progress(f"warning: {e.problems[0]}")

    def _job_pod(self, job_name: str) -> dict[str, Any] | None:
        """The Job's last pod (a retried Job has several): by creation time, not name order."""
        pods = self.api.list("Pod", f"job-name={job_name}").get("items") or []
        return max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "", default=None)

    def _job_diagnosis(self, job_name: str) -> list[str]:
        lines = []
        for pod in self.api.list("Pod", f"job-name={job_name}").get("items") or []:
            lines += self.diagnose(pod["metadata"]["name"])
        return lines or [f"Job {job_name} created no pod (quota, admission or image policy?)"]

    # -- diagnosis and teardown ------------------------------------------------------------

    def diagnose(self, name: str) -> list[str]:
        pod = self.api.get("Pod", name)
        if pod is None:
            return [f"{name}: no such pod (the StatefulSet controller has not created it)",
                    *self._events(f"involvedObject.name={self.names.sts}")]
        status = pod.get("status") or {}
        lines = [f"{name}: phase {pod_phase(pod)}, node {pod['spec'].get('nodeName') or '(unscheduled)'}"]
        for c in status.get("conditions") or []:
            if c.get("status") != "True":
                lines.append(f"{name}: condition {c['type']}={c['status']}"
                             + (f" ({c.get('reason')}: {c.get('message')})" if c.get("reason") else ""))
        lines += self._events(f"involvedObject.name={name}")
        failing = failing_container(pod)
        if failing:
            lines.append(f"--- last lines of {name}/{failing}:")
            lines += [f"    {line}" for line in self.api.log(name, failing, tail=20).splitlines()]
        return lines

    def _events(self, field_selector: str) -> list[str]:
        events = self.api.list("Event", field_selector=field_selector).get("items") or []
        events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        return [f"event {e.get('type')} {e.get('reason')}: {e.get('message')}" for e in events[-8:]]

    def destroy(self, delete_data: bool) -> None:
        values = self.recorded_values()  # of the cluster, or of the data an earlier destroy kept
        if values is None:
            raise BadInput(f"--name: no cluster {self.name!r} in namespace {self.namespace!r}")
        from mysqlsts.chart.render import render, tools_selector

        objects = list(reversed(render(values, {k: "-" for k in SECRET_DATA_KEYS})))
        # Kept data keeps what it needs: its passwords (the Secret, with the values it was made with) and
        # the primary it last had; a later bootstrap starts from them.
        kept = set() if delete_data else {("Secret", self.names.secret), ("ConfigMap", self.names.record)}
        if kept:
            self.api.patch("Secret", self.names.secret,
                           {"metadata": {"annotations": {VALUES_ANNOTATION: json.dumps(values, sort_keys=True)}}})
        objects = [o for o in objects if (o["kind"], o["metadata"]["name"]) not in kept]
        # The controller goes first and is gone before the pods go: left running, it acts on pods being
        # deleted, and a failover it is killed in the middle of leaves its Lease behind. Then the pods are
        # gone before the Leases are deleted, so nothing takes one again.
        controller = selector_string({**tools_selector(values), "app.kubernetes.io/component": "controller"})
        first = [o for o in objects if o["kind"] == "Deployment"]
        grace = float(values["pod"]["terminationGracePeriodSeconds"]) + 60
        for group, pods in ((first, controller), ([o for o in objects if o not in first], self.pod_selector)):
            for obj in group:
                if self.api.delete(obj["kind"], obj["metadata"]["name"], propagation="Foreground"):
                    progress(f"{obj['kind']} {obj['metadata']['name']} deleted")
            try:
                self.api.wait("Pod", lambda objs: not objs, timeout=grace, selector=pods)
            except TimeoutError:
                raise OperationFailed(f"pods {pods} still running {grace:g}s after their owners were deleted; "
                                      "run destroy again once they are gone") from None
        # What mysqlsts creates besides the chart, labelled with the release: the drill history
        # ConfigMap, the lock and leader Leases, an isolate drill's NetworkPolicy, in-cluster Jobs.
        for kind in LEFTOVERS:
            for item in self.api.list(kind, self.pod_selector).get("items") or []:
                if (kind, item["metadata"]["name"]) not in kept and self.api.delete(kind, item["metadata"]["name"]):
                    progress(f"{kind} {item['metadata']['name']} deleted")
        if delete_data:
            for claim in self.api.list("PersistentVolumeClaim", self.pod_selector).get("items") or []:
                self.api.delete("PersistentVolumeClaim", claim["metadata"]["name"])
                progress(f"PersistentVolumeClaim {claim['metadata']['name']} deleted")


# StatefulSet spec fields the API server refuses to change (only replicas, template, updateStrategy,
# persistentVolumeClaimRetentionPolicy, minReadySeconds and ordinals may).
IMMUTABLE_STS_FIELDS = ("podManagementPolicy", "serviceName", "selector")


def _immutable_change(before: dict[str, Any], after: dict[str, Any]) -> bool:
    old, new = before.get("spec") or {}, after.get("spec") or {}
    return any(f in new and old.get(f, "OrderedReady" if f == "podManagementPolicy" else None) != new[f]
               for f in IMMUTABLE_STS_FIELDS)


def pod_phase(pod: dict[str, Any] | None) -> str:
    """What kubectl shows in STATUS, near enough: init progress, waiting reasons, the phase."""
    if pod is None:
        return "Pending (not created yet)"
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status") or {}
    for c in status.get("initContainerStatuses") or []:
        state = c.get("state") or {}
        if "terminated" in state and state["terminated"].get("exitCode") == 0:
            continue
        if "terminated" in state:
            return f"Init:Error ({c['name']} exited {state['terminated'].get('exitCode')})"
        reason = (state.get("waiting") or {}).get("reason")
        if reason and reason != "PodInitializing":
            return f"Init:{reason} ({c['name']})"
        return f"Init:{c['name']}"
    for c in status.get("containerStatuses") or []:
        reason = ((c.get("state") or {}).get("waiting") or {}).get("reason")
        if reason and reason != "ContainerCreating":
            return f"{reason} ({c['name']})"
    return status.get("phase") or "Pending"


def failing_container(pod: dict[str, Any]) -> str | None:
    """The init container that is not done yet, else a container that is not running."""
    status = pod.get("status") or {}
    for c in status.get("initContainerStatuses") or []:
        if (c.get("state") or {}).get("terminated", {}).get("exitCode") != 0:
            return c["name"]
    for c in status.get("containerStatuses") or []:
        if not c.get("ready"):
            return c["name"]
    return None


def last_json(log: str) -> dict[str, Any] | None:
    """The last JSON document in a log whose other lines are progress text."""
    text = "\n" + log
    start = text.rfind("\n{")
    while start != -1:
        try:
            doc, _ = json.JSONDecoder().raw_decode(text[start + 1:])
            if isinstance(doc, dict):
                return doc
        except ValueError:
            pass
        start = text.rfind("\n{", 0, start)
    return None


def _exit_code(pod: dict[str, Any] | None) -> int | None:
    for c in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        terminated = (c.get("state") or {}).get("terminated")
        if terminated:
            return terminated.get("exitCode")
    return None


def _finished(job: dict[str, Any] | None, *how: str) -> bool:
    status = (job or {}).get("status") or {}
    return any(c.get("type") in (how or ("Complete", "Failed")) and c.get("status") == "True"
               for c in status.get("conditions") or [])


__all__ = ["KINDS", "KubernetesPlatform", "in_cluster", "last_json", "pod_phase"]
