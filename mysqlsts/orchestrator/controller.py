"""Automatic failover: every check interval, observe every node and let
mysqlsts.decisions.failover say whether the primary is lost. One line per
decision, with its reason; after a failover, further ones are blocked for a
while so a flapping node cannot bounce the primary around."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mysqlsts.decisions.failover import primary_lost
from mysqlsts.decisions.topology import stale_role_labels
from mysqlsts.errors import OperationFailed
from mysqlsts.mysql import actions
from mysqlsts.orchestrator.cluster import Cluster
from mysqlsts.orchestrator.failover import Roles


def log(event: str, **fields: Any) -> None:
    """One JSON line per decision on stdout: greppable, and parseable by log pipelines."""
    record = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event, **fields}
    print(json.dumps(record, default=str), flush=True)


class Controller:
    def __init__(self, cluster: Cluster, interval: float, block_seconds: float, auto_reclone: bool,
                 log: Callable[..., None] = log):
        self.log = log
        self.cluster = cluster
        self.roles = Roles(cluster, probe_timeout=max(0.2, min(1.0, interval)))
        self.interval = interval
        self.block_seconds = block_seconds
        self.auto_reclone = auto_reclone
        self.blocked_until = 0.0
        self.last_reason = ""
        self.stopping = False
        self.strays: set[str] = set()
        # Touched after every check: the Deployment's probes tell a hung loop by its age.
        self.heartbeat: Path | None = None

    def run(self) -> None:
        platform = self.cluster.platform
        with platform.leadership() as renew:
            self.log("leading", cluster=platform.name, interval=self.interval, block_seconds=self.block_seconds)
            while not self.stopping:
                began = time.monotonic()
                renew()
                try:
                    self.tick()
                except OperationFailed as e:
                    self.log("error", reason="; ".join(e.problems))
                self.beat()
                time.sleep(max(0.0, self.interval - (time.monotonic() - began)))
        self.log("stopped", cluster=platform.name)

    def beat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.touch()

    def tick(self) -> None:
        views, nodes = self.roles.look()
        platform = self.cluster.platform
        writable = [n.name for n in nodes if n.reachable and n.writable]
        recorded = platform.recorded_primary()
        if len(writable) > 1:
            self.fence_extra(views, writable, recorded)
            return
        if any(n.diverged and not n.quarantined for n in nodes):
            for name in self.roles.quarantine_diverged(wait=0, seen=(views, nodes)):
                self.log("quarantining", pod=name, reason="its source refuses its GTID position (error 1236): errant")
        verdict = primary_lost(nodes, recorded)
        if not verdict.act:
            if verdict.reason != self.last_reason and not writable:
                self.log("waiting", reason=verdict.reason)
            self.last_reason = verdict.reason if not writable else ""
            if writable == [recorded]:
                self.rejoin_strays(views, nodes, recorded)
                stale = stale_role_labels(views, recorded)
                if stale:  # a re-created pod carries the template's label: publish again, at once
                    self.log("republishing", pods=stale, primary=recorded, reason="role labels out of date")
                    platform.set_primary(recorded)
            if self.auto_reclone:
                self.reclone_quarantined(views)
            return
        now = time.monotonic()
        if now < self.blocked_until:
            if self.last_reason != "blocked":
                self.log("blocked", reason=f"{verdict.reason}; failover blocked for another "
                                      f"{self.blocked_until - now:.0f}s after the last one")
                self.last_reason = "blocked"
            return
        self.log("failing-over", reason=verdict.reason, primary=recorded)
        try:
            with platform.lock():
                report = self.roles.failover(old=recorded, seen=(views, nodes))
        except OperationFailed as e:
            self.log("failover-refused", reason="; ".join(e.problems))
            self.last_reason = ""
            return
        self.blocked_until = time.monotonic() + self.block_seconds
        self.last_reason = ""
        self.log("failed-over", **report)

    def rejoin_strays(self, views, nodes, primary: str) -> None:
        """A fenced node that follows no one (or someone else) for two checks in a row is pointed at
        the primary, or quarantined when it holds transactions the primary lacks. Its sidecar does the
        same when its server restarts; this catches what that misses."""
        by_name = {n.name: n for n in nodes}
        strays = {n.name for n in nodes if n.reachable and not n.writable and not n.quarantined and not n.diverged
                  and n.source != primary}
        for name in strays & self.strays:
            node, source = by_name[name], by_name[primary]
            view = next(v for v in views if v.name == name)
            if node.executed is not None and source.known is not None and not source.known.contains(node.executed):
                reason = f"holds {node.executed.minus(source.known)} that {primary} lacks"
                self.log("quarantining", pod=name, reason=reason)
                self.cluster.platform.quarantine(name, f"errant transactions: {reason}")
                continue
            self.log("rejoining", pod=name, reason=f"fenced and following {node.source or 'no one'}; "
                                                   f"{primary} is the primary")
            self.roles.repoint(view, next(v for v in views if v.name == primary))
        self.strays = strays

    def fence_extra(self, views, writable: list[str], recorded: str | None) -> None:
        """Two writable nodes must never last: keep the recorded primary, fence the rest."""
        keep = recorded if recorded in writable else None
        if keep is None:
            self.log("split-brain", writable=writable, reason="no recorded primary among them; fencing none")
            return
        for view in views:
            if view.name in writable and view.name != keep:
                with self.roles.sql(view) as conn:
                    actions.fence(conn, self.cluster.flavor, 0)
                self.log("fenced", pod=view.name, reason=f"writable besides the recorded primary {keep}")

    def reclone_quarantined(self, views) -> None:
        for v in views:
            if v.quarantined:
                self.log("recloning", pod=v.name,
                         reason="quarantined (errant transactions); controller.autoReclone is on")
                try:
                    with self.cluster.platform.lock():
                        self.cluster.reclone(v.name, timeout=600)
                    self.log("recloned", pod=v.name)
                except OperationFailed as e:
                    self.log("reclone-failed", pod=v.name, reason="; ".join(e.problems))


def main_loop(cluster: Cluster) -> int:
    settings = cluster.values["controller"]
    controller = Controller(cluster, float(settings["checkIntervalSeconds"]), float(settings["blockPeriodSeconds"]),
                            bool(settings["autoReclone"]))
    if os.environ.get("MYSQLSTS_HEARTBEAT_FILE"):
        controller.heartbeat = Path(os.environ["MYSQLSTS_HEARTBEAT_FILE"])
        controller.beat()  # alive from the start, before the first check
    import signal

    def stop(signum, frame):
        controller.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        controller.run()
    except OperationFailed as e:
        for line in e.problems:
            print(f"mysqlsts controller: {line}", file=sys.stderr)
        return e.exit_code
    return 0
