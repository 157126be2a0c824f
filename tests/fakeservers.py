"""An in-memory fake of a cluster's servers and platform, faithful enough that `Roles` and
`Controller` run unchanged against it (through `mysqlsts.mysql.server.Servers` and the
`Platform` protocol), on a fake clock: nothing here ever really sleeps.

What is modelled, for both flavors:
- transactions (`Txn`): named by their origin (MySQL server_uuid, MariaDB server_id) and a
  sequence number; a server's GTIDs are rendered in its flavor's notation (MySQL: a uuid set,
  MariaDB: `domain-server-seq` positions, the last per domain);
- replication: a replica with its receiver on pulls what its source has into its relay log
  (`retrieved`), its applier moves the relay log into what it executed; a relay log is dropped
  by CHANGE SOURCE and RESET REPLICA ALL, as the servers do;
- the source's GTID check at connect: error 1236 when the replica holds transactions the source
  contradicts (MySQL: the source's own uuid beyond what it has; MariaDB: a position not in the
  source's history); MariaDB's gtid_strict_mode stops the applier on an out-of-order sequence;
- semi-sync without fallback: a commit is acknowledged only when a semi-sync replica received it;
- server states: up, dead (connect refused), hung (connect and statements time out, advancing
  the fake clock by the timeout), partitioned (the orchestrator cannot reach it, its replicas can);
- an ordered event log of every operation, and an invariant check after each: a server made
  writable while another is writable is recorded in `violations` (never raised).
"""

from __future__ import annotations

import threading
import time as real_time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import tenacity
import tenacity.nap

from mysqlsts import flavors
from mysqlsts.chart import values as chart_values
from mysqlsts.decisions import gtid
from mysqlsts.decisions.topology import published_role
from mysqlsts.errors import OperationFailed
from mysqlsts.model import ServerError, ServerState
from mysqlsts.orchestrator import cluster as cluster_module
from mysqlsts.orchestrator import controller as controller_module
from mysqlsts.orchestrator import failover as failover_module
from mysqlsts.platform.base import PodInfo

DOMAIN = 0
CONNECT_REFUSED = 2003
LOST_CONNECTION = 2013
READ_ONLY_ERROR = 1290


class Crash(BaseException):
    """The orchestrating process dies at this point (a BaseException: nothing in the code catches it)."""


