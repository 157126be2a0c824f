"""Benchmark failover under sustained write load on the local runtime (3 pods, the controller).

--connections writers insert small rows with autocommit as fast as they can, beside a ledger writer
through the primary name, and a sampler reads every replica's apply lag twice a second: seconds
behind, and transactions received but not applied (the received GTID position against the executed
one). Then, under that load:

1. --kills kill -9 of the primary: the outage the ledger writer saw (the drill's RTO), how many
   transactions the candidate still had to apply and how long it spent on them (the controller's
   failover report), and what became of the old primary (rejoined with its data, or re-cloned);
2. --switchovers switchovers: mysqlsts' write-unavailable window and the ledger writer's longest gap;
3. acknowledged writes lost, over every writer.

    sudo .venv/bin/python bench/load.py --flavor mysql,mariadb --connections 8 --kills 10 --switchovers 5 \
        [--set KEY=VALUE ...]

--flavor mysql,mariadb benchmarks each flavor in turn, in one run. --set passes chart values to the
bootstrap (e.g. mysql.applierThreads=1 for a serial applier), so settings are compared by running the
benchmark once per setting. Loopback addresses only; the cluster is destroyed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import threading
import time

import pymysql
from benchlib import (
    Writer,
    add_flavor_option,
    bench_cluster,
    each_flavor,
    fate,
    fmt,
    healthy,
    lost_writes,
    primary,
    server_pid,
    switchovers,
    tails_cut,
)

from mysqlsts import flavors
from mysqlsts.decisions.lag import unapplied
from mysqlsts.flavors import Flavor
from mysqlsts.mysql.observe import observe

PODS = ("mysql-0", "mysql-1", "mysql-2")


class LagSampler(threading.Thread):
    """Every replica's apply lag, twice a second: (time, pod, seconds behind, transactions behind)."""

    def __init__(self, password: str, flavor: Flavor):
        super().__init__(daemon=True)
        self.password, self.flavor = password, flavor
        self.samples: list[tuple[float, str, int | None, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            for pod in PODS:
                with_lag = self.look(pod)
                if with_lag is not None:
                    self.samples.append((time.monotonic(), pod, *with_lag))

    def look(self, pod: str) -> tuple[int | None, int] | None:
        """(seconds behind, transactions received but not applied) as status reads them; None for the
        primary, a pod that does not answer, or unreadable GTIDs."""
        try:
            with pymysql.connect(host=f"{pod}.mysql.default.svc.cluster.local", user="root", password=self.password,
                                 connect_timeout=0.5, read_timeout=1) as conn:
                state = observe(conn, self.flavor)
        except pymysql.MySQLError:
            return None
        pending = unapplied(state, self.flavor)
        return None if pending is None else (state.lag, pending)

    def between(self, since: float, until: float) -> list[tuple[float, str, int | None, int]]:
        return [s for s in self.samples if since <= s[0] <= until]


def series(writers: list[Writer], sampler: LagSampler, began: float, until: float, every: float) -> list[str]:
    """Throughput and each replica's apply lag over the run, window by window: acknowledged writes/s, and
    per pod the most transactions and seconds behind seen in the window ("-": no replica sample then, as
    when it was the primary or down)."""
    rows = [f"{'s':>5} {'writes/s':>8}  " + "  ".join(f"{pod + ' behind (tx, s)':>24}" for pod in PODS)]
    start = began
    while start < until:
        end = min(start + every, until)
        acked = sum(1 for w in writers for _, at, _ in w.acked if start <= at < end)
        cells = []
        for pod in PODS:
            mine = [x for x in sampler.between(start, end) if x[1] == pod]
            seconds = [x[2] for x in mine if x[2] is not None]
            cells.append(f"{max(x[3] for x in mine)}, {max(seconds) if seconds else '-'}" if mine else "-")
        rows.append(f"{start - began:5.0f} {acked / (end - start):8.0f}  " + "  ".join(f"{c:>24}" for c in cells))
        start = end
    return rows


def failover_report(state, after: int) -> dict | None:
    """The controller's report of the failover logged after its first `after` lines."""
    lines = (state / "mysql" / "controller.log").read_text().splitlines()[after:]
    events = [json.loads(line) for line in lines if line.startswith("{")]
    return next((e for e in reversed(events) if e["event"] == "failed-over"), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=8, help="writers at full speed (default 8)")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds of load before the first kill")
    parser.add_argument("--kills", type=int, default=10, help="kill -9 of the primary under load (default 10)")
    parser.add_argument("--switchovers", type=int, default=5, help="switchovers under load (default 5)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="chart values")
    parser.add_argument("--every", type=float, default=5.0, help="seconds per row of the lag series (default 5)")
    add_flavor_option(parser)
    each_flavor(parser.parse_args(), run)


def run(flavor: str, args: argparse.Namespace) -> list[str]:
    """One flavor's benchmark; returns its result lines (printed once every flavor ran)."""
    out: list[str] = []
    loads = [f"bench.load{n}" for n in range(args.connections)]
    with bench_cluster("load", *args.set, tables=["bench.ledger", *loads], flavor=flavor) as bench:
        state, platform, password = bench.state, bench.platform, bench.password
        ledger = Writer(password)
        writers = [ledger, *(Writer(password, table) for table in loads)]
        sampler = LagSampler(password, flavors.get(flavor))
        for thread in (*writers, sampler):
            thread.start()
        began = time.monotonic()
        time.sleep(args.warmup)
        warm = time.monotonic()
        rate = sum(1 for w in writers for _, at, _ in w.acked if began + 5 <= at <= warm) / (warm - began - 5)
        outages, applied, applying, fates = [], [], [], []
        for _ in range(args.kills):
            healthy(state)
            time.sleep(3.0)  # load again after the last failover: the appliers fall behind as they would
            old = primary(state)
            inode, cuts = (platform.layout.pod(old).pv / "data").stat().st_ino, tails_cut(platform, old)
            seen = len((state / "mysql" / "controller.log").read_text().splitlines())
            fault_at = time.monotonic()
            os.kill(server_pid(state, old), signal.SIGKILL)
            outages.append(ledger.outage(fault_at, old))
            fates.append(fate(platform, password, old, fault_at, inode, cuts))
            report = failover_report(state, seen) or {}
            applied.append(float((report.get("applied") or {}).get("transactions") or 0))
            applying.append(float((report.get("applied") or {}).get("seconds") or 0))
        switch_tool, switch_gap = switchovers(state, ledger, args.switchovers, settle=3.0)
        ended = time.monotonic()
        for thread in (*writers, sampler):
            thread.stop.set()
            thread.join()
        healthy(state, timeout=900)  # a serial applier far behind takes minutes to catch up
        lost = lost_writes(writers, password)

        out.append(f"settings: {', '.join(args.set) or 'chart defaults'}; {args.connections} connections "
                   "+ a ledger writer")
        out.append(f"write throughput before the first kill: {rate:.0f} acknowledged writes/s")
        warm_lag = sampler.between(began + 5, warm)
        for pod in PODS:
            mine = [s for s in warm_lag if s[1] == pod]
            if mine:
                seconds = [s[2] for s in mine if s[2] is not None]
                behind = [s[3] for s in mine]
                out.append(f"  {pod} apply lag under load: seconds behind median {statistics.median(seconds or [0])}, "
                           f"max {max(seconds or [0])}; transactions behind median {statistics.median(behind):.0f}, "
                           f"max {max(behind)} ({len(mine)} samples)")
        out.append(f"RTO under load, kill -9 of the primary (the ledger writer's outage): {fmt(outages)} "
                   "(target median <= 2 s, max <= 5 s)")
        out.append(f"  transactions the candidate had to apply: "
                   f"{', '.join(f'{x:.0f}' for x in applied) or 'none'}")
        out.append(f"  seconds it spent applying them: {fmt(applying)}")
        rejoined = [f.seconds for f in fates if f.rejoined]
        out.append(f"  old primaries: {len(rejoined)} of {len(fates)} rejoined with their own data, "
                   f"{len(fates) - len(rejoined)} re-cloned; {sum(f.tail_cut for f in fates)} had a tail cut")
        out.append(f"switchover under load, mysqlsts' window: {fmt(switch_tool)} (target median <= 1 s)")
        out.append(f"switchover under load, the ledger writer's longest gap: {fmt(switch_gap)}")
        acked = sum(len(w.acked) for w in writers)
        out.append(f"acknowledged writes: {acked}; lost: {len(lost)} (target 0)"
                   + (f"; e.g. {lost[:10]}" if lost else ""))
        out.append(f"over time, every {args.every:g} s from the start of the load (kills from {warm - began:.0f} s):")
        out += ["  " + row for row in series(writers, sampler, began, ended, args.every)]
    return out


if __name__ == "__main__":
    main()
