"""The orchestrator: bootstrap, observe, verify, scale, restart, destroy.

Written once against the Platform interface; decisions come from
mysqlsts.decisions, side effects go through the platform or SQL.
"""

from __future__ import annotations

import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import pymysql

from mysqlsts import flavors
from mysqlsts.chart.render import Names, semi_sync_acks, semi_sync_holds, semi_sync_on
from mysqlsts.decisions import gtid
from mysqlsts.decisions.failover import Node, node_of_state, short_of
from mysqlsts.decisions.lag import LagBound, unapplied
from mysqlsts.decisions.topology import Check, PodView, observed_primary, pod_of, role, unsettled, verify_checks
from mysqlsts.errors import BadInput, OperationFailed, failing_as
from mysqlsts.flavors import Flavor
from mysqlsts.model import ServerError
from mysqlsts.mysql.actions import CANARY_TABLE, create_canary_table
from mysqlsts.mysql.observe import connect
from mysqlsts.mysql.server import Servers, SqlServers
from mysqlsts.output import progress
from mysqlsts.platform.base import Platform

PROBE_SETTLE_SECONDS = 1.5  # a little over the chart's readinessProbe periodSeconds
PRIMARY_NAME_WAIT_SECONDS = 15.0  # kube-proxy programs a Service's new endpoint within a second or so
DNS_SETTLE_SECONDS = 35.0  # past the 30 s TTL of a cluster DNS answer (CoreDNS's kubernetes plugin default)
RECOVER_AFTER_SECONDS = 2.0  # a fresh primary's agent unfences it sooner; a restarted one needs us


ACCESS_DENIED = 1045


def node_of(view: PodView, flavor: Flavor) -> Node:
    with failing_as(gtid.GtidError):
        return node_of_state(view.name, view.state, flavor, quarantined=view.quarantined, owns_data=view.has_data,
                             timed_out=view.timed_out)


def resolve(name: str) -> str | None:
    try:
        return socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    except OSError:
        return None


class RoleSteps(Protocol):
    """Role changes a lifecycle step needs midway (recover a fenced primary, switch away from one).
    They speak SQL to every pod, so the commands layer, which knows where that can run, supplies them."""

    def recover(self, cluster: Cluster) -> None: ...
    def switchover(self, cluster: Cluster, timeout: float) -> None: ...


