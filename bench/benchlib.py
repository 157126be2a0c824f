"""What the failover and load benchmarks share: a local cluster with the controller, writers that
record every acknowledgement, and what became of a killed primary. Loopback addresses only."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql

from mysqlsts import flavors
from mysqlsts.decisions.drill import Ack, rto
from mysqlsts.mysql.observe import client_tls
from mysqlsts.platform.local.runtime import LocalPlatform

FLAVORS = ("mysql", "mariadb")


def flavor_list(text: str) -> list[str]:
    """--flavor's value: one flavor or several, comma separated (each benchmarked in turn, in one run)."""
    chosen = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FLAVORS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"must be mysql, mariadb or both comma separated, got {text!r}")
    return chosen


def add_flavor_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--flavor", type=flavor_list, default=["mysql"],
                        help="mysql, mariadb, or both comma separated, benchmarked in turn (default mysql)")


def each_flavor(args: argparse.Namespace, run: Callable[[str, argparse.Namespace], list[str]]) -> None:
    """Runs the benchmark for every flavor asked for, then prints each one's result lines under its name:
    the flavors side by side, measured in one run on one machine."""
    results = [run(flavor, args) for flavor in args.flavor]
    for flavor, lines in zip(args.flavor, results, strict=True):
        print(f"== {flavor}")
        for line in lines:
            print(line)


