"""A failover drill: write at a steady rate through the primary name, inject a fault on
the primary, let the controller recover, and measure what users would have lived
through: detection, promotion, RTO, lost acknowledged writes, split-brain, rejoin."""

from __future__ import annotations

import itertools
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pymysql

from mysqlsts.decisions import drill as decide
from mysqlsts.errors import OperationFailed
from mysqlsts.mysql import actions
from mysqlsts.orchestrator.cluster import Cluster
from mysqlsts.orchestrator.controller import Controller
from mysqlsts.orchestrator.failover import Roles
from mysqlsts.output import progress

SCHEMA = "mysqlsts_drill"  # the drill's own schema: user schemas are never touched
FAULTS = ("kill", "hang", "switchover", "isolate")
SIDE_IDS = 1_000_000_000  # the ledger ids of the writer on an isolated primary's side start above this
ISOLATE_HOLD_SECONDS = 3.0  # the partition outlasts the promotion by this much (within 3/4 of the drill)


class Writer(threading.Thread):
    """Writes `rate` rows a second through the primary name (or to `host` from `bind`: the client on an
    isolated primary's side); records every acknowledged one."""

    def __init__(self, cluster: Cluster, run_id: str, rate: float, host: str | None = None,
                 bind: str | None = None, first_id: int = 1):
        super().__init__(daemon=True, name="drill-writer" if host is None else "drill-side-writer")
        self.cluster, self.run_id, self.rate = cluster, run_id, rate
        self.host, self.bind, self.first_id = host, bind, first_id
        self.acks: list[decide.Ack] = []
        self.failed = 0
        self.stop = threading.Event()

    def run(self) -> None:
        conn = None
        name = self.host or self.cluster.platform.primary_fqdn()
        for n in itertools.count(self.first_id):
            if self.stop.is_set():
                break
            due = time.monotonic() + 1.0 / self.rate
            try:
                if conn is None:
                    conn = self.cluster.connect_client(name, timeout=1.0, bind_address=self.bind)
                    with conn.cursor() as cur:
                        cur.execute("SELECT @@GLOBAL.report_host")
                        by = (cur.fetchone()[0] or "").split(".")[0]
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {SCHEMA}.ledger (run_id, id) VALUES (%s, %s)", (self.run_id, n))
                self.acks.append(decide.Ack(n, time.monotonic(), by))
            except pymysql.MySQLError:
                self.failed += 1
                conn = None
            time.sleep(max(0.0, due - time.monotonic()))


class Sampler(threading.Thread):
    """read_only of every pod, every ~20 ms, through their own names. A sweep that found two
    writable nodes re-reads the first: still writable means both were at once."""

    def __init__(self, cluster: Cluster, pods: list[tuple[str, str]]):
        super().__init__(daemon=True, name="drill-sampler")
        self.cluster, self.pods = cluster, pods
        self.samples: list[tuple[float, list[str]]] = []
        self.stop = threading.Event()
        self.conns: dict[str, Any] = {}

    def writable(self, pod: str, fqdn: str) -> bool:
        try:
            if self.conns.get(pod) is None:
                self.conns[pod] = self.cluster.connect(fqdn, timeout=0.3, read_timeout=0.5)
            with self.conns[pod].cursor() as cur:
                cur.execute("SELECT @@GLOBAL.read_only")
                return cur.fetchone()[0] == 0
        except pymysql.MySQLError:
            self.conns[pod] = None
            return False

    def run(self) -> None:
        while not self.stop.is_set():
            found = [p for p, f in self.pods if self.writable(p, f)]
            if len(found) > 1 and not self.writable(found[0], dict(self.pods)[found[0]]):
                found = found[1:]
            self.samples.append((time.monotonic(), found))
            time.sleep(0.02)

    def first_writable_other_than(self, pod: str, since: float) -> float | None:
        return next((t for t, nodes in self.samples if t > since and any(n != pod for n in nodes)), None)


