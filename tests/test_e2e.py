"""Integration scenarios written once, run against every target through the CLI
(`python -m mysqlsts ... --target ...`): `local` always (real servers on this
machine), `kind` when asked for with MYSQLSTS_KIND=1 (scripts/kind-e2e.sh does
that on a machine with Docker).

One cluster per target (module-scoped fixture, bootstrapped once), then the
scenarios in file order, each its own test: bootstrap and per-pod DNS, bootstrap
again, restarts, scale 3 -> 5 -> 3, switchover, the controller failing over when
the primary's pod is deleted and when its server is killed, `drill --fault kill`
and `--fault isolate`, the scheduled drill, and `destroy --delete-data` (last).

What the platform does by itself (the kubelet restarting a killed container, the
StatefulSet controller re-creating a deleted pod) and the faults the suite
injects are per target (`LocalTarget`, `KindTarget`); everything else goes
through the CLI and is asserted the same way on both.

Faults, per target:

- pod deleted: kind, an ordinary delete of the Pod (grace period: the server
  shuts down cleanly) and the StatefulSet re-creates it; local, SIGTERM to the
  pod's supervisor (the local kubelet: it stops the containers like a deleted
  pod's), and once the controller has failed over the suite plays the
  StatefulSet controller and starts the pod again (the local runtime's own
  `start_pod`, without a mysqlsts lock, as the StatefulSet controller takes none).
- server killed: local, SIGKILL of the server process (its supervisor restarts
  the container); kind, SIGKILL of the server container's process from its node
  (`docker exec NODE ctr tasks kill`): the server is PID 1 of its container, which
  ignores SIGKILL from inside, and deleting the pod would be the other scenario.

The independent writer ("witness"), which must reach the primary through its
Service/DNS name: locally `localcluster.Writer` (shared with test_failover.py
and test_drills.py), in the test process, which joins the cluster's DNS like a
pod; on kind the test process is outside the cluster, so the witness is a Pod
created with the official client from the cluster's own tools image
(`images.tools`, as applied) running `WITNESS_SCRIPT`: it writes through
`e2e-primary.<ns>.svc.<domain>` as root (a client the fence holds for) for a fixed
time, prints a progress line every second (acknowledged writes per server that
acknowledged them), then looks every acknowledged id up through the primary name
and every pod's own name (waiting for each to catch up) and prints one final
JSON report. The drill's own writer was not used for this: the point is a
witness that does not share mysqlsts' code.

The scheduled drill: on kind, `drill schedule --cron '* * * * *'` makes the
CronJob, whose first Job the suite waits for; the local target has no scheduler
and prints a cron entry instead (nothing installed), so the suite plays cron and
runs that entry's command once, as printed. Either way the run must then be in
`drill history`.

On kind, after every test, the namespace's events must not show an image pull
(`Pulling`, `ErrImagePull`, `ImagePullBackOff`): every image has to be on the
nodes already (MYSQLSTS_KIND_SETS can set `images.pullPolicy=Never`). After
`destroy --delete-data`, no object labelled with the release
(`app.kubernetes.io/instance=e2e`, which the chart puts on everything it and
mysqlsts create) may remain.

Environment (kind): MYSQLSTS_KIND=1, MYSQLSTS_FLAVOR (default mysql),
MYSQLSTS_KIND_CONTEXT (default kind-mysqlsts), KUBECONFIG, MYSQLSTS_IMAGE
(images.tools, default mysqlsts/mysqlsts:e2e), MYSQLSTS_KIND_SETS (extra `--set`
pairs, whitespace separated, applied last), KIND_EXPERIMENTAL_PROVIDER (the node
runtime's CLI for the server kill, default docker).

No assertion here is a timing: thresholds that are timings (the drills'
maxRTOSeconds) are set out of the way, and waits are generous deadlines.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from abc import ABC, abstractmethod
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pymysql
import pytest
from localcluster import LocalCluster, Writer, flavors

from mysqlsts.platform.kubernetes.platform import last_json

KIND_SKIP = "kind not requested: set MYSQLSTS_KIND=1 with a kind cluster up (scripts/kind-e2e.sh does both)"
NAME = "e2e"
RELEASE_LABEL = f"app.kubernetes.io/instance={NAME}"
IMAGE_PULL_REASONS = ("Pulling", "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull")  # the last: not on the node
# Values for every target: correctness is asserted, timings are not (a loaded 2-core machine).
COMMON_SETS = ["--set", "controller.blockPeriodSeconds=0", "--set", "controller.autoReclone=true",
               "--set", "drills.maxRTOSeconds=120"]


class Target(ABC):
    """How every command finds the cluster, and what the platform does by itself, per target."""

    name: str
    namespace: str
    drill_duration: int  # seconds of writing in a drill: long enough for the old primary to rejoin

    def __init__(self, options: list[str], sets: list[str], env: dict[str, str] | None = None):
        self.options = options  # how every command finds the cluster
        self.sets = sets  # bootstrap values for this target
        self.env = env or {}
        self.bootstrap_result: subprocess.CompletedProcess | None = None

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mysqlsts", *args, *self.options], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, **self.env})

    def ok(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        result = self.run(*args, timeout=timeout)
        assert result.returncode == 0, (f"{' '.join(args)}: exit {result.returncode}\nstdout:\n"
                                        f"{result.stdout[-3000:]}\nstderr:\n{result.stderr[-4000:]}")
        return result

    def fqdn(self, pod: str) -> str:
        return f"{pod}.{NAME}.{self.namespace}.svc.cluster.local"

    def primary_fqdn(self) -> str:
        return f"{NAME}-primary.{self.namespace}.svc.cluster.local"

    # -- per target: what the platform does by itself, and the suite's own faults and checks --------

    @abstractmethod
    def pod_identity(self, pod: str) -> str:
        """Changes when the pod is re-created (local: its address; kind: its uid)."""

    @abstractmethod
    def data_identity(self, pod: str) -> str:
        """Changes when the pod's data is thrown away (local: its volume directory; kind: its claim's uid)."""

    @abstractmethod
    def delete_pod(self, pod: str) -> None: ...

    @abstractmethod
    def started_at(self, pod: str) -> float:
        """When the pod (not a container of it) last started, in seconds since the epoch."""

    @abstractmethod
    def wait_recreated(self, before: dict[str, str]) -> None:
        """After delete_pod of all of them: wait until the StatefulSet re-created each (kind), or
        nothing (local: bootstrap starts them, as the StatefulSet would)."""

    @abstractmethod
    def recreate_pod(self, pod: str) -> None:
        """What the StatefulSet controller does by itself after delete_pod."""

    @abstractmethod
    def kill_server(self, pod: str) -> None: ...

    @abstractmethod
    def wait_controller_leading(self, timeout: float = 300) -> None: ...

    @abstractmethod
    def controller_decisions(self) -> list[dict]:
        """The controller's JSON log lines."""

    @abstractmethod
    def witness(self, pods: list[str]):
        """The independent writer, a context manager: resumed_on_other_than(), finish()."""

    @abstractmethod
    def fire_scheduled_drill(self, printed: str) -> None:
        """Let the schedule `drill schedule` set up (and printed) fire once, and wait for that run."""

    @abstractmethod
    def wait_drill_schedule_gone(self) -> None: ...

    @abstractmethod
    def leftovers(self, timeout: float = 300) -> list[str]:
        """What remains of the release after destroy --delete-data."""

    @abstractmethod
    def after_test(self) -> None: ...

    @abstractmethod
    def teardown(self) -> None:
        """Destroy the cluster with its data, whatever state a failed test left it in."""


