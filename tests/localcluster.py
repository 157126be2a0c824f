"""A cluster on the local runtime driven through the CLI, for the real-server tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pymysql
import pytest

from mysqlsts import flavors as server_flavors
from mysqlsts.chart import values as chart_values
from mysqlsts.decisions.drill import Ack
from mysqlsts.mysql.observe import client_tls
from mysqlsts.mysql.server import SqlServers
from mysqlsts.platform.local import images, procs
from mysqlsts.platform.local.runtime import LocalPlatform

SERVER_MARKS = [
    pytest.mark.servers,
    pytest.mark.skipif(os.geteuid() != 0, reason="the local runtime needs root"),
]
FLAVORS = ("mysql", "mariadb")


def unavailable(flavor: str) -> str | None:
    """Why this machine cannot run the flavor's servers, or None."""
    if flavor == "mariadb" and shutil.which("mariadbd", path=os.environ.get("PATH", "") + ":/usr/sbin") is None:
        return "MariaDB is not installed (scripts/install-deps.sh installs it)"
    image = chart_values.defaults()["images"]["mysql"]["server"]
    if flavor == "mysql" and images.rootfs(image) is None:
        return f"the image {image} is not in the local image store (scripts/install-deps.sh builds it)"
    return None


def flavors(*in_ci: str) -> list:
    """The flavors a real-server scenario runs on, as pytest params. MYSQLSTS_TEST_FLAVORS: unset or
    `ci`, the ones named here (CI's split: every scenario on at least one flavor, the core ones on both);
    `all`, both; else a comma-separated list of flavors, every scenario on each."""
    chosen = os.environ.get("MYSQLSTS_TEST_FLAVORS", "ci")
    names = in_ci if chosen == "ci" else FLAVORS if chosen == "all" else tuple(chosen.split(","))
    return [pytest.param(f, id=f, marks=pytest.mark.skipif(unavailable(f) is not None, reason=unavailable(f) or ""))
            for f in names]

def cli_env(state: Path) -> dict[str, str]:
    env = {**os.environ, "MYSQLSTS_HOME": str(state)}
    env.pop("KUBECONFIG", None)
    return env


def cli(state: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, "-m", "mysqlsts", *args], capture_output=True, text=True,
                              env=cli_env(state), timeout=timeout)
    except subprocess.TimeoutExpired as e:  # say what it was doing: its progress, whole
        def text(b: bytes | str | None) -> str:
            return b.decode(errors="replace") if isinstance(b, bytes) else b or ""
        raise AssertionError(f"mysqlsts {' '.join(args)}: still running after {timeout:g} s\n"
                             f"stdout:\n{text(e.stdout)}\nstderr:\n{text(e.stderr)}") from None


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