class FakeClock:
    """time.monotonic and time.sleep for the code under test: sleeping only moves the clock."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += max(0.0, float(seconds))

    advance = sleep

    def module(self) -> types.SimpleNamespace:
        return types.SimpleNamespace(monotonic=self.monotonic, sleep=self.sleep, time=real_time.time,
                                     time_ns=real_time.time_ns, perf_counter=real_time.perf_counter)


@dataclass(frozen=True)
class Txn:
    origin: str  # server_uuid (MySQL) / server_id (MariaDB) of the server that committed it first
    seq: int  # MySQL: the number within its uuid; MariaDB: the sequence number within its domain
    domain: int = DOMAIN


@dataclass(frozen=True)
class Event:
    kind: str
    pod: str | None = None
    detail: Any = None


@dataclass(frozen=True)
class Violation:
    after: Event
    writable: tuple[str, ...]


@dataclass
class FakeServer:
    name: str
    ordinal: int
    fqdn: str
    origin: str
    status: str = "up"  # up | dead | hung | partitioned
    running: bool = True  # the pod (its server may still be dead: the platform restarts it)
    has_data: bool = True
    read_only: bool = True
    applied: list[Txn] = field(default_factory=list)
    relay: list[Txn] = field(default_factory=list)  # received, not applied yet
    received: list[Txn] = field(default_factory=list)  # everything received on the current channel
    source: str | None = None  # fqdn of its source
    io_on: bool = False  # receiver started
    sql_on: bool = False  # applier started
    connected: bool = False  # the receiver holds a connection to its source
    io_errno: int = 0
    last_error: str = ""
    semi_source: bool = False
    waits_alone: bool = True  # semi-sync holds a commit while no replica is connected
    semi_replica: bool = False
    lag_seconds: int = 5  # Seconds_Behind_Source while it has a relay log to apply
    apply_seconds: float = 0.0  # how long applying its relay log takes when waited for
    auto_receive: bool = True
    auto_apply: bool = True
    open_writers: list[int] = field(default_factory=list)  # client connections inside a write
    quarantined: bool = False
    role_label: str | None = None


def address_of(s: FakeServer) -> str:
    return f"10.0.0.{s.ordinal + 10}"


class World:
    """The servers, the platform and the seam of one fake cluster, behind one lock."""

    def __init__(self, flavor: str = "mysql", replicas: int = 3, name: str = "mysql", namespace: str = "fake",
                 sets: tuple[str, ...] = (), labels: bool = False):
        self.flavor = flavors.get(flavor)
        self.values = chart_values.load([], [f"flavor={flavor}", f"replicas={replicas}", *sets])
        self.name = name
        self.namespace = namespace
        self.clock = FakeClock()
        self.lock = threading.RLock()
        # pod -> until when (fake clock) its per-pod name does not resolve yet: a pod re-created a moment
        # ago, whose name one cluster DNS replica still has cached as absent
        self.unresolved: dict[str, float] = {}
        self.events: list[Event] = []
        self.violations: list[Violation] = []
        self.acked: list[Txn] = []  # commits a client got OK for
        self.unacked: list[Txn] = []  # committed on a primary, never acknowledged
        self.hooks: list[tuple[str, str | None, Callable[[World], None]]] = []
        offset = self.values["mysql"]["serverIdOffset"]
        self.servers: dict[str, FakeServer] = {}
        for i in range(replicas):
            pod = f"{name}-{i}"
            origin = (f"3e11fa47-71ca-11e1-9e33-c80aa9429{i:03d}" if self.flavor.name == "mysql"
                      else str(offset + i))
            self.servers[pod] = FakeServer(pod, i, f"{pod}.{name}.{namespace}.svc.cluster.local", origin)
        self.platform = FakePlatform(self, labels)
        self.seam = FakeServers(self)
        semi = bool(self.values["mysql"]["semiSync"]["enabled"]) and replicas > 1
        first = self.servers[f"{name}-0"]
        first.read_only, first.semi_source = False, semi
        for s in self.servers.values():
            if s is not first:
                s.source, s.io_on, s.sql_on, s.semi_replica = first.fqdn, True, True, semi
        self.platform.primary = first.name
        self.platform.relabel()
        self._pump()
        self._writable = self.writable()

    # -- what tests look at -----------------------------------------------------------------

    def __getitem__(self, pod: str) -> FakeServer:
        return self.servers[pod]

    def writable(self) -> set[str]:
        """Servers that take writes now, or would once they answer again (a hung one)."""
        return {s.name for s in self.servers.values() if s.status != "dead" and not s.read_only}

    def gtids(self, txns: list[Txn]) -> str:
        if self.flavor.gtid_notation == "set":
            by: dict[str, list[tuple[int, int]]] = {}
            for t in txns:
                by.setdefault(t.origin, []).append((t.seq, t.seq))
            return str(gtid.MysqlGtidSet({u: gtid._merge(iv) for u, iv in by.items()}))
        last: dict[int, tuple[int, int]] = {}
        for t in txns:
            last[t.domain] = (int(t.origin), t.seq)
        return str(gtid.MariadbGtidPos(last))

    def executed(self, pod: str) -> str:
        return self.gtids(self.servers[pod].applied)

    def has(self, pod: str, txns: list[Txn]) -> bool:
        return set(txns) <= set(self.servers[pod].applied)

    def lost(self, pod: str) -> list[Txn]:
        """Acknowledged commits the node does not hold."""
        return [t for t in self.acked if t not in set(self.servers[pod].applied)]

    def source_of(self, pod: str) -> str | None:
        s = self.servers[pod].source
        return s.split(".", 1)[0] if s else None

    def mark(self) -> int:
        return len(self.events)

    def kinds(self, since: int = 0) -> list[tuple[str, str | None]]:
        return [(e.kind, e.pod) for e in self.events[since:]]

    def index(self, kind: str, pod: str | None = None, since: int = 0) -> int:
        """Where the first such event is; AssertionError when it never happened."""
        for i, e in enumerate(self.events[since:], since):
            if e.kind == kind and (pod is None or e.pod == pod):
                return i
        raise AssertionError(f"no event {kind} {pod or ''} in {self.kinds(since)}")

    def happened(self, kind: str, pod: str | None = None, since: int = 0) -> bool:
        return any(e.kind == kind and (pod is None or e.pod == pod) for e in self.events[since:])

    def was_writable(self, pod: str, since: int = 0) -> bool:
        """Did anything make `pod` writable after event `since`?"""
        return any(e.kind == "writable" and pod in e.detail for e in self.events[since:])

    # -- what tests do ------------------------------------------------------------------------

    def before(self, kind: str, pod: str | None, fn: Callable[[World], None], times: int = 1) -> None:
        """Run fn just before the next `times` operations `kind` on `pod` (None: any pod)."""
        for _ in range(times):
            self.hooks.append((kind, pod, fn))

    def crash_before(self, kind: str, pod: str | None = None) -> None:
        def crash(world: World) -> None:
            raise Crash(f"crashed before {kind} {pod or ''}")

        self.before(kind, pod, crash)

    def commit(self, pod: str | None = None, n: int = 1) -> list[Txn]:
        """n client commits through `pod` (default: the recorded primary); refused when fenced or down."""
        pod = pod or self.platform.primary
        out = []
        for _ in range(n):
            with self.lock:
                s = self.servers[pod]
                if s.status not in ("up", "partitioned") or not s.running:
                    raise ServerError(s.fqdn, "Can't connect to MySQL server", CONNECT_REFUSED)
                if s.read_only:
                    raise ServerError(s.fqdn, "The server is running with read-only; it cannot execute this "
                                      "statement", READ_ONLY_ERROR)
                out.append(self._commit(s, "commit"))
        return out

    def errant_write(self, pod: str) -> Txn:
        """A write straight on a node, through its fence (an account with SUPER): never acknowledged."""
        with self.lock:
            s = self.servers[pod]
            t = self._new_txn(s)
            s.applied.append(t)
            self.unacked.append(t)
            self._settle(Event("errant-write", pod, t))
            return t

    def kill(self, pod: str) -> None:
        with self.lock:
            self.servers[pod].status = "dead"
            self.servers[pod].open_writers.clear()
            self._settle(Event("killed", pod))

    def hang(self, pod: str) -> None:
        with self.lock:
            self.servers[pod].status = "hung"
            self._settle(Event("hung", pod))

    def resume(self, pod: str) -> None:
        """A hung server goes on (SIGCONT): a stall, not a crash."""
        with self.lock:
            self.servers[pod].status = "up"
            self._settle(Event("resumed", pod))

    def partition(self, pod: str) -> None:
        """The orchestrator cannot reach it; its replicas still can."""
        with self.lock:
            self.servers[pod].status = "partitioned"
            self._settle(Event("partitioned", pod))

    def restart(self, pod: str, recreated: bool = False) -> None:
        """The server starts again: fenced, as every server boots; a configured replica starts replicating.
        `recreated`: a new pod, with the template's role label."""
        with self.lock:
            s = self.servers[pod]
            s.status, s.running, s.read_only, s.connected = "up", True, True, False
            if s.source:
                s.io_on = s.sql_on = True
            if recreated and self.platform.labels:
                s.role_label = "replica"
            self._settle(Event("restarted", pod))

    def stop_pod(self, pod: str) -> None:
        with self.lock:
            s = self.servers[pod]
            s.status, s.running, s.connected = "dead", False, False
            self._settle(Event("pod-stopped", pod))

    def detach(self, pod: str) -> None:
        """The node stops replicating and forgets its source (a stray)."""
        with self.lock:
            s = self.servers[pod]
            s.source, s.io_on, s.sql_on, s.connected = None, False, False, False
            s.relay.clear()
            s.received.clear()
            self._settle(Event("detached", pod))

    def make_writable(self, pod: str) -> None:
        """Setup only: someone unfenced a node by hand (not a violation of the code under test)."""
        with self.lock:
            self.servers[pod].read_only = False
            self._writable = self.writable()
            self.events.append(Event("writable", None, tuple(sorted(self._writable))))
            self.events.append(Event("made-writable", pod))

    @contextmanager
    def not_receiving(self, *pods: str) -> Iterator[None]:
        """Commits made inside do not reach these replicas (a slow network)."""
        with self.lock:
            for p in pods:
                self.servers[p].auto_receive = False
        try:
            yield
        finally:
            with self.lock:
                for p in pods:
                    self.servers[p].auto_receive = True

    def hold_relay(self, *pods: str, apply_seconds: float | None = None) -> None:
        """These replicas receive but do not apply: their relay log grows until applied or waited for."""
        with self.lock:
            for p in pods:
                self.servers[p].auto_apply = False
                if apply_seconds is not None:
                    self.servers[p].apply_seconds = apply_seconds

    def apply_relay(self, pod: str) -> None:
        with self.lock:
            self.servers[pod].auto_apply = True
            self._apply(self.servers[pod])
            self._settle(Event("relay-applied", pod))

    # -- the fake's own machinery -------------------------------------------------------------

    def _hook(self, kind: str, pod: str | None) -> None:
        for i, (k, p, fn) in enumerate(self.hooks):
            if k == kind and (p is None or p == pod):
                del self.hooks[i]
                fn(self)
                return

    def _settle(self, event: Event) -> None:
        """After every operation: replication moves, the invariant is checked, the event logged."""
        self._pump()
        self.events.append(event)
        now = self.writable()
        if now != self._writable:
            self.events.append(Event("writable", None, tuple(sorted(now - self._writable))))
        if len(now) > 1 and now - self._writable:
            self.violations.append(Violation(event, tuple(sorted(now))))
        self._writable = now

    def _new_txn(self, s: FakeServer) -> Txn:
        if self.flavor.gtid_notation == "set":
            return Txn(s.origin, 1 + max((t.seq for t in s.applied if t.origin == s.origin), default=0))
        return Txn(s.origin, 1 + max((t.seq for t in s.applied if t.domain == DOMAIN), default=0))

    def _commit(self, s: FakeServer, kind: str) -> Txn:
        t = self._new_txn(s)
        s.applied.append(t)
        self._pump()
        acked = not s.semi_source or any(
            r.semi_replica and r.source == s.fqdn and r.connected and t in r.received
            for r in self.servers.values())
        (self.acked if acked else self.unacked).append(t)
        self._settle(Event(kind, s.name, t))
        return t

    def _refuses(self, source: FakeServer, replica: FakeServer) -> bool:
        """The source's check of the replica's GTIDs when the receiver connects (error 1236)."""
        theirs = set(source.applied)
        mine = replica.applied + replica.relay
        if self.flavor.gtid_notation == "set":
            return any(t.origin == source.origin and t not in theirs for t in mine)
        last: dict[int, Txn] = {}
        for t in mine:
            last[t.domain] = t
        return any(t not in theirs for t in last.values())

    def _pump(self) -> None:
        for r in self.servers.values():
            alive = r.status in ("up", "partitioned")
            if not alive or not r.io_on or not r.source:
                r.connected = r.connected and r.io_on and alive
                if alive and r.sql_on and r.auto_apply:
                    self._apply(r)
                continue
            s = next((x for x in self.servers.values() if x.fqdn == r.source), None)
            if s is None or not s.running or s.status in ("dead", "hung"):
                r.connected = False
            elif not r.connected:
                if self._refuses(s, r):
                    r.io_on, r.io_errno = False, 1236
                    r.last_error = ("Got fatal error 1236 from source when reading data from binary log: "
                                    "the replica has transactions the source lacks")
                else:
                    r.connected, r.io_errno, r.last_error = True, 0, ""
            if r.connected and r.auto_receive:
                have = set(r.applied) | set(r.relay)
                new = [t for t in s.applied if t not in have]
                r.relay.extend(new)
                r.received.extend(new)
            if r.sql_on and r.auto_apply:
                self._apply(r)

    def _apply(self, r: FakeServer) -> None:
        while r.relay and r.sql_on:
            t = r.relay[0]
            if t in set(r.applied):
                r.relay.pop(0)
                continue
            last = max((x.seq for x in r.applied if x.domain == t.domain), default=0)
            if self.flavor.gtid_notation == "position" and t.seq <= last:
                r.sql_on = False
                r.last_error = (f"An attempt was made to binlog GTID {t.domain}-{t.origin}-{t.seq} which would "
                                "create an out-of-order sequence number (gtid_strict_mode)")
                return
            r.applied.append(r.relay.pop(0))

    def state(self, s: FakeServer) -> ServerState:
        replica = s.source is not None
        return ServerState(
            read_only=s.read_only,
            super_read_only=s.read_only if self.flavor.super_read_only_var else None,
            gtid=self.gtids(s.applied),
            source_host=s.source,
            io_running=None if not replica else "Yes" if s.connected else "Connecting" if s.io_on else "No",
            sql_running=None if not replica else "Yes" if s.sql_on else "No",
            lag=None if not replica or not s.sql_on else s.lag_seconds if s.relay else 0 if s.connected else None,
            last_error=s.last_error,
            semi_sync_source_on=s.semi_source and any(r.source == s.fqdn and r.connected and r.semi_replica
                                                      for r in self.servers.values()),
            semi_sync_replica_on=s.semi_replica,
            retrieved=self.gtids(s.received) if replica else "",
            origin=s.origin,
            io_errno=s.io_errno,
            semi_sync_waits_alone=s.waits_alone,
        )

    def by_address(self, address: str) -> FakeServer | None:
        """A pod's address reaches it whatever its name resolves to."""
        return next((s for s in self.servers.values() if address_of(s) == address), None)

    def by_host(self, host: str) -> FakeServer | None:
        if host == self.platform.primary_fqdn():
            return self.servers.get(self.platform.primary or "")
        s = next((s for s in self.servers.values() if s.fqdn == host), None)
        return None if s is not None and self.clock.now < self.unresolved.get(s.name, 0.0) else s

    def reach(self, s: FakeServer, host: str, timeout: float, statement: bool) -> None:
        """Raise what a client meets on a server that is down, hung or cut off."""
        if not s.running or s.status == "dead":
            if statement:
                raise ServerError(host, "Lost connection to MySQL server during query", LOST_CONNECTION)
            raise ServerError(host, f"Can't connect to MySQL server on '{host}' (111)", CONNECT_REFUSED)
        if s.status in ("hung", "partitioned"):
            self.clock.advance(timeout)
            if statement:
                raise ServerError(host, "Lost connection to MySQL server during query (timed out)", LOST_CONNECTION,
                                  timed_out=True)
            raise ServerError(host, f"Can't connect to MySQL server on '{host}' (timed out)", CONNECT_REFUSED,
                              timed_out=True)

    def controller_log(self, event: str, **fields: Any) -> None:
        """The Controller's `log`: its JSON lines become events `controller:<event>`."""
        with self.lock:
            self.events.append(Event(f"controller:{event}", fields.get("pod"), fields))