# -- local ---------------------------------------------------------------------------------------


class LocalTarget(Target):
    name = "local"
    namespace = "default"
    drill_duration = 15

    def __init__(self, state: Path, flavor: str):
        super().__init__(["--target", "local", "--state-dir", str(state), "--name", NAME],
                         ["--set", f"flavor={flavor}", *COMMON_SETS])
        self.state = state
        self.flavor = flavor
        self.cluster = LocalCluster(state, NAME, flavor)  # the real-server tests' helper: SQL, writer, teardown

    def _status(self) -> dict[str, dict]:
        return {p["pod"]: p for p in json.loads(self.ok("status", "-o", "json").stdout)["pods"]}

    def pod_identity(self, pod: str) -> str:
        return str(self._status()[pod]["address"])  # a new address for every start, like a pod IP

    def data_identity(self, pod: str) -> str:
        st = self.cluster.platform.layout.pod(pod).pv.stat()
        return f"{st.st_ino}-{st.st_ctime_ns}"

    def _supervisor(self, pod: str) -> int:
        from mysqlsts.platform.local import procs

        pid = procs.read_pid(self.cluster.platform.layout.pod(pod).pid_file)
        assert pid and procs.group_alive(pid), f"{pod} is not running"
        return pid

    def delete_pod(self, pod: str) -> None:
        """SIGTERM to the pod's supervisor: it stops the containers as the kubelet stops a deleted pod's."""
        from mysqlsts.platform.local import procs

        pid = self._supervisor(pod)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 180
        while procs.group_alive(pid):
            assert time.monotonic() < deadline, f"{pod} did not stop within 180s of SIGTERM"
            time.sleep(0.2)

    def recreate_pod(self, pod: str) -> None:
        self.cluster.platform.start_pod(pod)

    def started_at(self, pod: str) -> float:
        return self.cluster.platform.layout.pod(pod).pid_file.stat().st_mtime

    def wait_recreated(self, before: dict[str, str]) -> None:
        pass

    def kill_server(self, pod: str) -> None:
        os.kill(self.cluster.server_pid(pod), signal.SIGKILL)

    def _controller_log(self) -> list[dict]:
        log = self.state / NAME / "controller.log"
        lines = log.read_text().splitlines() if log.is_file() else []
        return [json.loads(line) for line in lines if line.startswith("{")]

    def wait_controller_leading(self, timeout: float = 300) -> None:
        from mysqlsts.platform.local import procs

        deadline = time.monotonic() + timeout
        while True:
            pid = procs.live_pid(self.state / NAME / "controller.pid", "mysqlsts controller")
            if pid and any(d["event"] == "leading" for d in self._controller_log()):
                return
            assert time.monotonic() < deadline, "the controller did not start leading"
            time.sleep(0.5)

    def controller_decisions(self) -> list[dict]:
        return self._controller_log()

    def witness(self, pods: list[str]) -> LocalWitness:
        return LocalWitness(self, pods)

    def fire_scheduled_drill(self, printed: str) -> None:
        """No scheduler on the local target: `drill schedule` prints a cron entry. Play cron: run its
        command once, exactly as printed (redirection to drills.log included)."""
        entry = printed.strip().splitlines()[-1]
        fields = entry.split(None, 6)
        assert fields[:6] == ["*", "*", "*", "*", "*", "root"], entry  # every minute, cron.d format
        log = self.state / NAME / "drills.log"
        before = log.read_text() if log.is_file() else ""
        subprocess.run(["sh", "-c", fields[6]], timeout=self.drill_duration + 600, env=dict(os.environ))
        report = last_json(log.read_text()[len(before):])
        assert report is not None and report["fault"] == "kill", "the cron command appended no drill report"

    def wait_drill_schedule_gone(self) -> None:
        """Nothing was installed, so nothing is left to fire."""

    def leftovers(self, timeout: float = 300) -> list[str]:
        layout = self.cluster.platform.layout
        left = [str(p) for p in (layout.root, layout.run_root) if p.exists()]
        markers = (str(layout.root), str(layout.run_root))
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and proc.name != str(os.getpid()):
                try:
                    cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if any(m in cmd for m in markers):
                    left.append(f"process {proc.name}: {cmd[:200]}")
        return left

    def after_test(self) -> None:
        pass

    def teardown(self) -> None:
        self.cluster.teardown()  # destroy --delete-data, then stop anything a failed test left running