def cli(state: Path, *args: str) -> str:
    env = {**os.environ, "MYSQLSTS_HOME": str(state)}
    result = subprocess.run([sys.executable, "-m", "mysqlsts", *args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"mysqlsts {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


class Writer(threading.Thread):
    """Writes through the primary name as fast as acknowledgements come; records (id, time)."""

    def __init__(self, password: str, table: str = "bench.ledger"):
        super().__init__(daemon=True)
        self.password, self.table = password, table
        self.acked: list[tuple[int, float, str]] = []  # (id, acknowledged at, pod that acknowledged it)
        self.stop = threading.Event()

    def run(self) -> None:
        conn, n = None, 0
        while not self.stop.is_set():
            try:
                if conn is None:
                    # TLS as a pooled client has it: a context built once, not one per connection.
                    conn = pymysql.connect(host="mysql-primary", user="root", password=self.password, autocommit=True,
                                           ssl=client_tls(),
                                           connect_timeout=1, read_timeout=5, write_timeout=5)
                    with conn.cursor() as cur:
                        cur.execute("SELECT @@GLOBAL.report_host")
                        pod = cur.fetchone()[0].split(".")[0]
                n += 1
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {self.table} (id) VALUES (%s)", (n,))
                self.acked.append((n, time.monotonic(), pod))
            except pymysql.MySQLError:
                conn = None
                time.sleep(0.005)

    def outage(self, fault_at: float, old: str, timeout: float = 60) -> float:
        """The outage this writer saw: from the old primary's last acknowledgement to the first by another node."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(at > fault_at and pod != old for _, at, pod in self.acked[-2000:]):
                return rto([Ack(i, at, pod) for i, at, pod in self.acked if at > fault_at - 60], fault_at, old)
            time.sleep(0.005)
        raise SystemExit("no write was acknowledged after the fault")

    def longest_gap(self, since: float, until: float) -> float:
        times = [at for _, at, _ in self.acked if since <= at <= until]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def primary(state: Path) -> str:
    return json.loads((state / "mysql" / "cluster.json").read_text())["primary"]


def healthy(state: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    env = {**os.environ, "MYSQLSTS_HOME": str(state)}
    while True:
        result = subprocess.run([sys.executable, "-m", "mysqlsts", "verify", "-o", "json"], env=env,
                                capture_output=True, text=True)
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            failing = [f"{c['name']}: {c['detail']}" for c in json.loads(result.stdout)["checks"] if not c["ok"]]
            raise SystemExit("the cluster did not become healthy again:\n  " + "\n  ".join(failing))
        time.sleep(0.5)


def server_pid(state: Path, pod: str) -> int:
    return json.loads((state / "mysql" / "pods" / pod / "status.json").read_text())["containers"]["mysql"]["pid"]


def tails_cut(platform: LocalPlatform, pod: str) -> int:
    """How often the pod's crash recovery has cut an unacknowledged tail from its binlog (its server log)."""
    log = platform.layout.pod(pod).log("mysql")
    return log.read_text(errors="replace").count("Successfully truncated binlog") if log.exists() else 0


@dataclasses.dataclass
class Fate:
    rejoined: bool  # replicating from the new primary with its own data; else re-cloned
    seconds: float  # from the kill until it replicated again
    tail_cut: bool


def fate(platform: LocalPlatform, password: str, pod: str, killed_at: float, data_inode: int, cuts: int,
         timeout: float = 180) -> Fate:
    """Waits for the killed primary to replicate again, from whichever node is the primary then."""
    flavor = flavors.get(platform.values()["flavor"])
    data = platform.layout.pod(pod).pv / "data"
    quarantined = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        quarantined = quarantined or (platform.layout.pod(pod).pv / "quarantined").exists()
        try:
            with pymysql.connect(host=f"{pod}.mysql.default.svc.cluster.local", user="root", password=password,
                                 connect_timeout=1, read_timeout=2) as conn, conn.cursor() as cur:
                cur.execute(flavor.replica_status_sql)
                row = cur.fetchone()
                names = [d[0] for d in cur.description or ()]
            status = dict(zip(names, row, strict=True)) if row else {}
            if status.get(flavor.column("Replica_IO_Running")) == "Yes" and \
                    status.get(flavor.column("Replica_SQL_Running")) == "Yes":
                same = data.stat().st_ino == data_inode
                return Fate(rejoined=same and not quarantined, seconds=time.monotonic() - killed_at,
                            tail_cut=tails_cut(platform, pod) > cuts)
        except (pymysql.MySQLError, OSError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"{pod} did not replicate again within {timeout:.0f}s of its kill")




def lost_writes(writers: list[Writer], password: str) -> list[int]:
    """Ids some writer saw acknowledged that the primary does not hold."""
    lost: list[int] = []
    with pymysql.connect(host="mysql-primary", user="root", password=password) as conn, conn.cursor() as cur:
        for w in writers:
            cur.execute(f"SELECT id FROM {w.table}")
            present = {r[0] for r in cur.fetchall()}
            lost += sorted({i for i, _, _ in w.acked} - present)
    return lost


def fmt(xs: list[float]) -> str:
    if not xs:
        return "not run"
    return (f"median {statistics.median(xs):.2f}s, max {max(xs):.2f}s over {len(xs)}; "
            f"runs: {', '.join(f'{x:.2f}' for x in xs)}")


def switchovers(state: Path, writer: Writer, runs: int, settle: float) -> tuple[list[float], list[float]]:
    """`runs` switchovers, `settle` seconds after the cluster is healthy again: mysqlsts' write-unavailable
    window of each, and the longest gap between the writer's acknowledged writes around it."""
    windows, gaps = [], []
    for _ in range(runs):
        healthy(state)
        time.sleep(settle)
        began = time.monotonic()
        report = json.loads(cli(state, "switchover", "-o", "json"))
        ended = time.monotonic()
        time.sleep(0.3)
        windows.append(report["write_unavailable_seconds"])
        gaps.append(writer.longest_gap(began, ended + 0.3))
    return windows, gaps


@dataclasses.dataclass
class Bench:
    state: Path
    platform: LocalPlatform
    password: str
    flavor: str


@contextlib.contextmanager
def bench_cluster(name: str, *sets: str, tables: list[str], flavor: str) -> Iterator[Bench]:
    """A 3-pod cluster of the flavor with the controller (no block period, autoReclone on) and the `bench`
    tables, destroyed at the end unless MYSQLSTS_BENCH_KEEP=1."""
    state = Path(tempfile.mkdtemp(prefix=f"mysqlsts-bench-{name}-{flavor}-"))
    platform = LocalPlatform(state, "mysql")
    try:
        cli(state, "bootstrap", "--target", "local", "--set", f"flavor={flavor}", "--controller",
            "--set", "controller.blockPeriodSeconds=0", "--set", "controller.autoReclone=true",
            *(a for s in sets for a in ("--set", s)))
        platform.enter_network()
        password = json.loads((state / "mysql" / "secret.json").read_text())["rootPassword"]
        with pymysql.connect(host="mysql-primary", user="root", password=password, autocommit=True) as conn:
            conn.cursor().execute("CREATE DATABASE bench")
            for table in tables:
                conn.cursor().execute(f"CREATE TABLE {table} (id BIGINT PRIMARY KEY)")
        yield Bench(state, platform, password, flavor)
    finally:
        if os.environ.get("MYSQLSTS_BENCH_KEEP") == "1":
            print(f"kept the cluster for a look: MYSQLSTS_HOME={state} mysqlsts status; destroy it afterwards")
        else:
            subprocess.run([sys.executable, "-m", "mysqlsts", "destroy", "--delete-data"],
                           env={**os.environ, "MYSQLSTS_HOME": str(state)}, capture_output=True)
            shutil.rmtree(state, ignore_errors=True)
