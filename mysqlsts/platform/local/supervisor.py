"""The local kubelet: runs one pod of the rendered StatefulSet as processes.

It runs in its own session (so everything it starts is one process group),
inside the cluster's DNS namespace, and does what the kubelet does for the
pod: run the init containers in order (retrying from the first on failure),
start the containers, restart those that exit, run the startup, liveness and
readiness probes from the pod spec, and report it all in status.json. The
commands are the chart's own scripts, taken from the ConfigMap.

    python -m mysqlsts.platform.local.supervisor CLUSTER_DIR POD ADDRESS
"""

from __future__ import annotations

import contextlib
import copy
import functools
import getpass
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mysqlsts
from mysqlsts.chart.render import Names
from mysqlsts.chart.secrets import SECRET_DATA_KEYS
from mysqlsts.platform.local import images, netns, procs
from mysqlsts.platform.local.layout import ClusterLayout, PodLayout, template_revision
from mysqlsts.state import read_json, write_json

MAX_BACKOFF = 10.0
TICK = 0.05  # how often the supervisor looks at its processes and probe schedule


class Probes:
    """The kubelet's probe schedule for one container: startup first, then
    readiness and liveness at their periods, each with its thresholds.

    The first readiness and liveness probes run as soon as the startup probe
    succeeds, as the kubelet does."""

    KINDS = ("startupProbe", "readinessProbe", "livenessProbe")

    def __init__(self, container: dict[str, Any]):
        self.spec = {k: container[k] for k in self.KINDS if k in container}
        self.reset(time.monotonic())

    def reset(self, now: float) -> None:
        """A (re)started container: probing starts over, startup first."""
        self.started = "startupProbe" not in self.spec
        self.next = {k: now + self.spec[k].get("initialDelaySeconds", 0) for k in self.spec}
        self.streak = {k: 0 for k in self.spec}  # >0: successes in a row, <0: failures in a row

    def due(self, now: float) -> list[str]:
        kinds = ["startupProbe"] if not self.started else ["readinessProbe", "livenessProbe"]
        return [k for k in kinds if k in self.spec and now >= self.next[k]]

    def record(self, kind: str, ok: bool, now: float) -> bool | None:
        """The probe's verdict once a threshold is crossed, else None."""
        spec = self.spec[kind]
        self.next[kind] = now + spec.get("periodSeconds", 10)
        streak = self.streak[kind]
        self.streak[kind] = max(streak, 0) + 1 if ok else min(streak, 0) - 1
        if ok and self.streak[kind] >= spec.get("successThreshold", 1):
            if kind == "startupProbe":
                self.started = True
                self.next.update({k: now for k in ("readinessProbe", "livenessProbe") if k in self.spec})
            return True
        if not ok and -self.streak[kind] >= spec.get("failureThreshold", 3):
            if kind != "readinessProbe":
                self.streak[kind] = 0
            return False
        return None