class LocalWitness:
    """localcluster.Writer through the primary name, in this process (which joins the cluster's DNS)."""

    def __init__(self, target: LocalTarget, pods: list[str]):
        self.target, self.cluster, self.pods = target, target.cluster, pods
        self.writer: Writer | None = None

    def __enter__(self) -> LocalWitness:
        self.writer = Writer(self.cluster, table="app.e2e_witness")
        self.writer.start()
        deadline = time.monotonic() + 60
        while len(self.writer.acked) < 10:
            assert time.monotonic() < deadline, "the witness got no writes acknowledged"
            time.sleep(0.1)
        return self

    def resumed_on_other_than(self, old: str, timeout: float = 300) -> str:
        """The primary name reaches a writable server other than `old`, and writes resumed through it."""
        deadline = time.monotonic() + timeout
        new, seen_at = None, 0.0
        while time.monotonic() < deadline:
            if new is None:
                try:
                    with self.cluster.connect(f"{NAME}-primary") as conn, conn.cursor() as cur:
                        cur.execute("SELECT @@GLOBAL.report_host, @@GLOBAL.read_only")
                        host, ro = cur.fetchone()
                    host = (host or "").split(".")[0]
                    if not ro and host != old:
                        new, seen_at = host, time.monotonic()
                except pymysql.MySQLError:
                    pass
            elif self.writer.acked_since(seen_at) >= 5:  # acknowledged after the new primary took the name
                return new
            time.sleep(0.2)
        raise AssertionError(f"writes did not resume on a primary other than {old} within {timeout}s "
                             f"(primary name reaches {new or 'still the old primary or nothing'})")

    def finish(self, timeout: float = 300) -> dict:
        acked = self.writer.finish()
        times = [at for _, at in self.writer.acked]
        max_gap = max((b - a for a, b in pairwise(times)), default=0.0)
        missing: dict[str, object] = {}
        want = set(acked)
        deadline = time.monotonic() + timeout
        for host in [self.target.primary_fqdn()] + [self.target.fqdn(p) for p in self.pods]:
            while True:
                try:
                    with self.cluster.connect(host) as conn, conn.cursor() as cur:
                        cur.execute("SELECT id FROM app.e2e_witness")
                        gone = sorted(want - {r[0] for r in cur.fetchall()})
                except pymysql.MySQLError as e:
                    gone = f"unreachable: {e}"
                if gone == [] or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            missing[host] = gone if isinstance(gone, str) else gone[:20]
        return {"acked": len(acked), "missing": {h: m for h, m in missing.items() if m},
                "max_gap_seconds": round(max_gap, 3)}

    def __exit__(self, *exc) -> bool:
        if self.writer is not None and self.writer.is_alive():
            self.writer.finish()
        return False


# -- kind ----------------------------------------------------------------------------------------

WITNESS_SCRIPT = r"""
import json, os, sys, time
import pymysql

primary, nodes, duration, settle = sys.argv[1], sys.argv[2].split(","), float(sys.argv[3]), float(sys.argv[4])
password = os.environ["ROOT_PASSWORD"]


def say(**doc):
    print(json.dumps(doc), flush=True)


def connect(host, timeout=1.0):
    return pymysql.connect(host=host, port=3306, user="root", password=password, autocommit=True,
                           connect_timeout=timeout, read_timeout=5, write_timeout=5)


deadline = time.monotonic() + 300
while True:
    try:
        with connect(primary, 3) as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE IF NOT EXISTS e2e_witness")
            cur.execute("CREATE TABLE IF NOT EXISTS e2e_witness.ledger (id BIGINT PRIMARY KEY, host VARCHAR(255))")
            cur.execute("SELECT COALESCE(MAX(id), 0) FROM e2e_witness.ledger")
            next_id = cur.fetchone()[0] + 1
        break
    except pymysql.MySQLError as e:
        if time.monotonic() > deadline:
            say(final=True, error=f"cannot create the ledger through {primary}: {e}")
            sys.exit(1)
        time.sleep(1)

acked, hosts, errors, conn, host, last_ack, max_gap = [], {}, 0, None, None, 0.0, 0.0
end, last = time.monotonic() + duration, 0.0
while time.monotonic() < end:
    try:
        if conn is None:
            conn = connect(primary)
            with conn.cursor() as cur:
                cur.execute("SELECT @@GLOBAL.report_host")
                host = (cur.fetchone()[0] or "?").split(".")[0]
        i, next_id = next_id, next_id + 1
        with conn.cursor() as cur:
            cur.execute("INSERT INTO e2e_witness.ledger (id, host) VALUES (%s, %s)", (i, host))
        acked.append(i)
        now = time.monotonic()
        if last_ack:
            max_gap = max(max_gap, now - last_ack)
        last_ack = now
        hosts[host] = hosts.get(host, 0) + 1
    except pymysql.MySQLError:
        errors += 1
        try:
            if conn is not None:
                conn.close()
        except Exception:
            pass
        conn = None
        time.sleep(0.05)
    if time.monotonic() - last >= 1:
        say(acked=len(acked), errors=errors, hosts=hosts)
        last = time.monotonic()
    time.sleep(0.01)
if conn is not None:
    conn.close()

say(acked=len(acked), errors=errors, hosts=hosts, phase="verifying")
want, missing = set(acked), {}
deadline = time.monotonic() + settle
for node in [primary] + nodes:
    while True:
        try:
            with connect(node, 2) as c, c.cursor() as cur:
                cur.execute("SELECT id FROM e2e_witness.ledger")
                gone = sorted(want - {r[0] for r in cur.fetchall()})
        except pymysql.MySQLError as e:
            gone = f"unreachable: {e}"
        if gone == [] or time.monotonic() > deadline:
            break
        time.sleep(1)
    if gone:
        missing[node] = gone if isinstance(gone, str) else gone[:20]
say(final=True, acked=len(acked), errors=errors, hosts=hosts, missing=missing, max_gap_seconds=round(max_gap, 3))
"""


