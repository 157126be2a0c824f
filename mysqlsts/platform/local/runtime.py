"""The local platform: pods are supervisor processes, PVs are folders, DNS is a dnsmasq."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mysqlsts import flavors
from mysqlsts.chart import secrets
from mysqlsts.chart import values as chart_values
from mysqlsts.chart.render import Names, clone_image, clone_method
from mysqlsts.errors import BadInput, OperationFailed
from mysqlsts.output import progress
from mysqlsts.platform.base import PodInfo, unreachable
from mysqlsts.platform.local import images, netns, partition, procs
from mysqlsts.platform.local.dns import ClusterDNS
from mysqlsts.platform.local.layout import ClusterLayout, template_revision
from mysqlsts.state import read_json, write_atomic, write_json

SUPERVISOR = "mysqlsts.platform.local.supervisor"
CONTROLLER = "mysqlsts controller"
FIRST_HOST, LAST_HOST = 10, 250
SIDE_HOST = 251  # an isolated pod's client side: in the cluster's block, never a pod's address
ISOLATE_PROOF_SECONDS = 5.0  # how long the cut may take to hold before isolate gives up on it
POD_SIDE_PROBE_SECONDS = 2.0  # a loopback connection answers at once unless the cut drops it
# Run in a process of its own: it moves itself into the isolated pod's cgroup, then tries a peer.
# Exit 0: reached it; 10: blocked; anything else: the probe itself failed.
POD_SIDE_PROBE = """import socket, sys
with open(sys.argv[1], "w") as f:
    f.write("0")
try:
    socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=float(sys.argv[4])).close()
except OSError:
    sys.exit(10)