class FakeSession:
    """One operator connection to one server: the `Server` protocol."""

    def __init__(self, world: World, server: FakeServer, host: str, read_timeout: float):
        self.world = world
        self.s = server
        self.host = host
        self.read_timeout = read_timeout

    @contextmanager
    def _op(self, kind: str, detail: Any = None) -> Iterator[None]:
        w = self.world
        with w.lock:
            w._hook(kind, self.s.name)
            w.reach(self.s, self.host, self.read_timeout, statement=True)
            yield
            w._settle(Event(kind, self.s.name, detail))

    def state(self) -> ServerState:
        with self._op("state"):
            return self.world.state(self.s)

    def fence(self, grace: float) -> list[int]:
        with self._op("fence", grace):
            killed = list(self.s.open_writers)
            if killed:
                self.world.clock.advance(grace)  # they hold their writes until the grace ends
                self.s.open_writers.clear()
            self.s.read_only = True
            return killed

    def unfence(self) -> None:
        with self._op("unfence"):
            self.s.read_only = False

    def executed(self) -> str:
        with self._op("executed"):
            return self.world.gtids(self.s.applied)

    def stop_receiving(self) -> None:
        with self._op("stop_receiving"):
            self.s.io_on = self.s.connected = False

    def stop_replicating(self) -> None:
        with self._op("stop_replicating"):
            self.s.io_on = self.s.sql_on = self.s.connected = False

    def replicate_from(self, source_fqdn: str, semi_sync: bool) -> None:
        with self._op("replicate_from", source_fqdn.split(".", 1)[0]):
            s = self.s
            # CHANGE REPLICATION SOURCE drops the relay log; auto-position fetches again what is missing.
            s.relay.clear()
            s.received.clear()
            s.source, s.io_on, s.sql_on, s.connected = source_fqdn, True, True, False
            s.io_errno, s.last_error = 0, ""
            s.semi_source, s.semi_replica = False, semi_sync

    def wait_applied(self, gtids: str, timeout: float) -> bool:
        w = self.world
        with self._op("wait_applied", gtids) as _:
            if not gtids:
                return True
            wanted = gtid.parse(w.flavor, gtids)
            if gtid.parse(w.flavor, w.gtids(self.s.applied)).contains(wanted):
                return True
            reachable = gtid.parse(w.flavor, w.gtids(self.s.applied + self.s.relay)).contains(wanted)
            if reachable and self.s.sql_on and self.s.apply_seconds <= timeout:
                w.clock.advance(self.s.apply_seconds)
                w._apply(self.s)
                return gtid.parse(w.flavor, w.gtids(self.s.applied)).contains(wanted)
            if timeout > self.read_timeout:
                w.clock.advance(self.read_timeout)
                raise ServerError(self.host, "Lost connection to MySQL server during query (timed out)",
                                  LOST_CONNECTION)
            w.clock.advance(timeout)
            return False

    def become_source(self, semi_sync: bool) -> None:
        with self._op("become_source"):
            s = self.s
            # STOP REPLICA; RESET REPLICA ALL: the channel and its relay log are gone.
            s.io_on = s.sql_on = s.connected = False
            s.source = None
            s.relay.clear()
            s.received.clear()
            s.io_errno, s.last_error = 0, ""
            s.semi_replica, s.semi_source, s.waits_alone = False, semi_sync, True

    def wait_alone(self, wait: bool) -> None:
        with self._op("wait_alone"):
            self.s.waits_alone = wait