class KindTarget(Target):
    name = "kind"
    drill_duration = 60

    def __init__(self):
        from kubernetes import client, config

        self.flavor = os.environ.get("MYSQLSTS_FLAVOR", "mysql")
        self.namespace = f"mysqlsts-e2e-{self.flavor}"
        self.context = os.environ.get("MYSQLSTS_KIND_CONTEXT", "kind-mysqlsts")
        image = os.environ.get("MYSQLSTS_IMAGE", "mysqlsts/mysqlsts:e2e")
        extra = [arg for pair in os.environ.get("MYSQLSTS_KIND_SETS", "").split() for arg in ("--set", pair)]
        super().__init__(["--target", "kubernetes", "--context", self.context, "-n", self.namespace, "--name", NAME],
                         ["--set", f"flavor={self.flavor}", "--set", f"images.tools={image}",
                          "--set", "images.pullPolicy=IfNotPresent", *COMMON_SETS, *extra])
        # KUBECONFIG (one file or several) as the CLI reads it; the client also reads it by itself.
        self.api_client = config.new_client_from_config(config_file=os.environ.get("KUBECONFIG") or None,
                                                        context=self.context)
        self.core = client.CoreV1Api(self.api_client)
        self.apps = client.AppsV1Api(self.api_client)
        self.batch = client.BatchV1Api(self.api_client)
        self.started = datetime.now(UTC) - timedelta(seconds=5)
        self.reported_events: set[str] = set()
        try:
            self.core.create_namespace({"metadata": {"name": self.namespace}})
        except client.ApiException as e:
            if e.status != 409:
                raise

    def _pod(self, pod: str):
        return self.core.read_namespaced_pod(pod, self.namespace)

    def pod_identity(self, pod: str) -> str:
        return self._pod(pod).metadata.uid

    def data_identity(self, pod: str) -> str:
        return self.core.read_namespaced_persistent_volume_claim(f"data-{pod}", self.namespace).metadata.uid

    def delete_pod(self, pod: str) -> None:
        self.core.delete_namespaced_pod(pod, self.namespace)  # the pod's own grace period: a clean shutdown

    def recreate_pod(self, pod: str) -> None:
        """The StatefulSet controller re-creates a deleted pod by itself."""

    def started_at(self, pod: str) -> float:
        return self._pod(pod).metadata.creation_timestamp.timestamp()

    def wait_recreated(self, before: dict[str, str], timeout: float = 300) -> None:
        from kubernetes import client

        deadline = time.monotonic() + timeout
        for pod, uid in before.items():
            while True:
                try:
                    if self._pod(pod).metadata.uid != uid:
                        break
                except client.ApiException as e:
                    if e.status != 404:
                        raise
                assert time.monotonic() < deadline, f"the StatefulSet did not re-create {pod}"
                time.sleep(1)

    def kill_server(self, pod: str) -> None:
        """SIGKILL the server container's main process from its node, independently of mysqlsts' own
        kill (signal-server.sh in the pod); the kubelet restarts the container in the same pod."""
        found = self._pod(pod)
        node = found.spec.node_name
        (mysql,) = [c for c in found.status.container_statuses or [] if c.name == "mysql" and c.state.running]
        runtime = os.environ.get("KIND_EXPERIMENTAL_PROVIDER", "docker")
        container = mysql.container_id.split("://", 1)[1]  # containerd://ID: kind nodes run containerd
        result = subprocess.run([runtime, "exec", node, "ctr", "--namespace", "k8s.io", "tasks", "kill",
                                 "--signal", "SIGKILL", container], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"killing the server of {pod} on node {node} failed: {result.stderr}"

    def _lease_holder(self) -> str | None:
        from kubernetes import client

        try:
            lease = client.CoordinationV1Api(self.api_client).read_namespaced_lease(
                f"{NAME}-mysqlsts-controller", self.namespace)
        except client.ApiException as e:
            if e.status == 404:
                return None
            raise
        return lease.spec.holder_identity

    def wait_controller_leading(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while self._lease_holder() is None:
            assert time.monotonic() < deadline, "the controller Deployment did not take its Lease"
            time.sleep(2)

    def controller_decisions(self) -> list[dict]:
        pods = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"{RELEASE_LABEL},app.kubernetes.io/component=controller").items
        decisions = []
        for pod in pods:
            decisions += [json.loads(line) for line in self._log(pod.metadata.name).splitlines()
                          if line.startswith("{")]
        return decisions

    def _log(self, pod: str) -> str:
        # Unparsed: the client would turn a log that is one JSON document into a Python repr.
        return self.core.read_namespaced_pod_log(pod, self.namespace, _preload_content=False).data.decode()

    def applied_values(self) -> dict:
        sts = self.apps.read_namespaced_stateful_set(NAME, self.namespace)
        return json.loads(sts.metadata.annotations["mysqlsts.io/values"])

    def witness(self, pods: list[str]) -> KindWitness:
        return KindWitness(self, pods)

    def fire_scheduled_drill(self, printed: str) -> None:
        """Wait for the CronJob's first Job to finish (the schedule fires at the next minute)."""
        assert f"CronJob {NAME}-drill" in printed and "'* * * * *'" in printed, printed
        deadline = time.monotonic() + 60 + self.drill_duration + 600
        while True:
            jobs = [j for j in self.batch.list_namespaced_job(self.namespace).items
                    if any(o.kind == "CronJob" and o.name == f"{NAME}-drill"
                           for o in j.metadata.owner_references or [])]
            if any((j.status.succeeded or 0) + (j.status.failed or 0) > 0 for j in jobs):
                return
            assert time.monotonic() < deadline, f"the drill CronJob ran no Job to completion: {jobs}"
            time.sleep(5)

    def wait_drill_schedule_gone(self) -> None:
        deadline = time.monotonic() + 300
        selector = f"{RELEASE_LABEL},app.kubernetes.io/component=drill"
        while self.core.list_namespaced_pod(self.namespace, label_selector=selector).items:
            assert time.monotonic() < deadline, "drill pods remain after unschedule"
            time.sleep(3)

    def _labelled(self) -> list[str]:
        from kubernetes import client

        c = self.api_client
        listers = {
            "Pod": client.CoreV1Api(c).list_namespaced_pod,
            "PersistentVolumeClaim": client.CoreV1Api(c).list_namespaced_persistent_volume_claim,
            "Service": client.CoreV1Api(c).list_namespaced_service,
            "ConfigMap": client.CoreV1Api(c).list_namespaced_config_map,
            "Secret": client.CoreV1Api(c).list_namespaced_secret,
            "ServiceAccount": client.CoreV1Api(c).list_namespaced_service_account,
            "Job": client.BatchV1Api(c).list_namespaced_job,
            "CronJob": client.BatchV1Api(c).list_namespaced_cron_job,
            "Deployment": client.AppsV1Api(c).list_namespaced_deployment,
            "StatefulSet": client.AppsV1Api(c).list_namespaced_stateful_set,
            "Lease": client.CoordinationV1Api(c).list_namespaced_lease,
            "Role": client.RbacAuthorizationV1Api(c).list_namespaced_role,
            "RoleBinding": client.RbacAuthorizationV1Api(c).list_namespaced_role_binding,
            "NetworkPolicy": client.NetworkingV1Api(c).list_namespaced_network_policy,
            "PodDisruptionBudget": client.PolicyV1Api(c).list_namespaced_pod_disruption_budget,
        }
        return [f"{kind} {item.metadata.name}" for kind, lister in listers.items()
                for item in lister(self.namespace, label_selector=RELEASE_LABEL).items]

    def leftovers(self, timeout: float = 300) -> list[str]:
        """Objects labelled with the release; deletion is asynchronous (Foreground, finalizers): wait."""
        deadline = time.monotonic() + timeout
        while True:
            left = self._labelled()
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(3)

    def after_test(self) -> None:
        """Fail the test in which an image pull shows up: every image must be on the nodes already."""
        pulls = []
        for e in self.core.list_namespaced_event(self.namespace).items:
            when = e.last_timestamp or e.event_time or e.first_timestamp or e.metadata.creation_timestamp
            if e.reason in IMAGE_PULL_REASONS and (when is None or when >= self.started) \
                    and e.metadata.uid not in self.reported_events:
                self.reported_events.add(e.metadata.uid)
                pulls.append(f"{e.reason} {e.involved_object.kind}/{e.involved_object.name}: {e.message}")
        if pulls:
            pytest.fail("image pulls in namespace " + self.namespace + " (preload the images; "
                        "MYSQLSTS_KIND_SETS=images.pullPolicy=Never):\n" + "\n".join(pulls), pytrace=False)

    def teardown(self) -> None:
        if self.run("destroy", "--delete-data", timeout=900).returncode not in (0, 2):  # 2: gone already
            print("destroy failed at teardown", file=sys.stderr)


class KindWitness:
    """The writer as a Pod in the cluster (see the module docstring and WITNESS_SCRIPT)."""

    write_seconds = 75  # around the fault: detection, failover and the writes resuming take seconds on kind
    settle_seconds = 600  # after writing, how long each node may take to hold every acknowledged write

    def __init__(self, target: KindTarget, pods: list[str]):
        self.target, self.pods = target, pods
        self.pod = f"{NAME}-witness-{uuid.uuid4().hex[:6]}"
        self.progress: list[dict] = []

    def __enter__(self) -> KindWitness:
        t = self.target
        values = t.applied_values()
        argv = ["python", "-c", WITNESS_SCRIPT, t.primary_fqdn(), ",".join(t.fqdn(p) for p in self.pods),
                str(self.write_seconds), str(self.settle_seconds)]
        t.core.create_namespaced_pod(t.namespace, {
            "apiVersion": "v1", "kind": "Pod",
            # Not labelled with the release: it is the suite's, not mysqlsts'.
            "metadata": {"name": self.pod, "labels": {"app.kubernetes.io/name": "mysqlsts-e2e-witness"}},
            "spec": {
                "restartPolicy": "Never", "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 5,
                "securityContext": {"runAsNonRoot": True, "runAsUser": 65532,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "writer", "image": values["images"]["tools"],
                    "imagePullPolicy": values["images"]["pullPolicy"], "command": argv,
                    "env": [{"name": "ROOT_PASSWORD",
                             "valueFrom": {"secretKeyRef": {"name": f"{NAME}-secret", "key": "root-password"}}}],
                    "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}},
                    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                }],
            },
        })
        try:
            self._wait(lambda doc: doc.get("acked", 0) >= 10, 300, "the witness got no writes acknowledged")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _docs(self) -> list[dict]:
        try:
            log = self.target._log(self.pod)
        except Exception:
            return []  # not started yet
        return [json.loads(line) for line in log.splitlines() if line.startswith("{")]

    def _phase(self) -> str:
        return self.target._pod(self.pod).status.phase or "Pending"

    def _wait(self, done, timeout: float, failure: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            docs = self._docs()
            hit = next((d for d in reversed(docs) if done(d)), None)
            if hit is not None:
                return hit
            if any(d.get("final") for d in docs) or self._phase() in ("Succeeded", "Failed") \
                    or time.monotonic() > deadline:
                raise AssertionError(f"{failure}; witness log tail: {docs[-3:]}")
            time.sleep(2)

    def resumed_on_other_than(self, old: str, timeout: float = 300) -> str:
        doc = self._wait(lambda d: any(h != old and n >= 5 for h, n in d.get("hosts", {}).items()),
                         timeout, f"writes did not resume on a primary other than {old}")
        return max((h for h in doc["hosts"] if h != old), key=lambda h: doc["hosts"][h])

    def finish(self, timeout: float | None = None) -> dict:
        final = self._wait(lambda d: bool(d.get("final")), self.write_seconds + self.settle_seconds + 120,
                           "the witness did not report")
        assert "error" not in final, final
        return {"acked": final["acked"], "missing": final["missing"], "max_gap_seconds": final["max_gap_seconds"]}

    def __exit__(self, *exc) -> bool:
        from kubernetes import client

        try:
            self.target.core.delete_namespaced_pod(self.pod, self.target.namespace, grace_period_seconds=0)
        except client.ApiException as e:
            if e.status != 404:
                raise
        return False


# -- fixtures ------------------------------------------------------------------------------------


def local_target(tmp: Path, flavor: str) -> LocalTarget:
    return LocalTarget(tmp / "state", flavor)


def kind_target() -> KindTarget:
    """The kind cluster of scripts/kind-up.sh: context MYSQLSTS_KIND_CONTEXT from KUBECONFIG, namespace
    mysqlsts-e2e-<MYSQLSTS_FLAVOR> (created if missing), MYSQLSTS_KIND_SETS applied last."""
    return KindTarget()


@pytest.fixture(scope="module", params=[
    *(pytest.param(f"local-{p.values[0]}", id=f"local-{p.id}", marks=[pytest.mark.servers, *p.marks])
      for p in flavors("mysql")),
    pytest.param("kind", marks=[pytest.mark.kind,
                                pytest.mark.skipif(os.environ.get("MYSQLSTS_KIND") != "1", reason=KIND_SKIP)]),
])
def bootstrapped(request, tmp_path_factory):
    """One bootstrapped 3-pod cluster per target (and, locally, per flavor) for the whole module; destroyed
    (data too) at the end, whatever happened. On kind the flavor is MYSQLSTS_FLAVOR's."""
    if request.param == "kind":
        t = kind_target()
    else:
        t = local_target(tmp_path_factory.mktemp("e2e"), request.param.removeprefix("local-"))
    try:
        started = time.monotonic()
        t.bootstrap_result = t.run("bootstrap", *t.sets, "--replicas", "3", "-o", "json", timeout=1800)
        record(t, "bootstrap 3 pods, verified (s)", time.monotonic() - started)
        yield t
    finally:
        t.teardown()


def record(t: Target, figure: str, value: float) -> None:
    """A figure for docs/kind.md: appended as a JSON line to $MYSQLSTS_E2E_FIGURES when it is set."""
    path = os.environ.get("MYSQLSTS_E2E_FIGURES")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"target": t.name, "flavor": t.flavor, "figure": figure,
                                "value": round(value, 3)}) + "\n")