class Cluster:
    def __init__(self, platform: Platform, values: dict[str, Any], passwords: dict[str, str] | None = None,
                 steps: RoleSteps | None = None, servers: Servers | None = None):
        self.platform = platform
        self.values = values
        self._passwords = passwords
        self.steps = steps
        self.flavor = flavors.get(values["flavor"])
        self.port = values["mysql"]["port"]
        self._servers = servers

    @property
    def servers(self) -> Servers:
        """The database seam role changes go through (pymysql unless a test hands in a fake)."""
        if self._servers is None:
            self._servers = SqlServers(self.flavor, self.port, self.passwords)
        return self._servers

    @property
    def passwords(self) -> dict[str, str]:
        """Read only when SQL needs them: a kubernetes CLI outside the cluster never does."""
        if self._passwords is None:
            self._passwords = self.platform.passwords()
        return self._passwords

    def connect(self, host: str, timeout: float = 3.0, read_timeout: float | None = None):
        """As the operator: observes and moves the fence (on MariaDB it may write through it)."""
        return connect(host, self.port, self.passwords["operatorPassword"], self.flavor, timeout=timeout,
                       read_timeout=read_timeout, ca=self.passwords.get("tlsCA"))

    def connect_client(self, host: str, timeout: float = 3.0, bind_address: str | None = None):
        """As a client (root): the fence holds for it, so data writes (canary, drill ledger) can never
        land on a fenced node, whatever a name still points at."""
        return connect(host, self.port, self.passwords["rootPassword"], self.flavor, timeout=timeout, user="root",
                       bind_address=bind_address, ca=self.passwords.get("tlsCA"))

    # -- observation -----------------------------------------------------------------------

    def observe(self, timeout: float = 3.0, read_timeout: float | None = None) -> list[PodView]:
        """Every pod at once: one hung server must not delay the look at the others."""

        def one(pod) -> PodView:
            state, error, timed_out = None, "", False
            if pod.running:
                try:
                    with self.servers.operator(pod.fqdn, timeout, read_timeout, address=pod.address) as server:
                        state = server.state()
                except ServerError as e:
                    error, timed_out = e.message, e.timed_out
                    if e.code == ACCESS_DENIED:  # the passwords changed (a long-running controller)
                        self._passwords = self._servers = None
            return PodView(name=pod.name, fqdn=pod.fqdn, address=pod.address, resolved=resolve(pod.fqdn),
                           running=pod.running, ready=pod.ready, state=state, error=error,
                           quarantined=pod.quarantined, has_data=pod.has_data, role_label=pod.role_label,
                           timed_out=timed_out, behind=unapplied(state, self.flavor))

        pods = self.platform.pods()
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(pods)))) as pool:
            return list(pool.map(one, pods))

    def status(self) -> list[dict[str, Any]]:
        views = self.observe()
        primary = observed_primary(views)
        rows = []
        for v in views:
            s = v.state
            rows.append({
                "pod": v.name, "address": v.address, "dns": v.fqdn, "role": role(v, primary),
                "read_only": None if s is None else s.read_only,
                "super_read_only": None if s is None else s.super_read_only,
                "gtid_executed": None if s is None else s.gtid,
                "source": None if s is None else pod_of(s.source_host),
                "io_thread": None if s is None else s.io_running,
                "sql_thread": None if s is None else s.sql_running,
                "lag_seconds": None if s is None else s.lag,
                "behind": v.behind,  # transactions received, not applied yet
                "ready": v.ready, "running": v.running, "error": v.error or (s.last_error if s else ""),
            })
        return rows

    def publish_primary(self, views: list[PodView] | None = None) -> str | None:
        views = views or self.observe()
        primary = observed_primary(views)
        short = {} if primary is None else short_of(node_of(next(v for v in views if v.name == primary), self.flavor),
                                                    [node_of(v, self.flavor) for v in views])
        if short:  # an empty pod made writable over the data, say: never what the primary name reaches
            progress(f"{primary} is writable but lacks " + "; ".join(f"{g} that {n} holds" for n, g in short.items())
                     + ": not recording it as the primary")
            return None
        if primary is not None and primary != self.platform.recorded_primary():
            progress(f"primary is {primary}; pointing {self.platform.primary_fqdn()} at it")
        if primary is not None:
            self.platform.set_primary(primary)
        return primary

    # -- verification ----------------------------------------------------------------------

    def verify(self) -> list[Check]:
        views = self.observe_settled()
        checks = verify_checks(views, self.platform.recorded_primary(), self.platform.primary_fqdn(),
                               self.reached_through(self.platform.primary_fqdn(), observed_primary(views)),
                               self.lag_bound(), semi_sync_holds(self.values))
        if observed_primary(views) is not None and all(c.ok for c in checks):
            checks.extend(self.canary(views))
        elif observed_primary(views) is not None:
            checks.append(Check("canary row reaches every replica", False, "skipped: earlier checks failed"))
        return checks

    def lag_bound(self) -> LagBound:
        return LagBound(self.values["health"]["maxLagSeconds"], self.values["health"]["maxBehindTransactions"])

    def observe_settled(self) -> list[PodView]:
        """Observe, giving what follows a change time to settle (decisions/topology.unsettled): a new or
        restarted pod's DNS name (an answer given before the pod had its address, none yet or the old pod's,
        stays cached for the record's TTL in each DNS replica's own cache; the servers are reached at their
        addresses, their names are what this waits on), and the first primary's agent seeing its replicas."""
        deadline = time.monotonic() + DNS_SETTLE_SECONDS
        while True:
            views = self.observe()
            moving = unsettled(views, semi_sync_holds(self.values), semi_sync_acks(self.values), self.lag_bound())
            if not moving or time.monotonic() > deadline:
                return views
            progress(f"waiting for {'; '.join(moving)} to settle")
            time.sleep(1.0)

    def reached_through(self, name: str, expected: str | None) -> str | None:
        """Which pod answers on this name (each server reports its own per-pod name). A name that
        just moved may lag a little (a Service's endpoints follow labels), so wait for `expected`."""
        deadline = time.monotonic() + PRIMARY_NAME_WAIT_SECONDS
        while True:
            reached = None
            try:
                with self.connect(name, timeout=2.0) as conn, conn.cursor() as cur:
                    cur.execute("SELECT @@GLOBAL.report_host")
                    reached = pod_of(cur.fetchone()[0] or "") or None
            except pymysql.MySQLError:
                pass
            if reached == expected or expected is None or time.monotonic() > deadline:
                return reached
            time.sleep(0.25)

    def canary(self, views: list[PodView]) -> list[Check]:
        """Write through the primary name, read back from every replica through its own name."""
        token = uuid.uuid4().hex
        try:
            with self.connect_client(self.platform.primary_fqdn()) as conn, conn.cursor() as cur:
                create_canary_table(conn)
                cur.execute(f"DELETE FROM {CANARY_TABLE} WHERE written_at < NOW() - INTERVAL 1 DAY")
                cur.execute(f"INSERT INTO {CANARY_TABLE} (token) VALUES (%s)", (token,))
        except pymysql.MySQLError as e:
            return [Check("canary write through the primary name", False, str(e))]
        written = time.monotonic()
        timeout = float(self.values["health"]["canaryTimeoutSeconds"])
        checks = [Check("canary write through the primary name", True, f"row {token[:8]} committed")]
        primary = observed_primary(views)
        for v in views:
            if v.name == primary:
                continue
            seen = None
            while seen is None and time.monotonic() - written < timeout:
                try:
                    with self.connect(v.fqdn) as conn, conn.cursor() as cur:
                        cur.execute(f"SELECT 1 FROM {CANARY_TABLE} WHERE token = %s", (token,))
                        if cur.fetchone():
                            seen = time.monotonic() - written
                except pymysql.MySQLError:
                    pass
                if seen is None:
                    time.sleep(0.05)
            checks.append(Check(f"canary row on {v.name} via {v.fqdn}", seen is not None,
                                f"seen after {seen * 1000:.0f} ms" if seen is not None
                                else f"not seen within {timeout:g}s"))
        return checks

    # -- lifecycle -------------------------------------------------------------------------

    def wait_ready(self, names: list[str], deadline: float) -> None:
        """Wait for pods to turn ready. A primary that restarted comes back fenced and can only
        turn ready once promoted: when it has been up but not ready for a while, recover."""
        last: dict[str, str] = {}
        started = time.monotonic()
        pending = set(names)
        fenced_since: float | None = None
        while pending:
            # A long wait (a reclone's clone) stops once its command lost the lock: a successor acts now.
            self.platform.check_lock(f"waiting longer for {', '.join(sorted(pending))}")
            pods = {p.name: p for p in self.platform.pods()}
            primary = pods.get(self.platform.recorded_primary() or "")
            if primary is not None and primary.started and not primary.ready:
                fenced_since = fenced_since or time.monotonic()
                if time.monotonic() - fenced_since >= RECOVER_AFTER_SECONDS:
                    self.recover()
                    fenced_since = None
            else:
                fenced_since = None
            for name in sorted(pending):
                pod = pods[name]
                phase = "ready" if pod.ready else pod.phase
                if last.get(name) != phase:
                    progress(f"{name}: {phase}" + (f" ({time.monotonic() - started:.1f}s)" if pod.ready else ""))
                    last[name] = phase
                if pod.ready:
                    pending.discard(name)
                elif not pod.running:
                    raise OperationFailed([f"{name} stopped while starting", *self.platform.diagnose(name)])
                elif pod.restarts >= 5:
                    raise OperationFailed([f"{name} keeps failing ({pod.restarts} restarts)",
                                           *self.platform.diagnose(name)])
            if pending and time.monotonic() > deadline:
                lines = [f"timed out waiting for {', '.join(sorted(pending))} to become ready"]
                for name in sorted(pending):
                    lines.extend(self.platform.diagnose(name))
                raise OperationFailed(lines)
            if pending:
                time.sleep(self.platform.poll_interval)

    def recover(self) -> None:
        """No writable primary: promote the node that holds everything (where SQL reaches the pods)."""
        self._steps().recover(self)

    def switchover(self, timeout: float) -> None:
        """Move the primary role to a caught-up replica (where SQL reaches the pods)."""
        self._steps().switchover(self, timeout)

    def _steps(self) -> RoleSteps:
        if self.steps is None:
            raise OperationFailed("this cluster was loaded without role steps; load it through a command")
        return self.steps

    def converge(self, timeout: float) -> list[str]:
        """Bring every wanted pod up and wait until all are ready. They start together, as the
        StatefulSet starts them (podManagementPolicy Parallel): after a full restart any of them may
        hold the newest data, and an empty one waits in clone-mysql for a donor. Where a controller
        starts the pods (Kubernetes), this only waits."""
        deadline = time.monotonic() + timeout
        stopped = [p.name for p in self.platform.pods() if p.ordinal < self.values["replicas"] and not p.running]
        if stopped:
            progress(f"starting {', '.join(stopped)}")
            for name in stopped:
                self.platform.start_pod(name)
            self.wait_ready(stopped, deadline)
        self.settle(deadline)
        return stopped

    def settle(self, deadline: float) -> None:
        """Wait until every wanted pod is ready (replicas reconnect to a moved primary)."""
        not_ready = [p.name for p in self.platform.pods() if p.ordinal < self.values["replicas"] and not p.ready]
        if not_ready:
            self.wait_ready(not_ready, deadline)

    def removable(self, replicas: int) -> list[str]:
        """Pods a scale-in to `replicas` removes; never the primary."""
        removed = [p for p in self.platform.pods() if p.ordinal >= replicas and (p.running or p.has_data)]
        primary = self.platform.recorded_primary()
        if any(p.name == primary for p in removed):
            raise OperationFailed(f"{primary} is the primary and would be removed; switch over to a lower "
                                  "ordinal first")
        return [p.name for p in sorted(removed, key=lambda p: -p.ordinal)]

    def match_semi_sync_to_size(self) -> None:
        """Before a scale to one pod: the primary stops holding commits for acknowledgements nobody will
        send once its last replica is gone (every write would hang). The way back needs nothing here:
        once a replica follows it again, its agent holds for good (agent.hold_once_replicated)."""
        primary = self.platform.recorded_primary()
        pod = next((p for p in self.platform.pods() if p.name == primary and p.running), None)
        if not semi_sync_on(self.values) or semi_sync_holds(self.values) or pod is None:
            return
        progress(f"{pod.name}: commits no longer wait for a replica's acknowledgement (it will have none)")
        with self.servers.operator(pod.fqdn, 3.0, address=pod.address) as server:
            server.wait_alone(False)

    def remove(self, names: list[str], delete_data: bool) -> None:
        for name in names:
            progress(f"{name}: stopping" + (" and deleting its data" if delete_data else " (data kept)"))
            self.platform.stop_pod(name)
            if delete_data:
                self.platform.delete_pod_data(name)

    def check_member(self, name: str, argument: str = "POD") -> None:
        """A pod the user named (the commands check it before they take the lock): one of the
        StatefulSet's ordinals, else nothing is done (exit 2)."""
        members = Names.of(self.platform.name).pods(self.values["replicas"])
        if name not in members:
            raise BadInput(f"{argument}: no pod {name!r} in cluster {self.platform.name!r}; its pods: "
                           f"{', '.join(members)}")

    def reclone(self, name: str, timeout: float) -> None:
        """Throw a pod's data away and clone it again from a healthy donor (a quarantined pod)."""
        if name == self.platform.recorded_primary():
            raise OperationFailed(f"{name} is the primary; switch over first")
        self.platform.check_lock(f"deleting {name}'s data")
        progress(f"{name}: stopping and deleting its data to clone it again")
        self.platform.discard_data(name)
        progress(f"{name}: starting (it clones from a healthy donor)")
        self.platform.start_pod(name)
        self.wait_ready([name], time.monotonic() + timeout)

    def restart_pod(self, name: str, timeout: float) -> None:
        progress(f"{name}: stopping")
        self.platform.stop_pod(name)
        progress(f"{name}: starting")
        self.platform.start_pod(name)
        deadline = time.monotonic() + timeout
        self.wait_ready([name], deadline)
        time.sleep(PROBE_SETTLE_SECONDS)  # let the other pods' readiness probes see the new address
        self.settle(deadline)
