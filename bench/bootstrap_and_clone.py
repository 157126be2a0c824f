"""Benchmark the local runtime, side by side in one run:

1. bootstrap of 3 pods (init, clone x2, replication, verification) against the
   floor of 3 bare servers initialized and started one after another, no cloning;
2. clone of a dataset of SIZE GiB (scale out by one pod: donor choice, backup
   stream, extract, prepare, start) against a raw copy of the same data
   directory over the same loopback path (tar through a TCP socket);
3. clone time at each size given, with the ratio of the largest to the smallest.

    sudo .venv/bin/python bench/bootstrap_and_clone.py --sizes 1,4

Only loopback addresses are used; every server it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pymysql

from mysqlsts.platform.local.runtime import LocalPlatform


def cli(state: Path, *args: str) -> None:
    env = {**os.environ, "MYSQLSTS_HOME": str(state)}
    result = subprocess.run([sys.executable, "-m", "mysqlsts", *args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"mysqlsts {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


def bare_servers(work: Path, count: int) -> float:
    """Floor: install and start `count` bare servers in sequence until each answers."""
    started = time.monotonic()
    pids = []
    try:
        for i in range(count):
            d = work / f"bare{i}"
            subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={d}/data", "--user=root",
                            "--skip-test-db"], check=True, capture_output=True)
            sock = f"{d}/s.sock"
            proc = subprocess.Popen(["mariadbd", "--no-defaults", f"--datadir={d}/data", f"--socket={sock}",
                                     "--skip-networking", "--user=root", f"--log-error={d}/err"])
            pids.append(proc)
            while subprocess.run(["mariadb", "--no-defaults", "-uroot", f"--socket={sock}", "-e", "SELECT 1"],
                                 capture_output=True).returncode != 0:
                time.sleep(0.05)
        return time.monotonic() - started
    finally:
        for proc in pids:
            proc.terminate()
            proc.wait()


def fill(platform: LocalPlatform, gib: float) -> None:
    """Grow app.fill to about `gib` GiB of InnoDB data (1 KiB rows, doubling)."""
    platform.enter_network()
    pw = json.loads(platform.layout.secret_file.read_text())["rootPassword"]
    conn = pymysql.connect(host="mysql-primary", user="root", password=pw, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS app")
        cur.execute("CREATE TABLE IF NOT EXISTS app.fill (id BIGINT AUTO_INCREMENT PRIMARY KEY, pad CHAR(250),"
                    " pad2 CHAR(250), pad3 CHAR(250), pad4 CHAR(250)) ENGINE=InnoDB CHARSET latin1")
        cur.execute("SELECT COUNT(*) FROM app.fill")
        rows = cur.fetchone()[0]
        if rows == 0:
            cur.execute("INSERT INTO app.fill (pad, pad2, pad3, pad4) VALUES (MD5(1), MD5(2), MD5(3), MD5(4))")
            rows = 1
        target = int(gib * 1024 * 1024)
        while rows < target:
            batch = min(rows, target - rows, 131072)
            cur.execute(f"INSERT INTO app.fill (pad, pad2, pad3, pad4) SELECT MD5(RAND()), pad2, pad3, pad4 "
                        f"FROM app.fill LIMIT {batch}")
            rows += batch
    conn.close()


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def timed_clone(state: Path, platform: LocalPlatform, replicas: int) -> tuple[float, int]:
    started = time.monotonic()
    cli(state, "scale", "--replicas", str(replicas))
    elapsed = time.monotonic() - started
    return elapsed, du(platform.layout.pod(f"mysql-{replicas - 1}").pv / "data")


def raw_copy(src: Path, work: Path) -> float:
    """tar of the donor's data dir through a loopback TCP socket into a fresh folder."""
    dest = work / "rawcopy"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    started = time.monotonic()
    receiver = subprocess.Popen(["bash", "-c", f"socat -u TCP-LISTEN:39999,bind=127.0.0.1,reuseaddr STDOUT"
                                               f" | tar -x -C {dest}"])
    time.sleep(0.2)
    subprocess.run(["bash", "-c", f"tar -c -C {src} . | socat -u STDIN TCP:127.0.0.1:39999"], check=True)
    receiver.wait()
    elapsed = time.monotonic() - started
    shutil.rmtree(dest, ignore_errors=True)
    return elapsed


def fmt(seconds: list[float]) -> str:
    return "[" + ", ".join(f"{s:.2f}" for s in seconds) + "]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4", help="dataset sizes in GiB, comma separated")
    parser.add_argument("--runs", type=int, default=3, help="bootstrap and floor runs, alternated; medians compared")
    args = parser.parse_args()
    sizes = [float(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="mysqlsts-bench-"))
    state = work / "state"
    platform = LocalPlatform(state, "mysql")
    try:
        floors, boots = [], []
        for run in range(args.runs):
            if run:
                cli(state, "destroy", "--delete-data")
            floors.append(bare_servers(work / f"run{run}", 3))
            started = time.monotonic()
            cli(state, "bootstrap", "--target", "local", "--set", "flavor=mariadb", "--replicas", "3")
            boots.append(time.monotonic() - started)
        boot, floor = statistics.median(boots), statistics.median(floors)
        print(f"bootstrap 3 pods: median {boot:.2f}s of {fmt(boots)}; 3 bare servers: median {floor:.2f}s of "
              f"{fmt(floors)}; ratio {boot / floor:.2f}x (target <= 1.3x)")
        replicas = 3
        clone_times = {}
        for gib in sizes:
            fill(platform, gib)
            replicas += 1
            seconds, size = timed_clone(state, platform, replicas)
            raw = raw_copy(platform.layout.pod("mysql-1").pv / "data", work)
            clone_times[gib] = seconds
            print(f"{gib:g} GiB dataset ({size / 2**30:.2f} GiB data dir): clone {seconds:.1f}s "
                  f"({size / 2**20 / seconds:.0f} MiB/s); raw tar over loopback {raw:.1f}s "
                  f"({size / 2**20 / raw:.0f} MiB/s); throughput ratio {raw / seconds:.2f}x (target >= 0.8x)")
        if len(sizes) > 1:
            lo, hi = min(sizes), max(sizes)
            print(f"clone time {hi:g} GiB / {lo:g} GiB: {clone_times[hi] / clone_times[lo]:.2f} "
                  f"(linear would be {hi / lo:.2f}; target <= {hi / lo * 1.1:.2f})")
    finally:
        if platform.exists():
            cli(state, "destroy", "--delete-data")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
