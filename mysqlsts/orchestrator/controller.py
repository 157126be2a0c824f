"""Automatic failover: every check interval, observe every node and let
mysqlsts.decisions.failover say whether the primary is lost. One line per
decision, with its reason; after a failover, further ones are blocked for a
while so a flapping node cannot bounce the primary around."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from mysqlsts.errors import OperationFailed
from mysqlsts.orchestrator.cluster import Cluster
from mysqlsts.orchestrator.failover import Roles


def log(event: str, **fields: Any) -> None:
    """One JSON line per decision on stdout: greppable, and parseable by log pipelines."""
    record = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event, **fields}
    print(json.dumps(record, default=str), flush=True)


class Controller:
    def __init__(self, cluster: Cluster, interval: float, block_seconds: float, auto_reclone: bool):
        self.cluster = cluster
        self.roles = Roles(cluster, probe_timeout=max(0.2, min(1.0, interval)))
        self.interval = interval
        self.block_seconds = block_seconds
        self.auto_reclone = auto_reclone
        self.blocked_until = 0.0
        self.last_reason = ""
        self.stopping = False

    def run(self) -> None:
        platform = self.cluster.platform
        with platform.leadership() as renew:
            log("leading", cluster=platform.name, interval=self.interval, block_seconds=self.block_seconds)
            while not self.stopping:
                began = time.monotonic()
                renew()
                try:
                    self.tick()
                except OperationFailed as e:
                    log("error", reason="; ".join(e.problems))
                time.sleep(max(0.0, self.interval - (time.monotonic() - began)))
        log("stopped", cluster=platform.name)

    def tick(self) -> None:
        views, nodes = self.roles.look()
        platform = self.cluster.platform
        writable = [n.name for n in nodes if n.reachable and n.writable]
        recorded = platform.recorded_primary()
        if len(writable) > 1:
            self.fence_extra(writable, recorded)
            return
        for name in [n.name for n in nodes if n.diverged and not n.quarantined]:
            log("quarantining", pod=name, reason="its source refuses its GTID position (error 1236): errant")
            self.roles.quarantine_diverged(wait=0)
        verdict = self.roles.lost(nodes)
        if not verdict.act:
            if verdict.reason != self.last_reason and not writable:
                log("waiting", reason=verdict.reason)
            self.last_reason = verdict.reason if not writable else ""
            if self.auto_reclone:
                self.reclone_quarantined(views)
            return
        now = time.monotonic()
        if now < self.blocked_until:
            if self.last_reason != "blocked":
                log("blocked", reason=f"{verdict.reason}; failover blocked for another "
                                      f"{self.blocked_until - now:.0f}s after the last one")
                self.last_reason = "blocked"
            return
        log("failing-over", reason=verdict.reason, primary=recorded)
        try:
            with platform.lock():
                report = self.roles.failover(old=recorded)
        except OperationFailed as e:
            log("failover-refused", reason="; ".join(e.problems))
            self.last_reason = ""
            return
        self.blocked_until = time.monotonic() + self.block_seconds
        self.last_reason = ""
        log("failed-over", **report)

    def fence_extra(self, writable: list[str], recorded: str | None) -> None:
        """Two writable nodes must never last: keep the recorded primary, fence the rest."""
        keep = recorded if recorded in writable else None
        if keep is None:
            log("split-brain", writable=writable, reason="no recorded primary among them; fencing none")
            return
        from mysqlsts.mysql import actions

        for view in self.cluster.observe(self.roles.probe_timeout):
            if view.name in writable and view.name != keep:
                with self.cluster.connect(view.fqdn, timeout=1.0) as conn:
                    actions.fence(conn, self.cluster.flavor, 0)
                log("fenced", pod=view.name, reason=f"writable besides the recorded primary {keep}")

    def reclone_quarantined(self, views) -> None:
        for v in views:
            if v.quarantined:
                log("recloning", pod=v.name, reason="quarantined (errant transactions); controller.autoReclone is on")
                try:
                    with self.cluster.platform.lock():
                        self.cluster.reclone(v.name, timeout=600)
                    log("recloned", pod=v.name)
                except OperationFailed as e:
                    log("reclone-failed", pod=v.name, reason="; ".join(e.problems))


def main_loop(cluster: Cluster) -> int:
    settings = cluster.values["controller"]
    controller = Controller(cluster, float(settings["checkIntervalSeconds"]), float(settings["blockPeriodSeconds"]),
                            bool(settings["autoReclone"]))
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