@dataclass
class Drill:
    cluster: Cluster
    fault: str
    rate: float
    duration: float
    events: list[dict[str, Any]] = field(default_factory=list)
    own_controller: bool = False

    def record(self, event: str, **fields: Any) -> None:
        self.events.append({"at": time.monotonic(), "event": event, **fields})
        progress(f"controller: {event} {fields.get('reason', '')}".rstrip())

    def run(self) -> dict[str, Any]:
        cluster, platform = self.cluster, self.cluster.platform
        run_id = uuid.uuid4().hex[:12]
        started_at = datetime.now(UTC)
        views = cluster.observe()
        old = platform.recorded_primary()
        if old is None or not any(v.name == old and v.state is not None and v.state.writable for v in views):
            raise OperationFailed("no writable recorded primary to inject a fault on")
        pods = [(v.name, v.fqdn) for v in views if v.running]
        self.prepare_ledger(run_id)
        writer, sampler = Writer(cluster, run_id, self.rate), Sampler(cluster, pods)
        side = self.side_writer(run_id, next(v for v in views if v.name == old).address)
        controller, controller_thread = self.controller()
        undo = None
        fault_at, fault_epoch = 0.0, 0.0
        rejoined = cut = healed = None
        try:
            writer.start()
            sampler.start()
            if side is not None:
                side.start()
            # A steady state to compare with, then the fault at a random moment of the controller's check
            # cycle: lining the two up would report the best case, not a typical one.
            interval = float(cluster.values["controller"]["checkIntervalSeconds"])
            time.sleep(min(2.0, self.duration / 4) + random.uniform(0, interval))
            progress(f"injecting {self.fault} on the primary {old}")
            fault_at, fault_epoch = time.monotonic(), time.time()
            if self.fault == "switchover":
                # Under the cluster lock, as `mysqlsts switchover` runs: a controller that looks while the
                # old primary is fenced and the new one not yet writable must not fail over meanwhile.
                with platform.lock():
                    Roles(cluster).switchover()
            else:
                undo = platform.inject(old, self.fault)
            if self.fault == "isolate":
                cut = time.monotonic()  # proven: nothing reaches the old primary but its side
                healed = self.hold_partition(old, fault_at, sampler)
                undo()
                undo = None
            rejoined = self.wait_rejoin(old, fault_at, sampler)
            time.sleep(max(0.0, fault_at + self.duration * 0.75 - time.monotonic()))
        except BaseException:  # Ctrl-C, SIGTERM, a failure: undo the fault and leave a primary behind
            if undo is not None:
                undo()
                undo = None
            progress("drill aborted: fault undone, writer stopped; making sure a primary takes writes")
            Roles(cluster).recover()
            raise
        finally:
            if undo is not None:
                undo()
            for w in (writer, side):
                if w is not None:
                    w.stop.set()
            for w in (writer, side):
                if w is not None:
                    w.join(timeout=10)
            sampler.stop.set()
            sampler.join(timeout=10)
            if controller is not None:
                controller.stopping = True
                controller_thread.join(timeout=10)
        return self.report(run_id, started_at, old, (fault_at, fault_epoch), writer, sampler, rejoined, side,
                           (cut, healed) if cut is not None and healed is not None else None)

    def side_writer(self, run_id: str, address: str | None) -> Writer | None:
        """isolate: a client on the primary's side of the partition, writing to it directly from the
        address the cut spares. Semi-sync without fallback must keep the isolated primary from
        acknowledging anything of it that is then lost. None where no client stays on that side."""
        bind = self.cluster.platform.client_side_address() if self.fault == "isolate" else None
        if bind is None or address is None:
            return None
        return Writer(self.cluster, run_id, self.rate, host=address, bind=bind, first_id=SIDE_IDS + 1)

    def hold_partition(self, old: str, fault_at: float, sampler: Sampler) -> float:
        """Keep the old primary cut off until another node took writes and ISOLATE_HOLD_SECONDS more (at
        most 3/4 of the drill, the rest is for the old primary to come back): meanwhile its side keeps
        writing to it. Returns when the cut is lifted."""
        until = fault_at + self.duration * 0.75
        while time.monotonic() < until:
            promoted = sampler.first_writable_other_than(old, fault_at)
            if promoted is not None:
                until = min(until, promoted + ISOLATE_HOLD_SECONDS)
            time.sleep(0.1)
        progress(f"healing the partition of {old}")
        return time.monotonic()

    def controller(self) -> tuple[Controller | None, threading.Thread | None]:
        """The controller recovers from the fault: the cluster's own when one runs, else one for the drill."""
        platform = self.cluster.platform
        try:
            with platform.leadership():
                pass
        except OperationFailed:
            progress("a controller is active for this cluster; it will handle the fault")
            return None, None
        settings = self.cluster.values["controller"]
        controller = Controller(self.cluster, float(settings["checkIntervalSeconds"]), 0.0,
                                bool(settings["autoReclone"]), float(settings["hungAfterSeconds"]), log=self.record)
        thread = threading.Thread(target=controller.run, daemon=True, name="drill-controller")
        thread.start()
        self.own_controller = True
        progress("no controller is active: the drill runs one with the cluster's settings")
        return controller, thread

    def prepare_ledger(self, run_id: str) -> None:
        with self.cluster.connect_client(self.cluster.platform.primary_fqdn()) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {SCHEMA}")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.ledger (run_id CHAR(12) NOT NULL, id BIGINT NOT NULL, "
                        "written_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), PRIMARY KEY (run_id, id))")
            cur.execute(f"DELETE FROM {SCHEMA}.ledger WHERE run_id <> %s", (run_id,))  # only the last run's rows

    def wait_rejoin(self, old: str, fault_at: float, sampler: Sampler) -> float | None:
        """Seconds until the old primary is back as a healthy replica (None: not within the drill)."""
        deadline = fault_at + self.duration
        while time.monotonic() < deadline:
            if sampler.first_writable_other_than(old, fault_at) is not None or self.fault == "switchover":
                pod = next((p for p in self.cluster.platform.pods() if p.name == old), None)
                if pod is not None and pod.ready and self.cluster.platform.recorded_primary() != old:
                    return time.monotonic() - fault_at
            time.sleep(0.25)
        return None

    def report(self, run_id: str, started_at: datetime, old: str, fault: tuple[float, float], writer: Writer,
               sampler: Sampler, rejoined: float | None, side: Writer | None = None,
               partitioned: tuple[float, float] | None = None) -> dict[str, Any]:
        """`fault`: when it was injected, on this process's monotonic clock and as epoch seconds.
        `partitioned`: isolate, from the cut proven to its heal (monotonic)."""
        cluster = self.cluster
        fault_at, fault_epoch = fault
        checks = cluster.verify()
        healthy = all(c.ok for c in checks)
        missing: dict[str, list[int]] = {}
        acks = writer.acks + (side.acks if side is not None else [])
        new = cluster.platform.recorded_primary()
        views = cluster.observe()
        primary_gtid = next((v.state.gtid for v in views if v.name == new and v.state is not None), "")
        for v in views:
            if v.state is None or v.quarantined:
                continue
            present = self.ledger_ids(v, run_id, primary_gtid)
            missing[v.name] = decide.lost(acks, present) if present is not None else []
        lost_ids = sorted({i for ids in missing.values() for i in ids})
        decision = next((e for e in self.events if e["event"] == "failing-over"), None)
        promoted = sampler.first_writable_other_than(old, fault_at)
        rto = decide.rto(writer.acks, fault_at, old)
        split = decide.overlaps(sampler.samples)
        stale = decide.acks_after_handover(acks)
        thresholds = cluster.values["drills"]
        verdict = decide.verdict(rto, len(lost_ids), len(split), healthy, float(thresholds["maxRTOSeconds"]),
                                 int(thresholds["maxLostWrites"]), len(stale))

        def since_fault(t: float | None) -> float | None:
            return None if t is None else round(t - fault_at, 3)

        return {
            "cluster": cluster.platform.name, "target": cluster.platform.target, "run_id": run_id,
            "started_at": started_at.isoformat(timespec="seconds"), "finished_at": round(time.time(), 3),
            "fault": self.fault, "fault_at": round(fault_epoch, 3),
            "old_primary": old, "new_primary": new,
            "detection_seconds": since_fault(decision["at"]) if decision else None,
            "promotion_seconds": since_fault(promoted),
            "rto_seconds": None if rto is None else round(rto, 3),
            "rejoin_seconds": None if rejoined is None else round(rejoined, 3),
            "writes_acknowledged": len(writer.acks), "write_errors": writer.failed,
            "lost_writes": len(lost_ids), "lost_ids": lost_ids[:1000],
            "lost_by_node": {n: ids[:100] for n, ids in missing.items() if ids},
            "split_brain_samples": len(split), "read_only_samples": len(sampler.samples),
            "split_brain_acks": len(stale),
            "partition_healed_seconds": since_fault(partitioned[1]) if partitioned else None,
            "acks_while_isolated": None if partitioned is None else sum(
                1 for a in acks if a.by == old and partitioned[0] < a.at <= partitioned[1]),
            "side_writes_acknowledged": None if side is None else len(side.acks),
            "side_write_errors": None if side is None else side.failed,
            "healthy_after": healthy, "failed_checks": [f"{c.name}: {c.detail}" for c in checks if not c.ok],
            "thresholds": {"maxRTOSeconds": thresholds["maxRTOSeconds"], "maxLostWrites": thresholds["maxLostWrites"]},
            "passed": verdict.passed, "verdict_reasons": verdict.reasons,
            "controller": "the drill's own" if self.own_controller else "the cluster's",
        }

    def ledger_ids(self, view, run_id: str, primary_gtid: str) -> set[int] | None:
        """The ids a node holds, once it applied everything the primary has (or 10 s passed)."""
        try:
            with self.cluster.connect(view.fqdn, timeout=2.0, read_timeout=15) as conn:
                if view.name != self.cluster.platform.recorded_primary():
                    actions.wait_applied(conn, self.cluster.flavor, primary_gtid, 10)
                with conn.cursor() as cur:
                    cur.execute(f"SELECT id FROM {SCHEMA}.ledger WHERE run_id = %s", (run_id,))
                    return {r[0] for r in cur.fetchall()}
        except pymysql.MySQLError as e:
            if e.args and e.args[0] in (1049, 1146):  # no ledger there at all: it holds none of the writes
                return set()
            return None