class FakeServers:
    """The `Servers` protocol over the world."""

    def __init__(self, world: World):
        self.world = world

    @contextmanager
    def operator(self, host: str, timeout: float, read_timeout: float | None = None,
                 address: str | None = None) -> Iterator[FakeSession]:
        w = self.world
        with w.lock:
            s = w.by_address(address) if address else w.by_host(host)
            if s is None:
                raise ServerError(host, f"Unknown MySQL server host '{host}'", 2005)
            w._hook("connect", s.name)
            w.reach(s, host, timeout, statement=False)
        yield FakeSession(w, s, host, read_timeout or timeout + 2)

    def write_probe(self, host: str, timeout: float) -> None:
        w = self.world
        with w.lock:
            s = w.by_host(host)
            if s is None:
                raise ServerError(host, f"Unknown MySQL server host '{host}'", 2005)
            w._hook("write_probe", s.name)
            w.reach(s, host, timeout, statement=False)
            if s.read_only:
                w.events.append(Event("write_probe_refused", s.name))
                raise ServerError(host, "The MySQL server is running with the --super-read-only option so it "
                                  "cannot execute this statement", READ_ONLY_ERROR)
            w._commit(s, "write_probe")


class FakePlatform:
    """What Roles, Controller and Cluster.observe ask of a platform."""

    target = "fake"
    inside = True
    poll_interval = 0.01

    def __init__(self, world: World, labels: bool = False):
        self.world = world
        self.name = world.name
        self.labels = labels  # publish roles as labels (Kubernetes) or not (local)
        self.primary: str | None = None
        self.locked = False
        self.lock_held_elsewhere = False
        self.lock_lost = False  # the held lock was taken over (a Kubernetes Lease's renewal refused)
        self.renewals_left: int | None = None  # None: the lease is never lost
        self.kill_fails = False

    def _event(self, kind: str, pod: str | None = None, detail: Any = None) -> None:
        self.world._settle(Event(kind, pod, detail))

    def describe(self) -> str:
        return f"fake cluster {self.name}"

    def exists(self) -> bool:
        return True

    def values(self) -> dict[str, Any]:
        return self.world.values

    def passwords(self) -> dict[str, str]:
        return {}

    def pods(self) -> list[PodInfo]:
        w = self.world
        with w.lock:
            out = []
            for s in w.servers.values():
                up = s.running and s.status == "up"
                ready = up and not s.quarantined and (not s.read_only or (s.connected and s.sql_on))
                out.append(PodInfo(name=s.name, ordinal=s.ordinal, fqdn=s.fqdn, address=address_of(s),
                                   running=s.running, ready=ready, phase="Running" if s.running else "Stopped",
                                   restarts=0, has_data=s.has_data, quarantined=s.quarantined,
                                   started=s.running and s.status != "dead", role_label=s.role_label))
            return out

    def relabel(self) -> None:
        if self.labels:
            for s in self.world.servers.values():
                s.role_label = published_role(s.name, s.quarantined, self.primary)

    def set_primary(self, name: str | None) -> None:
        with self.world.lock:
            self.world._hook("set_primary", name)
            self.primary = name
            self.relabel()
            self._event("set_primary", name)

    def recorded_primary(self) -> str | None:
        return self.primary

    def primary_fqdn(self) -> str:
        return f"{self.name}-primary.{self.world.namespace}.svc.cluster.local"

    def quarantine(self, name: str, reason: str) -> None:
        with self.world.lock:
            self.world._hook("quarantine", name)
            self.world.servers[name].quarantined = True
            self.relabel()
            self._event("quarantine", name, reason)

    def kill_server(self, name: str) -> None:
        """SIGKILL of the server: it can only come back fenced (World.restart)."""
        with self.world.lock:
            self.world._hook("kill_server", name)
            s = self.world.servers[name]
            if self.kill_fails or not s.running:
                self._event("kill_server_failed", name)
                raise OperationFailed(f"{name}: no server to kill")
            s.status = "dead"
            s.open_writers.clear()
            self._event("kill_server", name)

    @contextmanager
    def lock(self) -> Iterator[None]:
        with self.world.lock:
            self.world._hook("lock", None)
            if self.lock_held_elsewhere or self.locked:
                self._event("lock_refused")
                raise OperationFailed(f"cluster {self.name} is locked by another command")
            self.locked, self.lock_lost = True, False
            self._event("lock")
        try:
            yield
        finally:
            with self.world.lock:
                self.locked = False
                self._event("unlock")

    def check_lock(self, before: str) -> None:
        with self.world.lock:
            if self.locked and self.lock_lost:
                self._event("lock_lost", detail=before)
                raise OperationFailed(f"lost the lock on cluster {self.name}: stopping before {before}")

    @contextmanager
    def leadership(self) -> Iterator[Callable[[], None]]:
        def renew() -> None:
            with self.world.lock:
                self.world._hook("renew", None)
                if self.renewals_left is not None:
                    if self.renewals_left <= 0:
                        self._event("renew_failed")
                        raise OperationFailed(f"lost the lease {self.name}-mysqlsts-controller to another holder")
                    self.renewals_left -= 1
                self._event("renew")

        with self.world.lock:
            self._event("lead")
        try:
            yield renew
        finally:
            with self.world.lock:
                self._event("unlead")

    def start_pod(self, name: str) -> None:
        self.world.restart(name)

    def stop_pod(self, name: str) -> None:
        self.world.stop_pod(name)

    def diagnose(self, name: str) -> list[str]:
        return [f"{name}: {self.world.servers[name].status}"]


def patch_time(monkeypatch, clock: FakeClock, world: World) -> None:
    """The orchestrator's and tenacity's clocks become the fake clock; pod names resolve to pod addresses."""
    fake = clock.module()
    for module in (failover_module, controller_module, cluster_module, tenacity, tenacity.nap):
        monkeypatch.setattr(module, "time", fake)
    addresses = {s.fqdn: address_of(s) for s in world.servers.values()}
    monkeypatch.setattr(cluster_module, "resolve", addresses.get)


__all__ = ["Crash", "Event", "FakeClock", "FakePlatform", "FakeServer", "FakeServers", "Txn", "Violation", "World",
           "patch_time"]
