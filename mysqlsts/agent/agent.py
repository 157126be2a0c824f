"""`mysqlsts agent`: the StatefulSet pod's agent container (as MOCO runs moco-agent beside mysqld).

Once its server answers (through the unix socket on the shared RUN_DIR), the agent
- makes a fresh clone's GTIDs the server's own, once (the file clone-mysql.sh leaves);
- settles the node's role from what the peers say over their per-pod DNS names, with the pure rules
  of decisions/node.settle and the same mysql/ code the orchestrator moves roles with: follow the one
  writable peer (quarantine instead when the node holds transactions that peer lacks, or when the
  peer refuses its GTID position, error 1236), promote the brand-new first primary that init-mysql
  created in this very start, or wait for the orchestrator;
- settles again whenever the server restarted under it (its boot time changed): a server boots fenced;
- keeps the recorded primary (PV_DIR/recorded-primary) up to date, for the next start's config;
- writes its readiness verdict (decisions/node.readiness) to RUN_DIR/agent-ready every loop, which
  probe.sh readiness reads (empty: ready; else the reason; stale: the agent is not running);
- on the primary, when failover.throttleBehindTransactions is set, delays group commits while every
  replica is far behind (decisions/lag.commit_delay), so a failover never waits long for an applier;
- fences the server when probe.sh prestop asks (RUN_DIR/stopping), and answers with RUN_DIR/fenced.

It never promotes a server that held data before: a restarted primary stays fenced until the
orchestrator (CLI or controller) decides, so an old primary cannot unfence itself during a failover.
Clone streams are served by the `clone` container (scripts/clone-listen.sh): the backup tool lives in
the backup image.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from mysqlsts.agent.podenv import PodEnv
from mysqlsts.decisions import gtid
from mysqlsts.decisions.binlogs import Binlog, purge_to
from mysqlsts.decisions.failover import Node, node_of_state
from mysqlsts.decisions.lag import behind, commit_delay, unapplied
from mysqlsts.decisions.node import NodeAction, NodeDecision, acknowledgers, readiness, serving_role, settle
from mysqlsts.decisions.topology import pod_of
from mysqlsts.model import ServerError, ServerState
from mysqlsts.mysql.server import Server, Servers, SqlServers
from mysqlsts.state import write_atomic

INTERVAL = 1.0  # seconds between two looks at the server
OWN_TIMEOUT = 3.0
PEER_TIMEOUT = 2.0
FENCE_GRACE = 2  # seconds a transaction holding locks may delay the fence before the stop; then it is killed
DIVERGED_WATCH = 3.0  # seconds to watch a fresh join for the source's refusal (error 1236)
PURGE_EVERY = 10.0  # seconds between two looks at which binary logs may go


def log(pod: str, message: str) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    print(f"{now}Z {pod} agent: {message}", file=sys.stderr, flush=True)


def idle(path: Path) -> float:
    """Seconds since the file was last written; 0 when it cannot be read (kept, then)."""
    try:
        return max(0.0, time.time() - path.stat().st_mtime)
    except OSError:
        return 0.0


def write_quick(path: Path, text: str) -> None:
    """Atomically, without fsync: the readiness verdict is rewritten every second on a memory volume."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Agent:
    def __init__(self, env: PodEnv, servers: Servers, peers=None, sleep=time.sleep):
        self.env = env
        self.servers = servers
        self.peers = peers or env.peers  # () -> peer pod names
        self.sleep = sleep
        self.fresh_primary = False
        self.booted: float | None = None  # the server's boot time when the role was last settled
        self.unsettled = True
        self.stopping = False  # fenced for a stop: settle nothing until the server restarts
        self.said: str | None = None  # the last waiting reason logged: each is logged once
        self.delay: int | None = None  # the group-commit delay set on the server (None: not set since it booted)
        self.tls = env.tls_files()  # the TLS volume's fingerprint the server last loaded
        self.next_purge = 0.0  # monotonic time of the next look at the binary logs
        self.purge_said: str | None = None  # why the last look purged nothing: each is logged once

    def log(self, message: str) -> None:
        log(self.env.pod, message)

    def start(self) -> None:
        # The bootstrap marker counts once, for this start only: a later restart of the same pod is an
        # old primary coming back, which only the orchestrator promotes.
        if self.env.bootstrap_marker.exists():
            self.fresh_primary = True
            self.env.bootstrap_marker.unlink()
        # A verdict left by an earlier agent (a restarted container) is about a server it last saw.
        write_quick(self.env.ready_file, "the agent is starting")
        write_quick(self.env.role_file, "none")
        first = ", the cluster's first primary" if self.fresh_primary else ""
        self.log(f"started ({self.env.flavor} server at {self.env.socket}{first})")

    def own(self, timeout: float = OWN_TIMEOUT):
        return self.servers.operator(self.env.own_fqdn, timeout=timeout)

    # -- one loop ----------------------------------------------------------------------------------

    def step(self) -> str | None:
        """One look: answer a stop request, settle the role when needed, record the primary, and write
        the readiness verdict. Returns the verdict (None: ready)."""
        self.answer_stop_request()
        try:
            with self.own() as server:
                booted = server.booted_at()
                if self.booted is not None and abs(booted - self.booted) > 1:
                    self.log("the server restarted; settling the role again")
                    self.unsettled, self.stopping, self.delay = True, False, None
                self.booted = booted
                if self.unsettled and not self.stopping:
                    # Settling may take a few seconds (peers that hang, a join watched): the verdict
                    # stays fresh and says what the server is until then.
                    self.verdict(server.state())
                    self.settle(server)
                state = server.state()
            self.record(state)
            if self.said and self.said.startswith("server: "):
                self.said = None
            verdict = self.verdict(state)
            if state.writable and self.env.semi_sync and not state.semi_sync_waits_alone:
                self.hold_once_replicated(state)
            if self.env.throttle_behind is not None:
                self.throttle(state)
            if self.env.tls_files() != self.tls:
                self.reload_tls()
            if self.env.binlog_retention is not None and time.monotonic() >= self.next_purge:
                self.next_purge = time.monotonic() + PURGE_EVERY
                self.purge_binlogs(self.env.binlog_retention)
            return verdict
        except ServerError as e:
            reason = f"server: {e.message}"
        except gtid.GtidError as e:
            reason = f"unreadable GTIDs: {e}"
        self.say(reason)
        write_quick(self.env.ready_file, reason)
        write_quick(self.env.role_file, serving_role(None, reason))
        return reason

    def verdict(self, state: ServerState) -> str | None:
        reason = readiness(state, self.env.quarantine_file.exists(), self.env.bound, unapplied(state, self.env.flavor))
        write_quick(self.env.ready_file, reason or "")
        write_quick(self.env.role_file, serving_role(state, reason))
        return reason

    def say(self, message: str) -> None:
        if message != self.said:
            self.log(message)
            self.said = message

    def run(self, stop: threading.Event, interval: float = INTERVAL) -> None:
        self.start()
        while not stop.is_set():
            self.step()
            deadline = time.monotonic() + interval
            while not stop.is_set() and time.monotonic() < deadline and not self.env.stop_request_file.exists():
                stop.wait(0.1)
        self.log("stopped")

    # -- what it does ------------------------------------------------------------------------------

    def settle(self, server: Server) -> NodeDecision | None:
        if self.env.quarantine_file.exists():
            reason = self.env.quarantine_file.read_text().strip()
            self.log(f"quarantined ({reason}); staying fenced")
            self.unsettled = False
            return None
        own = node_of_state(self.env.pod, server.state(), self.env.flavor)
        peers = self.look_at_peers()
        published = self.published([own, *peers]) if any(p.reachable and p.writable for p in peers) else None
        decision = settle(own, peers, self.fresh_primary, published)
        if decision.action is NodeAction.FOLLOW:
            self.join(server, decision.primary)
        elif decision.action is NodeAction.QUARANTINE:
            self.quarantine(decision.reason)
        elif decision.action is NodeAction.PROMOTE:
            server.become_source(self.env.semi_sync)
            if self.env.semi_sync:
                # Its replicas clone from it before they can acknowledge anything: a commit held for an
                # acknowledgement meanwhile would hold their clone, and itself, forever.
                server.wait_alone(False)
            server.unfence()
            self.log("writable: this pod is the cluster's first primary" + (
                f" (semi-sync from the moment {self.env.semi_sync_acks} replica(s) replicate from it; until then "
                "commits wait for no one)" if self.env.semi_sync else " (semi-sync OFF)"))
        elif decision.action is NodeAction.WAIT:
            self.say(decision.reason)
        else:
            self.log(decision.reason)
        if decision.action.settled:
            self.unsettled = False
            self.fresh_primary = False
        return decision

    def look_at_peers(self) -> list[Node]:
        names = self.peers()
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(names)))) as pool:  # a hung peer costs one timeout
            return list(pool.map(self.peer, names))

    def published(self, nodes: list[Node]) -> str | None:
        """The pod the primary name reaches, known by the name its server gives its own transactions."""
        if self.env.primary_fqdn is None:
            return None
        try:
            with self.servers.operator(self.env.primary_fqdn, timeout=PEER_TIMEOUT) as server:
                origin = server.state().origin
        except ServerError:
            return None
        return next((n.name for n in nodes if n.reachable and n.origin == origin), None)

    def peer(self, name: str) -> Node:
        try:
            with self.servers.operator(self.env.fqdn(name), timeout=PEER_TIMEOUT) as server:
                state = server.state()
            return node_of_state(name, state, self.env.flavor)
        except (ServerError, gtid.GtidError):
            return Node(name=name, reachable=False)

    def join(self, server: Server, primary: str) -> None:
        """Replicate from the primary with GTID auto-position, then watch a moment: the source's own check
        is exact where GTID positions are not, and error 1236 means this node's history diverged."""
        fqdn = self.env.fqdn(primary)
        server.replicate_from(fqdn, self.env.semi_sync)
        deadline = time.monotonic() + DIVERGED_WATCH
        state = server.state()
        while state.io_errno != 1236 and state.io_running != "Yes" and time.monotonic() < deadline:
            self.sleep(0.3)
            state = server.state()
        if state.io_errno == 1236:
            server.stop_replicating()
            self.quarantine(f"errant transactions: {primary} refuses this pod's GTID position {state.gtid or '-'} "
                            "(error 1236, diverged)")
            return
        self.log(f"replicating from {primary} ({fqdn}) with GTID auto-position")

    def hold_once_replicated(self, state: ServerState) -> None:
        """The first primary commits without waiting while it has no replica; once enough replicate from it,
        it holds every commit for an acknowledgement, for good (no fall-back to async when they go)."""
        following = acknowledgers(self.env.pod, self.look_at_peers())
        if len(following) < self.env.semi_sync_acks:
            return
        with self.own() as server:
            server.wait_alone(True)
        self.log(f"semi-sync holds every commit from now on: {', '.join(following)} replicate from this pod")

    def reload_tls(self) -> None:
        """A renewed certificate (cert-manager, through tls.existingSecret) reaches the pod as new files in
        its TLS volume: the server loads them, and the agent checks its peers against the CA there."""
        files = self.env.tls_files()
        try:
            with self.own() as server:
                server.reload_tls()
        except ServerError as e:
            self.say(f"could not reload the renewed TLS files: {e.message}")
            return
        if isinstance(self.servers, SqlServers):
            self.servers = agent_servers(self.env)
        self.tls = files
        self.log("the TLS files changed: the server loaded the renewed certificate")

    def purge_binlogs(self, retention: int) -> None:
        """Purge the binary logs every peer holds, once older than the retention (decisions/binlogs)."""
        peers = {p.name: p.executed if p.reachable else None for p in self.look_at_peers()}
        try:
            with self.own() as server:
                logs = [Binlog(name, idle(self.env.data_dir / name),
                               None if before is None else gtid.parse(self.env.flavor, before))
                        for name, before in server.binlogs()]
                keep, why = purge_to(logs, peers, retention)
                if keep is not None:
                    server.purge_binlogs(keep)
                    self.log(f"purged the binary logs before {keep} (every peer holds them; {why})")
                elif why != self.purge_said:
                    self.log(f"keeping every binary log: {why}")
                self.purge_said = why
        except (ServerError, gtid.GtidError) as e:
            self.say(f"could not purge binary logs: {e}")

    def throttle(self, state: ServerState) -> None:
        """Flow control on the primary: set the group-commit delay decisions/lag.commit_delay gives for
        its replicas' backlogs. A fenced node never delays: it may be a replica, whose applier would
        wait too."""
        limit = self.env.throttle_behind
        peers = self.look_at_peers() if state.writable else []
        replicas = [p for p in peers if p.reachable and p.source == self.env.pod]
        delay = commit_delay([behind(p) for p in replicas], self.delay or 0, limit)
        if delay == self.delay:
            return
        try:
            with self.own() as server:
                server.set_commit_delay(delay)
        except ServerError as e:
            self.say(f"could not set the group-commit delay to {delay} µs: {e.message}")
            return
        backlogs = ", ".join(f"{p.name} {behind(p)}" for p in replicas) or "no replica"
        if delay and not self.delay:
            self.log(f"throttling commits: every replica has more than {limit} transactions received but not "
                     f"applied ({backlogs}); each group commit waits {delay / 1000:g} ms, doubling while it lasts")
        elif not delay and self.delay:
            self.log(f"commit throttle lifted (transactions received but not applied: {backlogs})")
        self.delay = delay

    def quarantine(self, reason: str) -> None:
        write_atomic(self.env.quarantine_file, reason + "\n")
        self.log(f"QUARANTINED: {reason}; stays read-only and out of replication until re-cloned")

    def record(self, state: ServerState) -> None:
        """The primary this node is or follows, for the next start (init-mysql picks the config by it)."""
        if state.writable:
            primary = self.env.pod
        elif state.source_host and state.io_running == "Yes":
            primary = pod_of(state.source_host)
        else:
            return
        try:
            current = self.env.recorded_primary_file.read_text().strip()
        except OSError:
            current = None
        if current != primary:
            write_atomic(self.env.recorded_primary_file, primary + "\n")

    def answer_stop_request(self) -> None:
        """probe.sh prestop asks (RUN_DIR/stopping): fence the server, so a primary stops taking writes
        before SIGTERM (its clients get a read-only error, not a reset in the middle of a commit), and
        answer with RUN_DIR/fenced (empty: fenced; else why not)."""
        if not self.env.stop_request_file.exists():
            return
        try:
            with self.own() as server:
                killed = server.fence(FENCE_GRACE)
            answer = ""
            self.log("fenced before the stop" + (f" (ended {len(killed)} transactions holding locks)"
                                                  if killed else ""))
        except ServerError as e:
            answer = f"not fenced: {e.message}"
            self.log(f"could not fence before the stop ({e.message}); stopping anyway")
        write_quick(self.env.fenced_file, answer)
        self.env.stop_request_file.unlink(missing_ok=True)
        self.stopping = True


def agent_servers(env: PodEnv) -> SqlServers:
    """Its own server through the unix socket; its peers over TLS, checked against its TLS volume's CA."""
    return SqlServers(env.flavor, env.port, {**env.passwords(), "tlsCA": env.ca()},
                      sockets={env.own_fqdn: str(env.socket)})


def main() -> int:
    """The `mysqlsts agent` command: runs until SIGTERM (or SIGINT), then exits 0."""
    import signal

    env = PodEnv.from_environ()
    servers = agent_servers(env)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    Agent(env, servers).run(stop)
    return 0
