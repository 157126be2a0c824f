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
   primary at the end;
5. after each kill, what became of the old primary: rejoined the new primary with its own
   data (its crash recovery cut any unacknowledged tail), or quarantined and re-cloned
   (the controller runs with autoReclone), and how long from the kill until it replicated
   again. The ledger writer has a commit in flight almost always; --writers adds more, each
   as fast as it can (with MariaDB's serial applier, 4 more left the replicas a minute
   behind: issue 15).

--flavor mysql,mariadb benchmarks each flavor in turn, in one run, with the same settings.

    sudo .venv/bin/python bench/failover.py --flavor mysql,mariadb --kills 20 --hangs 10 --stalls 5 --switchovers 10

Only loopback addresses are used; the cluster is destroyed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time

from benchlib import (
    Fate,
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


def resume(pids: list[int]) -> None:
    """A stopped server the controller did not kill must not stay stopped."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=30, help="kill -9 of the primary (default 30)")
    parser.add_argument("--writers", type=int, default=0,
                        help="writers beside the ledger, each as fast as it can (default 0: the ledger alone)")
    parser.add_argument("--hangs", type=int, default=10, help="SIGSTOP of the primary until failed over (default 10)")
    parser.add_argument("--stalls", type=int, default=5, help="short SIGSTOPs that must not fail over (default 5)")
    parser.add_argument("--stall", type=float, default=1.0, help="seconds a short stall lasts (default 1)")
    parser.add_argument("--switchovers", type=int, default=10, help="switchovers (default 10)")
    add_flavor_option(parser)
    each_flavor(parser.parse_args(), run)


def run(flavor: str, args: argparse.Namespace) -> list[str]:
    """One flavor's benchmark; returns its result lines (printed once every flavor ran)."""
    out: list[str] = []
    stopped: list[int] = []
    loads = [f"bench.load{n}" for n in range(args.writers)]
    with bench_cluster("failover", tables=["bench.ledger", *loads], flavor=flavor) as bench, \
            contextlib.ExitStack() as cleanup:
        cleanup.callback(resume, stopped)
        state, platform, password = bench.state, bench.platform, bench.password
        writer = Writer(password)
        writers = [writer, *(Writer(password, table) for table in loads)]
        for w in writers:
            w.start()
        outages: dict[str, list[float]] = {"kill": [], "hang": []}
        fates: list[Fate] = []
        for fault, runs in (("kill", args.kills), ("hang", args.hangs)):
            for _ in range(runs):
                healthy(state)
                time.sleep(1.0)
                old = primary(state)
                pid = server_pid(state, old)
                inode, cuts = (platform.layout.pod(old).pv / "data").stat().st_ino, tails_cut(platform, old)
                fault_at = time.monotonic()
                if fault == "kill":
                    os.kill(pid, signal.SIGKILL)
                else:
                    stopped.append(pid)
                    os.kill(pid, signal.SIGSTOP)  # the controller kills it once it counts as hung
                outages[fault].append(writer.outage(fault_at, old))
                if fault == "kill":
                    fates.append(fate(platform, password, old, fault_at, inode, cuts))
                    f = fates[-1]
                    print(f"{flavor} kill {len(fates)}: outage {outages[fault][-1]:.2f}s; {old} "
                          f"{'rejoined' if f.rejoined else 're-cloned'} {f.seconds:.1f}s after the kill"
                          f"{', its tail cut' if f.tail_cut else ''}", file=sys.stderr, flush=True)
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
        switch_tool, switch_gap = switchovers(state, writer, args.switchovers, settle=0.5)
        for w in writers:
            w.stop.set()
            w.join()
        healthy(state)
        lost = lost_writes(writers, password)
        out.append(f"RTO, kill -9 of the primary (outage the writer saw): {fmt(outages['kill'])} "
                   "(target median <= 0.5 s, max <= 1.5 s)")
        out.append(f"RTO, hung primary (SIGSTOP): {fmt(outages['hang'])} (target median <= 2 s)")
        out.append(f"{args.stall:g}s stalls of the primary: {stalls} of {args.stalls} failed over (target 0); "
                   f"longest write gap around them: {fmt(stall_gaps)}")
        out.append(f"switchover write unavailability, measured by mysqlsts: {fmt(switch_tool)} (target median <= 1 s)")
        out.append(f"switchover, longest gap between the writer's acknowledged writes: {fmt(switch_gap)}")
        rejoined = [f.seconds for f in fates if f.rejoined]
        recloned = [f.seconds for f in fates if not f.rejoined]
        out.append(f"old primaries after a kill: {len(rejoined)} of {len(fates)} rejoined with their own data, "
                   f"{len(recloned)} quarantined and re-cloned ("
                   + ("target: all rejoin" if flavor == "mariadb" else "MySQL cuts no unacknowledged tail: "
                      "a primary killed with one holds it alone and is re-cloned") + "); "
                   f"{sum(f.tail_cut for f in fates)} had an unacknowledged tail cut by crash recovery")
        out.append(f"  kill to replicating again, rejoined: {fmt(rejoined)}")
        out.append(f"  kill to replicating again, re-cloned: {fmt(recloned)}")
        acked = sum(len(w.acked) for w in writers)
        out.append(f"acknowledged writes ({len(writers)} writers): {acked}; lost: {len(lost)} (target 0)"
                   + (f"; lost ids: {lost[:20]}" if lost else ""))
    return out


if __name__ == "__main__":
    main()
