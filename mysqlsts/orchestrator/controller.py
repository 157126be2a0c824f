"""The controller: every check interval, observe every node, let mysqlsts.decisions.cluster
name the cluster's state and the one action it needs, and do that action. One JSON line per
action or change of reason; after a failover, further ones are blocked for a while so a
flapping node cannot bounce the primary around."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mysqlsts.decisions.cluster import Action, Decision, Memory, State, decide
from mysqlsts.decisions.failover import Node
from mysqlsts.decisions.lag import Sample, catch_up, remember
from mysqlsts.decisions.topology import PodView, stale_role_labels
from mysqlsts.errors import OperationFailed
from mysqlsts.model import ServerError
from mysqlsts.orchestrator.cluster import Cluster
from mysqlsts.orchestrator.failover import Roles

# A look's bound on each server: short, because a look that times out on the primary is what starts
# (and, repeated back to back, measures) the silence that tells a hung primary from a slow one.
PROBE_SECONDS = 0.1


def log(event: str, **fields: Any) -> None:
    """One JSON line per decision on stdout: greppable, and parseable by log pipelines."""
    record = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event, **fields}
    print(json.dumps(record, default=str), flush=True)


class Controller:
    def __init__(self, cluster: Cluster, interval: float, block_seconds: float, auto_reclone: bool,
                 hung_after: float, log: Callable[..., None] = log):
        self.log = log
        self.cluster = cluster
        self.roles = Roles(cluster, probe_timeout=PROBE_SECONDS)
        self.interval = interval
        self.block_seconds = block_seconds
        self.auto_reclone = auto_reclone
        self.hung_after = hung_after
        self.blocked_until = 0.0
        self.last_reason = ""
        self.stopping = False
        self.strays: frozenset[str] = frozenset()
        self.silent_since: float | None = None  # when the unbroken run of looks the primary timed out on began
        self.hurry = False  # the primary is silent: look again at once, the silence is being measured
        self.applied: dict[str, tuple[Sample, ...]] = {}  # each node's applied count over the last looks
        # Touched after every check: the Deployment's probes tell a hung loop by its age.
        self.heartbeat: Path | None = None

    def run(self) -> None:
        platform = self.cluster.platform
        with platform.leadership() as still_leading:
            self.log("leading", cluster=platform.name, interval=self.interval, block_seconds=self.block_seconds)
            while not self.stopping:
                began = time.monotonic()
                still_leading()  # a controller that lost the lead acts no more: the new leader does
                try:
                    self.tick()
                except OperationFailed as e:
                    self.log("error", reason="; ".join(e.problems))
                except ServerError as e:  # a node that went away under an action: look again
                    self.log("error", reason=str(e))
                self.beat()
                if not self.hurry:
                    time.sleep(max(0.0, self.interval - (time.monotonic() - began)))
        self.log("stopped", cluster=platform.name)

    def beat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.touch()

    def tick(self) -> None:
        """Observe, decide, act: one action per check, then look again."""
        began = time.monotonic()
        views, nodes = self.roles.look()
        self.applied = {n.name: remember(self.applied.get(n.name, ()), Sample(began, n.executed.count()))
                        for n in nodes if n.executed is not None}
        platform = self.cluster.platform
        recorded = platform.recorded_primary()
        primary = next((n for n in nodes if n.name == recorded), None)
        timing_out = primary is not None and primary.timed_out
        self.silent_since = (self.silent_since or began) if timing_out else None
        silent_for = time.monotonic() - self.silent_since if self.silent_since is not None else 0.0
        memory = Memory(self.strays, max(0.0, self.blocked_until - time.monotonic()), silent_for)
        decision = decide(nodes, recorded, memory, tuple(stale_role_labels(views, recorded)), self.auto_reclone,
                          self.hung_after)
        self.strays = decision.strays
        self.hurry = decision.state is State.PRIMARY_SILENT
        self.act(decision, views, nodes, recorded)

    def act(self, decision: Decision, views: list[PodView], nodes: list[Node], recorded: str | None) -> None:
        platform = self.cluster.platform
        action, pod, reason = decision.action, decision.pod, decision.reason
        if action in (Action.NONE, Action.WAIT, Action.BLOCKED):
            said = f"{action.value}: {reason}"
            if action is not Action.NONE and said != self.last_reason:
                event = {Action.WAIT: "split-brain" if decision.state is State.SPLIT_BRAIN else "waiting",
                         Action.BLOCKED: "blocked"}[action]
                self.log(event, state=decision.state.value, reason=reason)
            self.last_reason = said if action is not Action.NONE else ""
            return
        if action is not Action.RECORD:  # it says why it could not, once
            self.last_reason = ""
        view = next((v for v in views if v.name == pod), None)
        if action is Action.FENCE:
            with self.roles.server(view) as server:
                server.fence(0)
            self.log("fenced", pod=pod, reason=reason)
        elif action is Action.QUARANTINE:
            self.log("quarantining", pod=pod, reason=reason)
            if view is not None and view.state is not None and view.state.source_host:
                with self.roles.server(view) as server:
                    server.stop_replicating()
            platform.quarantine(pod, f"errant transactions: {reason}")
        elif action is Action.REJOIN:
            self.log("rejoining", pod=pod, reason=reason)
            self.roles.repoint(view, next(v for v in views if v.name == decision.source))
        elif action is Action.PUBLISH:
            self.log("republishing", pods=stale_role_labels(views, recorded), primary=recorded, reason=reason)
            platform.set_primary(recorded)
        elif action is Action.RECLONE:
            self.log("recloning", pod=pod, reason=reason)
            try:
                with platform.lock():
                    self.cluster.reclone(pod, timeout=600)
                self.log("recloned", pod=pod)
            except OperationFailed as e:
                self.log("reclone-failed", pod=pod, reason="; ".join(e.problems))
        elif action is Action.RECORD:
            self.record(pod, reason)
        elif action is Action.FAILOVER:
            self.fail_over(reason, recorded, views, nodes)

    def record(self, pod: str, reason: str) -> None:
        """Under the lock, so never in the middle of a command that is moving the primary; looked at
        again there, since that command may have finished (and recorded) meanwhile."""
        try:
            with self.cluster.platform.lock():
                _, nodes = self.roles.look()
                if [n.name for n in nodes if n.reachable and n.writable] == [pod]:
                    self.log("recording", pod=pod, reason=reason)
                    self.cluster.platform.set_primary(pod)
        except OperationFailed as e:  # a command holds the lock: it records the primary itself
            said = f"record: {e.problems[0]}"
            if said != self.last_reason:
                self.log("waiting", state="unrecorded-primary", reason=e.problems[0])
            self.last_reason = said

    def fail_over(self, reason: str, recorded: str | None, views: list[PodView], nodes: list[Node]) -> None:
        # What the candidates still have to apply, and how long that should take at their recent pace:
        # under write load that, not detection, sets the outage.
        self.log("failing-over", reason=reason, primary=recorded, catch_up=catch_up(nodes, self.applied))
        try:
            with self.cluster.platform.lock():
                report = self.roles.failover(old=recorded, seen=(views, nodes))
        except OperationFailed as e:
            self.log("failover-refused", reason="; ".join(e.problems))
            return
        self.blocked_until = time.monotonic() + self.block_seconds
        self.log("failed-over", **report)


def main_loop(cluster: Cluster) -> int:
    settings = cluster.values["controller"]
    controller = Controller(cluster, float(settings["checkIntervalSeconds"]), float(settings["blockPeriodSeconds"]),
                            bool(settings["autoReclone"]), float(settings["hungAfterSeconds"]))
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