class Pod:
    def __init__(self, layout: ClusterLayout, pod: PodLayout, address: str):
        self.layout = layout
        self.pod = pod
        self.address = address
        objects = read_json(layout.objects_file)
        self.sts = next(o for o in objects if o["kind"] == "StatefulSet")
        self.configmap = next(o for o in objects if o["kind"] == "ConfigMap")
        self.spec = self.sts["spec"]["template"]["spec"]
        # Like a Secret volume: read once at pod start.
        secret = read_json(layout.secret_file)
        self.secret_by_key = {SECRET_DATA_KEYS[k]: v for k, v in secret.items() if k in SECRET_DATA_KEYS}
        self.secret_name = Names.of(layout.name).secret
        self.grace = float(self.spec.get("terminationGracePeriodSeconds", 30))
        self.stopping = False
        self.written: dict[str, Any] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.roots = images.PodRoots(pod, layout.resolv_conf)
        self.restarts: dict[str, int] = {}
        self.status: dict[str, Any] = {"pod": pod.name, "address": address, "supervisor": os.getpid(),
                                       "phase": "Pending", "ready": False, "containers": {},
                                       "started": time.time(), "revision": template_revision(objects)}

    # -- the pod's filesystem and environment ---------------------------------------------

    def mount_configmap(self) -> None:
        """Like a ConfigMap volume: the items, fresh on every pod start."""
        volume = next(v for v in self.spec["volumes"] if v["name"] == "config")
        for item in volume["configMap"]["items"]:
            target = self.pod.home / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(self.configmap["data"][item["key"]])

    def mount_record(self) -> None:
        """Like the optional ConfigMap volume of the recorded primary: empty until the cluster has one."""
        folder = self.pod.volumes["record"]
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        primary = read_json(self.layout.cluster_file).get("primary") if self.layout.cluster_file.is_file() else None
        if primary:
            (folder / "primary").write_text(primary)

    def mount_secrets(self) -> None:
        """Like Secret volumes: the items as read-only files (the volume's mode), fresh on every pod start.
        Only the cluster's own Secret exists here (secret.json); the platform refuses any other."""
        for volume in self.spec["volumes"]:
            source = volume.get("secret")
            if source is None:
                continue
            if source["secretName"] != self.secret_name:
                raise SystemExit(f"volume {volume['name']}: Secret {source['secretName']} does not exist on the "
                                 "local runtime")
            folder = self.pod.volumes[volume["name"]]
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(mode=0o700, parents=True)
            for item in source["items"]:
                target = folder / item["path"]
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, item.get("mode", source["defaultMode"]))
                with os.fdopen(fd, "w") as f:
                    f.write(self.secret_by_key[item["key"]])

    def localize(self, container: dict[str, Any], value: str) -> str:
        """A path inside the container, as the folder that stands for its volume here."""
        for mount in sorted(container.get("volumeMounts", []), key=lambda m: -len(m["mountPath"])):
            path = mount["mountPath"]
            if value == path or value.startswith(path + "/"):
                return str(self.pod.volumes[mount["name"]]) + value[len(path):]
        return value

    def env(self, container: dict[str, Any]) -> dict[str, str]:
        env = {k: os.environ[k] for k in ("LANG", "HOME") if k in os.environ}
        env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/local/sbin:/usr/sbin:/sbin"
        for var in container.get("env", []):
            if "value" in var:
                env[var["name"]] = self.localize(container, var["value"])
            elif var["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.name":
                env[var["name"]] = self.pod.name
        env["BIND_ADDRESS"] = self.address  # the pod's own address: every pod shares this host's network
        env["MYSQL_OS_USER"] = getpass.getuser()
        if container.get("command", [None])[0] == "mysqlsts":  # this very mysqlsts (see command)
            env["PYTHONPATH"] = str(Path(mysqlsts.__file__).resolve().parent.parent)
        return env

    def command(self, container: dict[str, Any], argv: list[str]) -> list[str]:
        """The container's command with its paths localized. The one rule for the mysqlsts image: a
        command that starts with `mysqlsts` runs this very mysqlsts, as `python -m mysqlsts`."""
        argv = [self.localize(container, a) for a in argv]
        if argv and argv[0] == "mysqlsts":
            return [sys.executable, "-m", "mysqlsts", *argv[1:]]
        return argv

    def in_image(self, container: dict[str, Any]) -> dict[str, Any]:
        """How a process of this container starts: in its image's root when the local store has the
        image (the server image of MySQL 9.7), else on this machine's own programs."""
        root = self.roots.root(container.get("image", ""))
        if root is None:
            return {"cwd": self.pod.tmp}
        return {"cwd": self.pod.tmp, "preexec_fn": functools.partial(images.enter, root, self.pod.tmp)}

    # -- containers --------------------------------------------------------------------------

    def spawn(self, container: dict[str, Any]) -> subprocess.Popen:
        log = self.pod.log(container["name"]).open("ab")
        return subprocess.Popen(self.command(container, container["command"]), env=self.env(container),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, **self.in_image(container))

    def run_init_containers(self) -> bool:
        backoff = 1.0
        while not self.stopping:
            for container in self.spec["initContainers"]:
                self.set_phase(f"Init:{container['name']}")
                proc = self.spawn(container)
                self.procs[container["name"]] = proc
                rc = self.wait_or_stop(proc)
                self.procs.pop(container["name"], None)
                if self.stopping:
                    return False
                if rc != 0:
                    self.restarts[container["name"]] = self.restarts.get(container["name"], 0) + 1
                    self.status["containers"][container["name"]] = {"state": "error", "exitCode": rc,
                                                                   "restarts": self.restarts[container["name"]]}
                    self.set_phase(f"Init:Error ({container['name']} exited {rc})")
                    self.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
                    break
                self.status["containers"][container["name"]] = {"state": "completed", "exitCode": 0}
            else:
                return True
        return False

    def wait_or_stop(self, proc: subprocess.Popen) -> int:
        while True:
            try:
                return proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                if self.stopping:
                    proc.terminate()
                    return proc.wait()

    def probe(self, container: dict[str, Any], kind: str) -> bool:
        spec = container.get(kind)
        if not spec:
            return True
        try:
            result = subprocess.run(self.command(container, spec["exec"]["command"]), env=self.env(container),
                                    stdin=subprocess.DEVNULL, capture_output=True,
                                    timeout=spec.get("timeoutSeconds", 5), **self.in_image(container))
        except subprocess.TimeoutExpired:
            self.status["lastProbeFailure"] = f"{kind}: timed out"
            return False
        if result.returncode != 0:
            message = (result.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
            self.status["lastProbeFailure"] = f"{kind}: {message}"
        return result.returncode == 0

    def run(self) -> int:
        # emptyDirs: new with every pod. The run folder outlives a pod whose supervisor was killed (a
        # machine's reboot), and the agent's readiness verdict there is about the old pod's server.
        for volume in ("tools", "run"):
            shutil.rmtree(self.pod.volumes[volume], ignore_errors=True)
        self.roots.reset()
        for d in (*self.pod.volumes.values(), self.pod.logs):
            d.mkdir(parents=True, exist_ok=True)
        self.mount_configmap()
        self.mount_secrets()
        self.mount_record()
        if not self.run_init_containers():
            return self.shutdown()
        containers = {c["name"]: c for c in self.spec["containers"]}
        main = self.spec["containers"][0]
        for name, c in containers.items():
            self.procs[name] = self.spawn(c)
        self.set_phase("Running")
        probes = Probes(main)
        backoff: dict[str, float] = {}
        restart_at: dict[str, float] = {}
        while not self.stopping:
            now = time.monotonic()
            for name, c in containers.items():
                proc = self.procs.get(name)
                if proc is not None and proc.poll() is not None:
                    self.restarts[name] = self.restarts.get(name, 0) + 1
                    backoff[name] = min(backoff.get(name, 0.5) * 2, MAX_BACKOFF)
                    restart_at[name] = now + backoff[name]
                    self.status["containers"][name] = {"state": "waiting", "exitCode": proc.returncode,
                                                       "restarts": self.restarts[name]}
                    self.procs.pop(name)
                    if name == main["name"]:
                        probes.reset(now)
                        self.status["ready"] = False
                if name not in self.procs and now >= restart_at.get(name, 0):
                    self.procs[name] = self.spawn(c)
                    if name == main["name"]:
                        probes.reset(now)
                if name in self.procs:
                    self.status["containers"][name] = {"state": "running", "pid": self.procs[name].pid,
                                                       "restarts": self.restarts.get(name, 0)}
            if main["name"] in self.procs:
                for kind in probes.due(now):
                    verdict = probes.record(kind, self.probe(main, kind), time.monotonic())
                    if kind == "readinessProbe" and verdict is not None:
                        self.status["ready"] = verdict
                    elif verdict is False:  # startup or liveness: the kubelet restarts the container
                        self.procs[main["name"]].kill()
            self.status["serverStarted"] = main["name"] in self.procs and probes.started
            self.write_status()
            self.sleep(TICK)
        return self.shutdown()

    def shutdown(self) -> int:
        self.status["ready"] = False
        self.set_phase("Terminating")
        for name in reversed(list(self.procs)):  # clone listener and agent first, then the server
            proc = self.procs[name]
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=self.grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.set_phase("Stopped")
        return 0

    # -- status ------------------------------------------------------------------------------

    def set_phase(self, phase: str) -> None:
        self.status["phase"] = phase
        with contextlib.suppress(OSError):  # a pod whose folder was deleted under it still stops
            self.write_status()

    def write_status(self) -> None:
        if self.status != self.written:
            write_json(self.pod.status_file, self.status)
            self.written = copy.deepcopy(self.status)

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, seconds))


def main(argv: list[str]) -> int:
    cluster_dir, pod_name, address = argv
    root = Path(cluster_dir)
    layout = ClusterLayout(root=root, name=root.name)
    netns.enter(layout.resolv_conf)
    pod = Pod(layout, layout.pod(pod_name), address)

    def stop(signum, frame):
        pod.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        return pod.run()
    finally:  # whatever ended the supervisor (its folder deleted under it, say): no container outlives it
        with contextlib.suppress(Exception):
            pod.shutdown()
        for pid in procs.group_members(os.getpgid(0)):
            if pid != os.getpid():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