class LocalCluster:
    def __init__(self, state: Path, name: str, flavor: str = "mariadb"):
        self.state = state
        self.name = name
        self.flavor = flavor
        self.platform = LocalPlatform(state, name)

    def bootstrap(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """A new cluster of this flavor (the first bootstrap: later ones keep its recorded values)."""
        return self.run("bootstrap", "--target", "local", "--set", f"flavor={self.flavor}", *args, timeout=timeout)

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return cli(self.state, *args, "--name", self.name, timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen:
        """A command left running, to break something under it: its progress (stderr) read as it comes."""
        return subprocess.Popen([sys.executable, "-m", "mysqlsts", *args, "--name", self.name], text=True,
                                env=cli_env(self.state), stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def verify(self) -> dict:
        result = self.run("verify", "-o", "json")
        report = json.loads(result.stdout)
        assert result.returncode == (0 if report["healthy"] else 1)
        return report

    def status(self) -> dict:
        return json.loads(ok(self.run("status", "-o", "json")).stdout)

    def passwords(self) -> dict:
        return json.loads((self.state / self.name / "secret.json").read_text())

    def connect(self, host: str, database: str | None = None, read_timeout: float | None = None):
        self.platform.enter_network()  # resolve through the cluster's DNS, like a pod
        return pymysql.connect(host=host, port=3306, user="root", password=self.passwords()["rootPassword"],
                               database=database, autocommit=True, connect_timeout=5, read_timeout=read_timeout)

    def servers(self) -> SqlServers:
        """The database seam, as the orchestrator reaches the servers: the operator account, by per-pod name."""
        self.platform.enter_network()
        return SqlServers(server_flavors.get(self.flavor), 3306, self.passwords())

    def fqdn(self, pod: str) -> str:
        return f"{pod}.{self.name}.default.svc.cluster.local"

    def server_pid(self, pod: str) -> int:
        status = json.loads((self.state / self.name / "pods" / pod / "status.json").read_text())
        return status["containers"]["mysql"]["pid"]

    def teardown(self) -> None:
        keep = os.environ.get("MYSQLSTS_TEST_LOGS")  # a folder the pods' logs are copied to, for a failure's story
        if keep:
            for logs in (self.state / self.name).glob("pods/*/logs"):
                shutil.copytree(logs, Path(keep) / f"{self.state.name}-{self.name}" / logs.parent.name,
                                dirs_exist_ok=True)
        if self.platform.recorded_values() is not None:
            cli(self.state, "destroy", "--name", self.name, "--delete-data", timeout=120)
        for pid_file in (self.state / self.name).glob("pods/*/supervisor.pid"):  # belt and braces
            pid = procs.read_pid(pid_file)
            if pid and procs.group_alive(pid):
                procs.stop_group(pid, grace=10)
        pid = procs.read_pid(self.state / self.name / "controller.pid")
        if pid and procs.group_alive(pid):
            procs.stop_group(pid, grace=10)


def wait_healthy(c: LocalCluster, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        report = c.verify()
        if report["healthy"] or time.monotonic() > deadline:
            return report
        time.sleep(1)


def all_rows_everywhere(cluster: LocalCluster, acked: list[int], table: str = "app.ledger") -> None:
    """Every acknowledged write is on the primary and, once caught up, on every replica."""
    assert wait_healthy(cluster)["healthy"]
    for pod in [p["pod"] for p in cluster.status()["pods"] if p["role"] in ("primary", "replica")]:
        deadline = time.monotonic() + 30
        while True:
            with cluster.connect(cluster.fqdn(pod)) as conn, conn.cursor() as cur:
                cur.execute(f"SELECT id FROM {table}")
                present = {r[0] for r in cur.fetchall()}
            missing = sorted(set(acked) - present)
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert not missing, f"{pod} lacks {len(missing)} acknowledged writes, e.g. {missing[:10]}"


class Writer(threading.Thread):
    """An independent writer through the primary name (or to `host` from the source address `bind`: a
    client on an isolated primary's side): records every acknowledged commit, which node acknowledged
    it (the report_host of its connection) and every failed attempt."""

    def __init__(self, cluster: LocalCluster, table: str = "app.ledger", host: str | None = None,
                 bind: str | None = None, first_id: int | None = None):
        super().__init__(daemon=True)
        self.cluster, self.table = cluster, table
        self.host, self.bind = host or f"{cluster.name}-primary", bind
        self.acked: list[tuple[int, float]] = []  # (id, time acknowledged)
        self.acks: list[Ack] = []  # the same, at epoch seconds and with the pod that acknowledged each
        self.failures = 0
        self.failed: list[tuple[float, float, str]] = []  # (attempt started, failed, error), epoch seconds
        self.stop = threading.Event()
        with cluster.connect(f"{cluster.name}-primary") as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE IF NOT EXISTS app")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {table} (id BIGINT PRIMARY KEY, at TIMESTAMP(6))")
            cur.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}")
            self.next_id = first_id or cur.fetchone()[0] + 1

    def run(self) -> None:
        conn = None
        pod = ""
        password = self.cluster.passwords()["rootPassword"]
        while not self.stop.is_set():
            started = time.time()
            try:
                if conn is None:
                    conn = pymysql.connect(host=self.host, port=3306, user="root", password=password, ssl=client_tls(),
                                           autocommit=True, connect_timeout=1, read_timeout=5, write_timeout=5,
                                           bind_address=self.bind)
                    with conn.cursor() as cur:
                        cur.execute("SELECT @@GLOBAL.report_host")
                        pod = (cur.fetchone()[0] or "").split(".")[0]
                i, self.next_id = self.next_id, self.next_id + 1
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {self.table} (id, at) VALUES (%s, NOW(6))", (i,))
                self.acked.append((i, time.monotonic()))
                self.acks.append(Ack(i, time.time(), pod))
                time.sleep(0.005)
            except pymysql.MySQLError as e:
                self.failures += 1
                self.failed.append((started, time.time(), str(e)))
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.02)
        if conn is not None:
            conn.close()

    def finish(self) -> list[int]:
        self.stop.set()
        self.join(timeout=30)
        return [i for i, _ in self.acked]

    def acked_since(self, t: float) -> int:
        return sum(1 for _, at in self.acked if at > t)


class Sampler(threading.Thread):
    """An independent read_only sampler over every pod's own name. A sweep reads every pod, then
    the first writable one again: two writable nodes with the first still writable at the end
    of the sweep were writable at the same moment (no false alarm from a role moving mid-sweep)."""

    def __init__(self, cluster: LocalCluster, pods: list[str]):
        super().__init__(daemon=True)
        self.cluster, self.pods = cluster, pods
        self.split_brain: list[tuple[float, list[str]]] = []
        self.sweeps = 0
        self.stop = threading.Event()

    def run(self) -> None:
        password = self.cluster.passwords()["operatorPassword"]
        conns: dict[str, pymysql.Connection | None] = dict.fromkeys(self.pods)

        def writable(pod: str) -> bool:
            try:
                if conns[pod] is None:
                    conns[pod] = pymysql.connect(host=self.cluster.fqdn(pod), port=3306, user="mysqlsts",
                                                 password=password, autocommit=True, connect_timeout=0.3,
                                                 read_timeout=0.5)
                with conns[pod].cursor() as cur:
                    cur.execute("SELECT @@GLOBAL.read_only")
                    return cur.fetchone()[0] == 0
            except pymysql.MySQLError:
                conns[pod] = None
                return False

        while not self.stop.is_set():
            found = [p for p in self.pods if writable(p)]
            if len(found) > 1 and writable(found[0]):
                self.split_brain.append((time.monotonic(), found))
            self.sweeps += 1
            time.sleep(0.01)

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=10)
