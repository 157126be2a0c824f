"""Benchmark failover and switchover on the local runtime, with an independent writer.

1. kill -9 of the primary's server, and a hung primary (SIGSTOP of its server): the RTO
   is the outage the writer saw through the primary name, from its last write the old
   primary acknowledged to its first one another node acknowledged (the drill's own
   definition, mysqlsts.decisions.drill.rto), with the controller at its defaults;
2. a short stall (SIGSTOP, then SIGCONT after --stall seconds, under the controller's
   hungAfterSeconds): a slow primary, which must not be failed over;
3. switchover write unavailability: the tool's own figure, and the longest gap
   between two acknowledged writes of the independent writer around it;
4. acknowledged writes lost: every id the writer saw acknowledged, looked up on the
   primary at the end.

    sudo .venv/bin/python bench/failover.py --kills 20 --hangs 10 --stalls 5 --switchovers 10

Only loopback addresses are used; the cluster is destroyed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pymysql

from mysqlsts.decisions.drill import Ack, rto
from mysqlsts.platform.local.runtime import LocalPlatform


def cli(state: Path, *args: str) -> str:
    env = {**os.environ, "MYSQLSTS_HOME": str(state)}
    result = subprocess.run([sys.executable, "-m", "mysqlsts", *args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"mysqlsts {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


class Writer(threading.Thread):
    """Writes through the primary name as fast as acknowledgements come; records (id, time)."""

    def __init__(self, password: str):
        super().__init__(daemon=True)
        self.password = password
        self.acked: list[tuple[int, float, str]] = []  # (id, acknowledged at, pod that acknowledged it)
        self.stop = threading.Event()

    def run(self) -> None:
        conn, n = None, 0
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = pymysql.connect(host="mysql-primary", user="root", password=self.password, autocommit=True,
                                           connect_timeout=1, read_timeout=5, write_timeout=5)
                    with conn.cursor() as cur:
                        cur.execute("SELECT @@GLOBAL.report_host")
                        pod = cur.fetchone()[0].split(".")[0]
                n += 1
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO bench.ledger (id) VALUES (%s)", (n,))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="kill -9 of the primary (default 20)")
    parser.add_argument("--hangs", type=int, default=10, help="SIGSTOP of the primary until failed over (default 10)")
    parser.add_argument("--stalls", type=int, default=5, help="short SIGSTOPs that must not fail over (default 5)")
    parser.add_argument("--stall", type=float, default=1.0, help="seconds a short stall lasts (default 1)")
    parser.add_argument("--switchovers", type=int, default=10, help="switchovers (default 10)")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="mysqlsts-bench-failover-"))
    platform = LocalPlatform(state, "mysql")
    stopped: list[int] = []
    try:
        cli(state, "bootstrap", "--target", "local", "--set", "flavor=mariadb", "--controller",
            "--set", "controller.blockPeriodSeconds=0", "--set", "controller.autoReclone=true")
        platform.enter_network()
        password = json.loads((state / "mysql" / "secret.json").read_text())["rootPassword"]
        with pymysql.connect(host="mysql-primary", user="root", password=password, autocommit=True) as conn:
            conn.cursor().execute("CREATE DATABASE bench")
            conn.cursor().execute("CREATE TABLE bench.ledger (id BIGINT PRIMARY KEY)")
        writer = Writer(password)
        writer.start()
        outages: dict[str, list[float]] = {"kill": [], "hang": []}
        for fault, runs in (("kill", args.kills), ("hang", args.hangs)):
            for _ in range(runs):
                healthy(state)
                time.sleep(1.0)
                old = primary(state)
                pid = server_pid(state, old)
                fault_at = time.monotonic()
                if fault == "kill":
                    os.kill(pid, signal.SIGKILL)
                else:
                    stopped.append(pid)
                    os.kill(pid, signal.SIGSTOP)  # the controller kills it once it counts as hung
                outages[fault].append(writer.outage(fault_at, old))
        stalls, stall_gaps = 0, []
        for _ in range(args.stalls):
            healthy(state)
            time.sleep(1.0)
            old = primary(state)
            pid = server_pid(state, old)
            stopped.append(pid)
            began = time.monotonic()
            os.kill(pid, signal.SIGSTOP)
            time.sleep(args.stall)
            os.kill(pid, signal.SIGCONT)
            time.sleep(3.0)
            stalls += primary(state) != old or server_pid(state, old) != pid
            stall_gaps.append(writer.longest_gap(began - 0.5, time.monotonic()))
        switch_tool, switch_gap = [], []
        for _ in range(args.switchovers):
            healthy(state)
            time.sleep(0.5)
            began = time.monotonic()
            report = json.loads(cli(state, "switchover", "-o", "json"))
            ended = time.monotonic()
            time.sleep(0.3)
            switch_tool.append(report["write_unavailable_seconds"])
            switch_gap.append(writer.longest_gap(began, ended + 0.3))
        writer.stop.set()
        writer.join()
        healthy(state)
        with pymysql.connect(host="mysql-primary", user="root", password=password) as conn, conn.cursor() as cur:
            cur.execute("SELECT id FROM bench.ledger")
            present = {r[0] for r in cur.fetchall()}
        lost = sorted({i for i, _, _ in writer.acked} - present)

        def fmt(xs: list[float]) -> str:
            if not xs:
                return "not run"
            return (f"median {statistics.median(xs):.2f}s, max {max(xs):.2f}s over {len(xs)}; "
                    f"runs: {', '.join(f'{x:.2f}' for x in xs)}")

        print(f"RTO, kill -9 of the primary (outage the writer saw): {fmt(outages['kill'])} "
              "(target median <= 0.5 s, max <= 1.5 s)")
        print(f"RTO, hung primary (SIGSTOP): {fmt(outages['hang'])} (target median <= 2 s)")
        print(f"{args.stall:g}s stalls of the primary: {stalls} of {args.stalls} failed over (target 0); "
              f"longest write gap around them: {fmt(stall_gaps)}")
        print(f"switchover write unavailability, measured by mysqlsts: {fmt(switch_tool)} (target median <= 1 s)")
        print(f"switchover, longest gap between the writer's acknowledged writes: {fmt(switch_gap)}")
        print(f"acknowledged writes: {len(writer.acked)}; lost: {len(lost)} (target 0)"
              + (f"; lost ids: {lost[:20]}" if lost else ""))
    finally:
        for pid in stopped:  # a stopped server the controller did not kill must not stay stopped
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if os.environ.get("MYSQLSTS_BENCH_KEEP") == "1":
            print(f"kept the cluster for a look: MYSQLSTS_HOME={state} mysqlsts status; destroy it afterwards")
        else:
            subprocess.run([sys.executable, "-m", "mysqlsts", "destroy", "--delete-data"],
                           env={**os.environ, "MYSQLSTS_HOME": str(state)}, capture_output=True)
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