"""


def _flock_holder(path: Path) -> str:
    """" (pid N)" for the process an flock file names, or "" when it names none (yet)."""
    try:
        pid = path.read_text().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


class LocalPlatform:
    target = "local"
    inside = True  # the CLI joins the cluster's DNS namespace, like a pod
    poll_interval = 0.05

    def __init__(self, state_root: Path, name: str):
        self.name = name
        self.layout = ClusterLayout(root=state_root / name, name=name)

    # -- state ---------------------------------------------------------------------------

    def describe(self) -> str:
        return f"target: local, cluster: {self.name} (state: {self.layout.root})"

    def exists(self) -> bool:
        return self.layout.values_file.is_file()

    def recorded_values(self) -> dict[str, Any] | None:
        if self.exists():
            return self.values()
        kept = self.layout.kept_values_file
        return chart_values.upgrade(read_json(kept)) if kept.is_file() else None

    def values(self) -> dict[str, Any]:
        if not self.exists():
            raise BadInput(f"--name: no local cluster {self.name!r} under {self.layout.root.parent} "
                           "(bootstrap it first, or pass --state-dir)")
        return chart_values.upgrade(read_json(self.layout.values_file))

    def passwords(self) -> dict[str, str]:
        return read_json(self.layout.secret_file)

    def stored_passwords(self) -> dict[str, str]:
        return secrets.stored(self.layout.secret_file)

    def stage_passwords(self, passwords: dict[str, str] | None) -> None:
        staged = self.layout.secret_file.with_name("secret.next.json")
        if passwords is None:
            staged.unlink(missing_ok=True)
        else:
            secrets.save(staged, passwords)

    def staged_passwords(self) -> dict[str, str]:
        staged = self.layout.secret_file.with_name("secret.next.json")
        return read_json(staged) if staged.is_file() else {}

    def _cluster(self) -> dict[str, Any]:
        if self.layout.cluster_file.is_file():
            return read_json(self.layout.cluster_file)
        digest = hashlib.sha256(str(self.layout.root.resolve()).encode()).digest()
        return {"block": f"127.{100 + digest[0] % 150}.{digest[1]}", "next_host": FIRST_HOST,
                "addresses": {}, "primary": None}

    def _save_cluster(self, cluster: dict[str, Any]) -> None:
        write_json(self.layout.cluster_file, cluster)

    @contextmanager
    def _flock(self, file: str, what: str, wait: float = 0.0):
        """An flock on `file`, the holder's pid written in it while held; when another process holds
        it, wait up to `wait` seconds for it to let go, then refuse naming that holder."""
        self.layout.root.mkdir(parents=True, exist_ok=True)
        path = self.layout.root / file
        with open(path, "a+") as f:  # not "w": that would erase the holder's pid before we hold the lock
            deadline = time.monotonic() + wait
            waiting = False
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    holder = _flock_holder(path)
                    left = deadline - time.monotonic()
                    if left <= 0:
                        waited = f"; waited {wait:g}s for it to finish" if wait > 0 else ""
                        raise OperationFailed(f"another {what}{holder} is working on cluster {self.name!r}{waited}") \
                            from None
                    if not waiting:
                        progress(f"waiting for the running {what}{holder} to finish (up to {wait:g}s)")
                        waiting = True
                    time.sleep(min(self.poll_interval * 4, left))
            f.truncate(0)
            f.write(f"{os.getpid()}\n")
            f.flush()
            try:
                yield
            finally:
                f.truncate(0)  # still held: a waiter never names a holder that is gone

    @contextmanager
    def lock(self, held_by: str | None = None):
        """One mutating command per cluster at a time. `held_by`: a step run for a caller that holds it
        takes nothing (an flock is never lost while its holder lives, so there is nothing to check)."""
        if held_by is not None:
            yield
            return
        with self._flock(".lock", "mysqlsts command"):
            yield

    def lock_holder(self) -> str | None:
        """None: every step runs in this process, never in a Job that would need to name the holder."""
        return None

    @contextmanager
    def drill_lock(self, wait: float = 0.0):
        """One drill at a time. A drill takes it without waiting (a second drill is refused at once);
        `mysqlsts switchover` and `failover` by hand take it with `wait` (their --timeout) before the
        cluster lock, so they wait for a running drill, then refuse naming it: see docs/drills.md.
        The controller's automatic failover and the drill's own switchover fault never take it."""
        with self._flock(".drill.lock", "drill", wait):
            yield

    @contextmanager
    def leadership(self):
        """Exactly one controller per cluster: an flock held for the controller's life."""
        with self._flock("controller.lock", "controller"):
            yield lambda: None

    def check_lock(self, before: str) -> None:
        """An flock is held until its holder lets go or dies: it is never lost."""

    # -- the controller, like the chart's Deployment ------------------------------------------

    @property
    def _controller_pid_file(self) -> Path:
        return self.layout.root / "controller.pid"

    def ensure_controller(self, values: dict[str, Any]) -> str | None:
        """Run a background controller when values enable it (and stop it when they do not)."""
        pid = procs.live_pid(self._controller_pid_file, CONTROLLER)
        if not values["controller"]["enabled"]:
            if pid:
                procs.stop_group(pid, grace=10)
                self._controller_pid_file.unlink(missing_ok=True)
                return "controller stopped"
            return None
        if pid:
            return None
        log = (self.layout.root / "controller.log").open("ab")
        proc = subprocess.Popen([sys.executable, "-m", "mysqlsts", "controller", "--target", "local",
                                 "--name", self.name, "--state-dir", str(self.layout.root.parent)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, cwd="/")
        write_atomic(self._controller_pid_file, f"{proc.pid}\n")
        return f"controller started (pid {proc.pid}, log {self.layout.root / 'controller.log'})"

    def _dns(self, values: dict[str, Any] | None = None) -> ClusterDNS:
        values = values or self.values()
        return ClusterDNS(self.layout, values["namespace"], values["clusterDomain"],
                          Names.of(values["name"]).headless, f"{self._cluster()['block']}.53")

    def _publish(self) -> None:
        cluster = self._cluster()
        values = self.values()
        services = {}
        if cluster["primary"] and cluster["primary"] in cluster["addresses"]:
            services[Names.of(self.name).primary] = cluster["addresses"][cluster["primary"]]
        self._dns(values).write(cluster["addresses"], services)

    # -- apply ---------------------------------------------------------------------------

    def apply(self, values: dict[str, Any], passwords: dict[str, str], objects: list[dict[str, Any]]) -> list[str]:
        if values["tls"]["existingSecret"]:
            raise BadInput("tls.existingSecret: names a Kubernetes Secret; the local runtime has none and uses "
                           "the generated CA and certificate (leave it empty)")
        check_binaries(values)
        changes = []
        self.layout.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.layout.root, 0o700)
        stored = [o for o in objects if o["kind"] != "Secret"]  # passwords live in secret.json only
        self.layout.kept_values_file.unlink(missing_ok=True)  # a cluster again
        for path, data, mode in ((self.layout.values_file, _without_auth(values), 0o644),
                                 (self.layout.objects_file, stored, 0o644),
                                 (self.layout.secret_file, passwords, 0o600)):
            old = read_json(path) if path.is_file() else None
            if old != data:
                if path == self.layout.secret_file:
                    secrets.save(path, passwords)
                else:
                    write_json(path, data, mode)
                changes.append(f"{path.name} {'updated' if old is not None else 'created'}")
        self.layout.dns_dir.mkdir(parents=True, exist_ok=True)
        self._save_cluster(self._cluster())
        dns = self._dns(values)
        self._publish()
        if not dns.pid():
            dns.start()
            changes.append(f"cluster DNS started on {dns.address}")
        return changes

    def enter_network(self) -> None:
        if not self.layout.resolv_conf.is_file():
            raise OperationFailed(f"cluster {self.name!r} has no DNS configuration; run bootstrap")
        dns = self._dns()
        if not dns.pid():
            dns.start()
        netns.enter(self.layout.resolv_conf)
        self.heal_leftover_partition()

    def run_in_cluster(self, values: dict[str, Any], args: list[str], timeout: float) -> dict[str, Any]:
        raise OperationFailed("the local runtime runs every step here (inside is True)")

    # -- pods ----------------------------------------------------------------------------

    def pods(self) -> list[PodInfo]:
        values = self.values()
        dns = self._dns(values)
        wanted = set(Names.of(self.name).pods(values["replicas"]))
        # Pods beyond `replicas` show only while they still run; their data alone is like a PVC.
        present = {p.name for p in self.layout.existing_pods() if self._supervisor(p.name)}
        addresses = self._cluster()["addresses"]
        objects = self.layout.objects_file
        revision = template_revision(read_json(objects)) if objects.is_file() else None
        out = []
        for name in sorted(wanted | present, key=lambda n: int(n.rsplit("-", 1)[1])):
            pod = self.layout.pod(name)
            status = read_json(pod.status_file) if pod.status_file.is_file() else {}
            running = self._supervisor(name) is not None
            out.append(PodInfo(
                name=name, ordinal=pod.ordinal, fqdn=dns.fqdn(name),
                address=addresses.get(name) if running else None,
                running=running, ready=running and bool(status.get("ready")),
                phase=status.get("phase", "Pending") if running else ("Stopped" if status else "Absent"),
                restarts=sum(c.get("restarts", 0) for c in status.get("containers", {}).values()),
                has_data=(pod.pv / "data").is_dir(), quarantined=(pod.pv / "quarantined").exists(),
                started=running and bool(status.get("serverStarted")),
                outdated=running and "revision" in status and status["revision"] != revision))
        return out

    def _supervisor(self, name: str) -> int | None:
        return procs.live_pid(self.layout.pod(name).pid_file, SUPERVISOR)

    def _allocate(self, name: str) -> str:
        """A fresh address for every pod start, as a new pod IP: the names follow it."""
        cluster = self._cluster()
        in_use = {a for p, a in cluster["addresses"].items() if p != name}
        host = cluster["next_host"]
        for _ in range(LAST_HOST - FIRST_HOST + 1):
            address = f"{cluster['block']}.{host}"
            host = host + 1 if host < LAST_HOST else FIRST_HOST
            if address not in in_use:
                cluster["next_host"] = host
                cluster["addresses"][name] = address
                self._save_cluster(cluster)
                return address
        raise OperationFailed("no free loopback address left in the cluster's block")

    def start_pod(self, name: str) -> None:
        if self._supervisor(name):
            return
        pod = self.layout.pod(name)
        pod.dir.mkdir(parents=True, exist_ok=True)
        pod.logs.mkdir(parents=True, exist_ok=True)
        pod.status_file.unlink(missing_ok=True)
        address = self._allocate(name)
        self._publish()
        log = (pod.logs / "supervisor.log").open("ab")
        proc = subprocess.Popen([sys.executable, "-m", SUPERVISOR, str(self.layout.root), name, address],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                cwd="/")
        pod.pid_file.write_text(f"{proc.pid}\n")
        for _ in range(100):  # until the child has exec'd, its cmdline is still ours
            if procs.alive(proc.pid, SUPERVISOR) or proc.poll() is not None:
                break
            time.sleep(0.02)

    def stop_pod(self, name: str) -> None:
        pod = self.layout.pod(name)
        pid = procs.read_pid(pod.pid_file)
        values = self.values()
        if pid and (procs.alive(pid, SUPERVISOR) or procs.group_alive(pid)):
            procs.stop_group(pid, grace=float(values["pod"]["terminationGracePeriodSeconds"]) + 5)
        pod.pid_file.unlink(missing_ok=True)
        shutil.rmtree(pod.run, ignore_errors=True)
        cluster = self._cluster()
        if cluster["addresses"].pop(name, None):
            self._save_cluster(cluster)
            self._publish()

    def delete_pod_data(self, name: str) -> None:
        shutil.rmtree(self.layout.pod(name).dir, ignore_errors=True)

    def discard_data(self, name: str) -> None:
        self.stop_pod(name)
        self.delete_pod_data(name)

    def kill_server(self, name: str) -> None:
        """SIGKILL the server container (stopped or hung, it dies); its pod restarts it, fenced."""
        status_file = self.layout.pod(name).status_file
        status = read_json(status_file) if status_file.is_file() else {}
        pid = status.get("containers", {}).get("mysql", {}).get("pid")
        if pid and procs.alive(pid, flavors.get(self.values()["flavor"]).server):
            os.kill(pid, signal.SIGKILL)

    @staticmethod
    def fault_unavailable(fault: str) -> str | None:
        return partition.unavailable() if fault == "isolate" else None

    def inject(self, name: str, fault: str) -> Callable[[], None]:
        """Break the pod; returns how to undo it (nothing to undo for kill)."""
        if fault == "kill":
            self.kill_server(name)
            return lambda: None
        if fault == "isolate":
            return self.isolate(name)
        status = read_json(self.layout.pod(name).status_file)
        pid = status["containers"]["mysql"]["pid"]
        os.kill(pid, signal.SIGSTOP)

        def resume() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

        return resume

    # -- the isolate fault: a partition of one pod (partition.py) ----------------------------------

    @property
    def partition(self) -> partition.Partition:
        return partition.Partition(self.layout.root, self.name)

    def client_side_address(self) -> str:
        """The address a client binds to so that it stays on an isolated pod's side of the partition."""
        return f"{self._cluster()['block']}.{SIDE_HOST}"

    def isolate(self, name: str) -> Callable[[], None]:
        """Cut the pod off its peers, the controller, this process and DNS, and them off it; a client bound
        to the client side still reaches it. Proven before it counts, as on Kubernetes: else undone, refused."""
        pod = next((p for p in self.pods() if p.name == name and p.address), None)
        pgid = self._supervisor(name)
        if pod is None or pod.address is None or pgid is None:
            raise OperationFailed(f"--fault isolate: {name} is not running")
        cut = self.partition
        cut.cut(name, pgid, pod.address, self.client_side_address())
        try:
            leak = self.partition_leak(name, pod.address)
        except BaseException:
            cut.heal()
            raise
        if leak:
            cut.heal()
            raise OperationFailed(f"--fault isolate: the cut of {name} does not hold ({leak}), so isolate cannot "
                                  "be injected here; undone. Use kill or hang")

        def heal() -> None:
            cut.heal()

        return heal

    def partition_leak(self, name: str, address: str) -> str | None:
        """Why the cut of pod `name` does not hold, or None. From here (source 127.0.0.1, as its peers,
        the controller and the DNS connect) the pod must not answer; from one of its processes a peer
        (or, alone, the cluster DNS) must not either; from the client side it still must."""
        port = int(self.values()["mysql"]["port"])
        if not unreachable(address, port, within=ISOLATE_PROOF_SECONDS):
            return f"it still accepts connections on {address}:{port} after {ISOLATE_PROOF_SECONDS:g}s"
        side = self.client_side_address()
        try:
            socket.create_connection((address, port), timeout=POD_SIDE_PROBE_SECONDS, source_address=(side, 0)).close()
        except OSError as e:
            return f"the client side {side} no longer reaches {address}:{port}: {e}"
        host, target_port = next(((p.address, port) for p in self.pods() if p.name != name and p.address),
                                 (self._dns().address, 53))
        probe = subprocess.run([sys.executable, "-c", POD_SIDE_PROBE, str(self.partition.procs_file()), host,
                                str(target_port), f"{POD_SIDE_PROBE_SECONDS:g}"],
                               capture_output=True, text=True, timeout=POD_SIDE_PROBE_SECONDS + 30)
        if probe.returncode == 0:
            return f"its own processes still reach {host}:{target_port}"
        if probe.returncode != 10:
            return f"a process on its side could not test it: {partition.first_line(probe.stderr)}"
        return None

    def heal_leftover_partition(self) -> None:
        """An isolate drill killed mid-cut leaves its cut behind, and nothing else would ever lift it."""
        if self.partition.leftover():
            for line in self.partition.heal():
                progress(f"healed the partition a drill that died left behind: {line}")

    def record_drill(self, report: dict[str, Any], metrics: str) -> str:
        """The last drill's metrics as a node_exporter textfile next to the cluster's state."""
        path = self.layout.root / "metrics" / "mysqlsts_drill.prom"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, metrics)
        return str(path)

    def quarantine(self, name: str, reason: str) -> None:
        pv = self.layout.pod(name).pv
        if pv.is_dir():
            write_atomic(pv / "quarantined", reason + "\n")

    # -- primary -------------------------------------------------------------------------

    def set_primary(self, name: str | None) -> None:
        cluster = self._cluster()
        if cluster["primary"] != name:
            cluster["primary"] = name
            self._save_cluster(cluster)
        self._publish()

    def recorded_primary(self) -> str | None:
        return self._cluster()["primary"]

    def primary_fqdn(self) -> str:
        return self._dns().service_fqdn(Names.of(self.name).primary)

    # -- diagnosis and teardown ------------------------------------------------------------

    def diagnose(self, name: str) -> list[str]:
        pod = self.layout.pod(name)
        status = read_json(pod.status_file) if pod.status_file.is_file() else {}
        lines = [f"{name}: phase {status.get('phase', 'unknown')}, ready {status.get('ready', False)}"]
        if status.get("lastProbeFailure"):
            lines.append(f"{name}: last probe failure: {status['lastProbeFailure']}")
        for cname, c in status.get("containers", {}).items():
            lines.append(f"{name}/{cname}: {c}")
        containers = status.get("containers", {})
        failing = [c for c, s in containers.items() if s.get("state") not in ("running", "completed")] or \
            ["agent", "mysql"]
        for cname in failing:
            log = pod.log(cname)
            if log.is_file():
                tail = log.read_text(errors="replace").strip().splitlines()[-12:]
                lines.append(f"--- last lines of {log}:")
                lines.extend(f"    {line}" for line in tail)
                break
        return lines

    def destroy(self, delete_data: bool) -> None:
        if not self.exists():  # only what an earlier destroy kept: nothing runs
            if delete_data:
                shutil.rmtree(self.layout.root, ignore_errors=True)
            return
        pid = procs.live_pid(self._controller_pid_file, CONTROLLER)
        if pid:
            procs.stop_group(pid, grace=10)
        self._controller_pid_file.unlink(missing_ok=True)
        for pod in self.layout.existing_pods():
            pid = procs.read_pid(pod.pid_file)
            if pid and procs.group_alive(pid):
                procs.stop_group(pid, grace=30)
            pod.pid_file.unlink(missing_ok=True)
            pod.status_file.unlink(missing_ok=True)
        if self.partition.record() is not None:
            self.partition.heal()  # an isolate drill's cut, left by a drill that died
        if self.layout.dns_dir.is_dir():
            self._dns().stop()
        shutil.rmtree(self.layout.run_root, ignore_errors=True)
        if delete_data:
            shutil.rmtree(self.layout.root, ignore_errors=True)
        else:  # the cluster is gone; its data, passwords (secret.json) and values stay for a bootstrap
            cluster = self._cluster()
            cluster["addresses"] = {}
            self._save_cluster(cluster)
            self.layout.values_file.replace(self.layout.kept_values_file)