@pytest.fixture
def cluster(bootstrapped):
    yield bootstrapped
    bootstrapped.after_test()


# -- helpers -------------------------------------------------------------------------------------


def healthy(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-4000:]}"
    report = json.loads(result.stdout)
    assert report["healthy"], [c for c in report["checks"] if not c["ok"]]
    return report


def wait_healthy(t: Target, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        result = t.run("verify", "-o", "json", timeout=600)
        try:
            report = json.loads(result.stdout)
        except ValueError:
            report = {"healthy": False, "checks": [], "error": result.stderr[-2000:]}
        if report["healthy"] or time.monotonic() > deadline:
            return report
        time.sleep(2)


def status(t: Target) -> dict[str, dict]:
    return {p["pod"]: p for p in json.loads(t.ok("status", "-o", "json").stdout)["pods"]}


def roles(t: Target) -> dict[str, str]:
    return {pod: row["role"] for pod, row in status(t).items()}


def primary_of(t: Target) -> str:
    (primary,) = [p for p, r in roles(t).items() if r == "primary"]
    return primary


def failing(report: dict) -> list:
    return [c for c in report.get("checks", []) if not c["ok"]] or report.get("error", "")


def recloned_since(t: Target, seen: int) -> set[str]:
    """Pods the controller re-cloned (quarantined: an unacknowledged tail, issue 14) after its
    first `seen` decisions: those pods were re-created on purpose."""
    return {d.get("pod") for d in t.controller_decisions()[seen:] if d["event"] == "recloning"}


def enable_controller(t: Target) -> None:
    """The controller (kind: the chart's Deployment; local: its background process); idempotent."""
    healthy(t.run("bootstrap", "--set", "controller.enabled=true", "-o", "json", timeout=1800))
    t.wait_controller_leading()


# -- scenarios, in order -------------------------------------------------------------------------


def test_bootstrap_three_pods_verified_over_per_pod_dns(cluster):
    t = cluster
    report = healthy(t.bootstrap_result)
    checks = {c["name"]: c for c in report["checks"]}
    pods = [f"{NAME}-{i}" for i in range(3)]
    assert roles(t) == {pods[0]: "primary", pods[1]: "replica", pods[2]: "replica"}
    for pod in pods:
        assert checks[f"dns {t.fqdn(pod)}"]["ok"]  # each pod's own name resolves to its address
        assert status(t)[pod]["dns"] == t.fqdn(pod)
    for pod in pods[1:]:  # the canary written through the primary name, read back through each pod's name
        assert checks[f"canary row on {pod} via {t.fqdn(pod)}"]["ok"]
    assert checks[f"primary name {t.primary_fqdn()}"]["ok"]  # the primary answers on the primary name


def test_bootstrap_again_changes_nothing(cluster):
    t = cluster
    before = {pod: t.pod_identity(pod) for pod in roles(t)}
    again = t.ok("bootstrap", "-o", "json")
    report = healthy(again)
    assert "nothing to change" in again.stderr
    assert report["started"] == []
    assert {pod: t.pod_identity(pod) for pod in roles(t)} == before  # no pod was re-created


def test_restart_a_replica_and_the_primary(cluster):
    t = cluster
    primary = primary_of(t)
    replica = next(p for p, r in sorted(roles(t).items()) if r == "replica")
    for pod in (replica, primary):
        before = t.pod_identity(pod)
        healthy(t.ok("restart-pod", pod, "-o", "json"))
        assert t.pod_identity(pod) != before, f"{pod} was not restarted"
    assert roles(t)[primary] == "primary"  # no controller: it comes back as the primary, with its data
    assert roles(t)[replica] == "replica"


def test_a_full_restart_starts_every_pod_at_once_and_the_primary_keeps_its_place(cluster):
    """Every pod down at once (a power cut, a namespace-wide outage): the StatefulSet starts them all
    together (Parallel; OrderedReady held pods 1 and 2 back until pod 0 was ready), and the election
    waits for every pod that holds data, so the node holding everything is the primary again."""
    t = cluster
    assert wait_healthy(t)["healthy"]
    primary = primary_of(t)
    before = {pod: t.pod_identity(pod) for pod in sorted(roles(t))}
    for pod in before:
        t.delete_pod(pod)
    t.wait_recreated(before)
    report = healthy(t.ok("bootstrap", "-o", "json"))
    assert report["healthy"], failing(report)
    assert all(t.pod_identity(pod) != identity for pod, identity in before.items())
    starts = sorted(t.started_at(pod) for pod in before)
    assert starts[-1] - starts[0] < 10, f"the pods started {starts[-1] - starts[0]:.1f}s apart: not together"
    assert roles(t)[primary] == "primary"


def test_a_template_change_rolls_replicas_first_then_switches_over_then_restarts_the_old_primary(cluster):
    """OnDelete: mysqlsts rolls a changed pod template itself; the primary is never restarted while it
    is the primary."""
    t = cluster
    assert wait_healthy(t)["healthy"]
    primary = primary_of(t)
    before = {pod: t.pod_identity(pod) for pod in sorted(roles(t))}
    report = healthy(t.ok("bootstrap", "--set", "mysql.extraConfig=max_connections = 301", "-o", "json"))
    assert report["healthy"], failing(report)
    assert sorted(report["rolled"]) == sorted(before) and report["rolled"][-1] == primary, report["rolled"]
    assert all(t.pod_identity(pod) != identity for pod, identity in before.items())
    assert roles(t)[primary] == "replica"  # it was switched away from before its restart


def test_passwords_change_on_the_running_cluster(cluster):
    """`bootstrap --set auth.*`: the servers take each new password beside the old, every pod restarts on
    the new Secret (the roll, the primary last), then the old ones go; everything verifies with the new."""
    t = cluster
    assert wait_healthy(t)["healthy"]
    before = {pod: t.pod_identity(pod) for pod in sorted(roles(t))}
    result = t.ok("bootstrap", "--set", "auth.operatorPassword=e2e-operator-pw-2", "--set",
                  "auth.replicationPassword=e2e-replication-pw-2", "-o", "json")
    report = healthy(result)
    assert report["healthy"], failing(report)
    assert sorted(report["rolled"]) == sorted(before), report["rolled"]
    assert "operatorPassword, replicationPassword: the old passwords no longer work" in result.stderr
    assert wait_healthy(t)["healthy"]


def test_reclone_gives_a_replica_fresh_data(cluster):
    """The claim goes before the pod: a pod re-created on its old claim would keep the old data."""
    t = cluster
    replica = next(p for p, r in sorted(roles(t).items()) if r == "replica")
    before = t.data_identity(replica)
    healthy(t.ok("reclone", replica, "-o", "json"))
    assert t.data_identity(replica) != before, f"{replica} came back on its old data"
    assert roles(t)[replica] == "replica"
    assert wait_healthy(t)["healthy"]


def test_scale_three_to_five_to_three(cluster):
    t = cluster
    report = healthy(t.ok("scale", "--replicas", "5", "-o", "json"))
    names = {c["name"] for c in report["checks"] if c["ok"]}
    for pod in (f"{NAME}-3", f"{NAME}-4"):  # new ordinals cloned and replicate: canary through their names
        assert f"canary row on {pod} via {t.fqdn(pod)}" in names
    assert sorted(roles(t).values()) == ["primary"] + ["replica"] * 4
    healthy(t.ok("scale", "--replicas", "3", "-o", "json"))
    assert sorted(roles(t)) == [f"{NAME}-{i}" for i in range(3)]


def test_switchover(cluster):
    t = cluster
    old = primary_of(t)
    report = json.loads(t.ok("switchover", "-o", "json").stdout)
    assert report["from"] == old and report["to"] != old
    assert report["write_unavailable_seconds"] >= 0
    record(t, "switchover: write-unavailable window (s)", report["write_unavailable_seconds"])
    after = roles(t)
    assert after[report["to"]] == "primary" and after[old] == "replica"
    assert wait_healthy(t)["healthy"]


@pytest.mark.parametrize("fault", ["pod-deleted", "server-killed"])
def test_the_controller_fails_over_with_no_acknowledged_write_lost(cluster, fault):
    t = cluster
    enable_controller(t)
    report = wait_healthy(t)
    assert report["healthy"], failing(report)
    old = primary_of(t)
    pods = sorted(roles(t))
    identity, seen = t.pod_identity(old), len(t.controller_decisions())
    with t.witness(pods) as w:
        if fault == "pod-deleted":
            t.delete_pod(old)
        else:
            t.kill_server(old)
        try:
            new = w.resumed_on_other_than(old)
        except AssertionError as e:  # what the controller decided says why: show it in CI's output
            decided = [d for d in t.controller_decisions() if d["event"] != "leading"][-12:]
            raise AssertionError(f"{e}\ncontroller decisions: {decided}") from None
        if fault == "pod-deleted":
            t.recreate_pod(old)
        report = wait_healthy(t)
        result = w.finish()
    assert new != old
    if fault == "server-killed":  # fenced where it is: the pod was never deleted to fence it
        assert t.pod_identity(old) == identity or old in recloned_since(t, seen)
    assert report["healthy"], failing(report)
    assert result["acked"] > 10 and result["missing"] == {}, result  # no acknowledged write lost, anywhere
    record(t, f"controller failover, {fault}: longest write gap the witness saw (s)", result["max_gap_seconds"])
    assert roles(t)[old] == "replica"  # the old primary rejoined (or was re-cloned) as a replica
    decisions = t.controller_decisions()
    assert any(d["event"] == "failed-over" and d.get("from") == old and d.get("to") == new for d in decisions), \
        [d for d in decisions if d["event"] != "leading"][-10:]


@pytest.mark.parametrize("fault", ["kill", "hang"])
def test_drill_kill_and_hang(cluster, fault):
    """The server is signalled inside its pod (SIGKILL; SIGSTOP until failed over, then killed to fence
    it): the pod itself is never deleted."""
    t = cluster
    report = wait_healthy(t)
    assert report["healthy"], failing(report)
    identities, seen = {pod: t.pod_identity(pod) for pod in roles(t)}, len(t.controller_decisions())
    result = t.run("drill", "--fault", fault, "--duration", str(t.drill_duration), "-o", "json",
                   timeout=t.drill_duration + 900)
    assert result.stdout.strip(), result.stderr
    report = json.loads(result.stdout)
    assert result.returncode == (0 if report["passed"] else 1)
    assert report["fault"] == fault and report["old_primary"] != report["new_primary"]
    assert report["lost_writes"] == 0 and report["split_brain_samples"] == 0, report
    assert report["writes_acknowledged"] > 0 and report["rto_seconds"] is not None
    record(t, f"drill --fault {fault}: RTO (s)", report["rto_seconds"])
    recloned = recloned_since(t, seen)
    assert {p: t.pod_identity(p) for p in roles(t) if p not in recloned} == \
        {p: i for p, i in identities.items() if p not in recloned}
    assert report["healthy_after"], report["failed_checks"]
    assert report["passed"], report["verdict_reasons"]


def test_drill_isolate_is_measured_or_cleanly_refused(cluster):
    t = cluster
    report = wait_healthy(t)
    assert report["healthy"], failing(report)
    result = t.run("drill", "--fault", "isolate", "--duration", str(t.drill_duration), "-o", "json",
                   timeout=t.drill_duration + 900)
    assert "Traceback" not in result.stderr
    if not result.stdout.strip():  # refused: the platform cannot isolate a pod
        errors = [line for line in result.stderr.splitlines() if line.startswith("mysqlsts drill: ")]
        assert result.returncode != 0, result.stderr
        assert len(errors) == 1, result.stderr  # a clean refusal: one line, with the reason
        assert "isolate" in errors[0] and len(errors[0]) > len("mysqlsts drill: ") + 40, errors[0]
        if t.name == "local":  # documented (docs/drills.md): bad input (no root, no nft), and why
            assert result.returncode == 2
            assert errors[0].startswith("mysqlsts drill: --fault: isolate is not available on the local target: ")
        return
    report = json.loads(result.stdout)
    assert result.returncode == (0 if report["passed"] else 1)
    # It ran: the isolation must have taken effect (a CNI that ignores NetworkPolicies must make it refuse).
    assert report["old_primary"] != report["new_primary"], \
        f"isolate had no effect (no failover): {report['old_primary']} stayed primary"
    assert report["lost_writes"] == 0 and report["split_brain_samples"] == 0, report
    report = wait_healthy(t)
    assert report["healthy"], failing(report)


def test_the_drill_schedule_fires_every_minute_and_its_run_appears_in_history(cluster):
    t = cluster
    report = wait_healthy(t)
    assert report["healthy"], failing(report)
    before = {r["run_id"] for r in json.loads(t.ok("drill", "history", "-o", "json").stdout)["runs"]}
    printed = t.ok("drill", "schedule", "--cron", "* * * * *", "--fault", "kill",
                   "--duration", str(t.drill_duration)).stdout
    try:
        t.fire_scheduled_drill(printed)
    finally:
        t.ok("drill", "unschedule")
        t.wait_drill_schedule_gone()
    runs = json.loads(t.ok("drill", "history", "-o", "json").stdout)["runs"]
    new = [r for r in runs if r["run_id"] not in before]
    assert new, "the scheduled drill's run is not in `drill history`"
    assert new[0]["fault"] == "kill" and new[0]["lost_writes"] == 0, new
    report = wait_healthy(t)
    assert report["healthy"], failing(report)


def test_destroy_keeps_what_the_data_needs_then_with_delete_data_leaves_nothing(cluster):
    """Without --delete-data the volumes stay with their passwords and values: a plain bootstrap (no
    --set: the flavor and images come from what destroy kept) brings the same data back, healthy."""
    t = cluster
    pods = [f"{NAME}-{i}" for i in range(3)]
    data = {pod: t.data_identity(pod) for pod in pods}
    out = t.ok("destroy", timeout=900).stdout
    assert "data, passwords and values kept" in out, out
    gone = t.run("status")
    assert gone.returncode == 2, gone.stderr
    started = time.monotonic()
    t.ok("bootstrap", timeout=1800)
    record(t, "bootstrap again on the data destroy kept (s)", time.monotonic() - started)
    report = wait_healthy(t)
    assert report["healthy"], failing(report)
    assert {pod: t.data_identity(pod) for pod in pods} == data
    out = t.ok("destroy", "--delete-data", timeout=900).stdout
    assert f"cluster {NAME} destroyed with its data" in out
    assert t.leftovers() == []  # kind: nothing labelled with the release; local: no state, no process
    gone = t.run("status")
    assert gone.returncode == 2 and re.search(rf"no (local )?cluster '{NAME}'", gone.stderr), gone.stderr