def _without_auth(values: dict[str, Any]) -> dict[str, Any]:
    return {**values, "auth": {k: "" for k in values["auth"]}}


def check_binaries(values: dict[str, Any]) -> None:
    """Every program the pods' containers run, in the image each runs from (local store or this machine)."""
    flavor = flavors.get(values["flavor"])
    server_image, clone = values["images"][flavor.name]["server"], clone_image(values)
    clone_tools = [flavor.server, flavor.client] if clone_method(values) == "clone-plugin" else \
        [flavor.backup, flavor.stream, flavor.client]
    needs = {server_image: [flavor.server, flavor.client, *flavor.extra_binaries, "bash"], "": ["socat", "dnsmasq"]}
    needs[clone] = sorted({*needs.get(clone, []), *clone_tools})
    hints = {**flavor.install_hint, "socat": "apt-get install socat", "dnsmasq": "apt-get install dnsmasq-base"}
    problems = []
    for image, programs in needs.items():
        for program in images.missing_programs(image, programs):
            if images.rootfs(image) is not None:
                problems.append(f"{program} not found in image {image} ({images.store() / image})")
            elif image:
                problems.append(f"{program} not found on PATH, and image {image} is not in the local image store "
                                f"({images.store()}): {hints.get(program, 'install it')}")
            else:
                problems.append(f"{program} not found on PATH: {hints.get(program, 'install it')}")
    if problems:
        raise OperationFailed(problems)
    if os.geteuid() != 0:
        raise OperationFailed("the local runtime needs root (private mount namespace for the cluster DNS, "
                              "DNS on port 53 of the cluster's loopback address)")
