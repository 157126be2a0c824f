"""Switchover, failover and recovery: observe the nodes, let mysqlsts.decisions.failover
decide, then move the roles in an order that never leaves two writable nodes:
fence the old primary first, make the candidate the source of everyone else while
it is still fenced, and only then let it take writes and publish it."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, suppress
from typing import Any, NoReturn

from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

from mysqlsts.chart.render import semi_sync_acks, semi_sync_holds, semi_sync_on
from mysqlsts.decisions.failover import (
    Election,
    Node,
    diverged,
    elect,
    errant,
    repoint_order,
    silent_owners,
    switchover_candidate,
    wait_for_silent,
)
from mysqlsts.decisions.lag import behind
from mysqlsts.decisions.topology import PodView, observed_primary
from mysqlsts.errors import OperationFailed
from mysqlsts.interrupts import uninterrupted
from mysqlsts.model import ServerError
from mysqlsts.mysql.server import Server
from mysqlsts.orchestrator.cluster import Cluster, node_of
from mysqlsts.output import progress

# A step of a role change connects with at least this: the controller's looks are bounded far
# tighter (to measure a primary's silence), but a step that gives up on a busy node fails a failover.
ACTION_CONNECT_SECONDS = 1.0


def errant_only(election: Election) -> dict[str, str]:
    """Nodes left out for holding errant transactions: they get quarantined, not repointed."""
    return {n: election.excluded[n] for n in election.errant}


def refuse_silent(nodes: list[Node], old: str | None, force: bool) -> None:
    silent = silent_owners(nodes, old)
    if silent and not force:
        raise OperationFailed([f"failover refused: {wait_for_silent(silent)}; start them, or --force "
                               "elects among the nodes that answer and may lose what only they hold"])


class Roles:
    """Who is primary, changed on purpose."""

    def __init__(self, cluster: Cluster, probe_timeout: float = 2.0):
        self.cluster = cluster
        self.flavor = cluster.flavor
        self.settings = cluster.values["failover"]
        self.probe_timeout = probe_timeout

    def look(self, timeout: float | None = None) -> tuple[list[PodView], list[Node]]:
        # A hung server accepts the connection and then says nothing: bound the read, too.
        # A stopped pod that holds data still counts: an election must not leave it out unseen.
        timeout = timeout or self.probe_timeout
        views = [v for v in self.cluster.observe(timeout, timeout)
                 if v.running or v.state is not None or v.has_data]
        return views, [node_of(v, self.flavor) for v in views]

    def step(self, before: str) -> None:
        """Before each step that moves a role: one whose lock was lost meanwhile (a successor may be
        moving roles now) stops here, leaving what it did so far to that successor."""
        self.cluster.platform.check_lock(before)

    def server(self, view: PodView, wait: float = 0.0) -> AbstractContextManager[Server]:
        """One node, through the database seam, at the pod's own address; `wait`: seconds a statement
        on it may block (GTID waits)."""
        return self.cluster.servers.operator(view.fqdn, timeout=max(self.probe_timeout, ACTION_CONNECT_SECONDS),
                                             read_timeout=wait + 5, address=view.address)

    # -- planned -------------------------------------------------------------------------------

    @uninterrupted
    def switchover(self, to: str | None = None) -> dict[str, Any]:
        views, nodes = self.look()
        primary = observed_primary(views)
        if primary is None:
            raise OperationFailed("no single writable primary to switch over from; use `mysqlsts failover`")
        election = switchover_candidate(nodes, primary, to)
        if election.candidate is None:
            raise OperationFailed([f"switchover refused: {election.reason}",
                                   *(f"{n}: {why}" for n, why in election.excluded.items())])
        by_name = {v.name: v for v in views}
        old, new = by_name[primary], by_name[election.candidate]
        self.step(f"fencing {primary}")
        progress(f"switchover {primary} -> {new.name}: fencing {primary}")
        started = time.monotonic()
        with self.server(old) as server:
            killed = server.fence(self.settings["fenceGraceSeconds"])
            final = server.executed()
        if killed:
            progress(f"killed {len(killed)} connection(s) still writing on {primary} after the grace period")
        progress(f"{new.name}: applying up to {final or '(nothing)'}")
        try:
            with self.server(new, wait=self.settings["applyTimeoutSeconds"]) as server:
                caught_up = server.wait_applied(final, self.settings["applyTimeoutSeconds"])
        except ServerError as e:  # it died or hung while catching up: nothing moved yet, so undo the fence
            self.give_back(old, new, f"stopped answering while catching up ({e.message})")
        if not caught_up:
            self.give_back(old, new, f"did not apply {primary}'s transactions within "
                                     f"{self.settings['applyTimeoutSeconds']}s")
        excluded = errant_only(election)
        values = self.cluster.values
        followers = [v.name for v in views if v.name not in (new.name, *excluded) and v.state is not None]
        _, last = repoint_order(followers, primary, semi_sync_acks(values) if semi_sync_holds(values) else 0)
        unreached = self.promote(new, [v for v in views if v.name not in last], excluded=excluded, fallback=old)
        window = self.first_write(started)
        self.follow(new, [v for v in views if v.name in last], excluded, unreached)
        self.quarantine_diverged()
        progress(f"{new.name} is the primary; writes were unavailable for {window * 1000:.0f} ms")
        return {"operation": "switchover", "from": primary, "to": new.name, "killed_connections": len(killed),
                "write_unavailable_seconds": round(window, 3), "not_repointed": unreached}

    def give_back(self, old: PodView, new: PodView, why: str) -> NoReturn:
        """A switchover that cannot finish: no node took writes yet, so the old primary takes them back."""
        self.step(f"giving {old.name} its writes back ({new.name} {why})")
        with self.server(old) as back:
            back.unfence()
        raise OperationFailed(f"switchover refused: {new.name} {why}; {old.name} is writable again")

    # -- unplanned -----------------------------------------------------------------------------

    @uninterrupted
    def failover(self, to: str | None = None, force: bool = False, old: str | None = None,
                 seen: tuple[list[PodView], list[Node]] | None = None, recovering: bool = False) -> dict[str, Any]:
        """`seen`: an observation made just now (the controller's), saving another look at a hung node.
        `recovering`: nothing failed, the nodes restarted: the old primary is waited for like any node
        with data, never killed."""
        started = time.monotonic()
        views, nodes = seen or self.look()
        if observed_primary(views) is not None:
            raise OperationFailed(f"{observed_primary(views)} is a writable primary and answers; "
                                  "use `mysqlsts switchover` for a planned change")
        old = old or self.cluster.platform.recorded_primary()
        refuse_silent(nodes, None if recovering else old, force)
        by_name = {v.name: v for v in views}
        # Cut the old primary off first. One that does not answer is killed (it can only come back
        # fenced, and replica receivers stuck talking to a hung server let go at once); then no
        # receiver takes anything more from it, so it can neither commit nor be acknowledged.
        if old in by_name and by_name[old].state is None and not recovering:
            self.step(f"fencing {old} by force")
            progress(f"{old} does not answer: fencing it by force (it can only come back fenced)")
            try:
                self.cluster.platform.kill_server(old)
            except OperationFailed as e:  # no server to kill (restarting), or its node is gone
                progress(f"{e.problems[0]}; the stopped receivers and semi-sync fence it instead")
        receivers = [by_name[n.name] for n in nodes if n.reachable and n.source is not None and n.name != old]
        self.step("stopping the replicas' receivers")
        with ThreadPoolExecutor(max_workers=max(1, len(receivers))) as pool:
            list(pool.map(self.stop_receiving, receivers))
        # The old primary is cut off now: look as patiently as a step connects, so a busy replica
        # is not taken for a silent one, and a silent one still stops the election.
        views, nodes = self.look(max(self.probe_timeout, ACTION_CONNECT_SECONDS))
        refuse_silent(nodes, None if recovering else old, force)
        # A lost primary that restarted meanwhile loses ties, but keeps what it alone holds (its history).
        election = elect(nodes, self.settings["maxLagSeconds"], to, avoid=None if recovering else old, primary=old)
        report: dict[str, Any] = {"operation": "failover", "from": old, "to": election.candidate,
                                  "reason": election.reason, "excluded": election.excluded, "lost": election.lost}
        if election.candidate is None:
            raise OperationFailed([f"failover refused: {election.reason}",
                                   *(f"{n}: {why}" for n, why in election.excluded.items())])
        if election.lost and not force:
            raise OperationFailed([f"failover refused: {election.reason}; --force promotes it and loses:",
                                   *(f"{n}: {lost}" for n, lost in election.lost.items())])
        if election.lost:
            progress("--force: these transactions will be lost: "
                     + "; ".join(f"{n}: {lost}" for n, lost in election.lost.items()))
        by_name = {v.name: v for v in views}
        new = by_name[election.candidate]
        chosen = next(n for n in nodes if n.name == new.name)
        pending, applying = behind(chosen), time.monotonic()
        if pending:
            progress(f"{new.name} applies the {pending} transactions it received but had not applied yet")
        with self.server(new, wait=self.settings["applyTimeoutSeconds"]) as server:
            if not server.wait_applied(str(chosen.known or ""), self.settings["applyTimeoutSeconds"]):
                raise OperationFailed(f"{new.name} did not apply its relay log within "
                                      f"{self.settings['applyTimeoutSeconds']}s")
        report["applied"] = {"transactions": pending, "seconds": round(time.monotonic() - applying, 3)}
        # Nodes holding what the new primary lacks (errant, or lost by --force) would serve rows it
        # lacks, and a later election could bring them back: quarantined, never repointed.
        excluded = {**errant_only(election),
                    **{n: f"holds {lost} that {new.name} lacks (--force)" for n, lost in election.lost.items()}}
        report["not_repointed"] = self.promote(new, views, excluded=excluded)
        report["seconds"] = round(self.first_write(started), 3)
        self.quarantine_diverged()
        progress(f"{new.name} is the primary ({election.reason}); writes again after {report['seconds']:.2f}s")
        return report

    def recover(self) -> dict[str, Any] | None:
        """No writable node (the primary restarted, or the whole cluster did): promote the node
        that holds everything, which is the old primary when it lost nothing. Not before every
        node with data answers (a restarting old primary is slow, not dead): None until then."""
        views, nodes = self.look()
        if observed_primary(views) is not None:
            return None
        if not any(n.reachable for n in nodes):
            return None
        silent = silent_owners(nodes, None)
        if silent:
            progress(f"not electing yet: {wait_for_silent(silent)}")
            return None
        return self.failover(seen=(views, nodes), recovering=True)

    # -- the one way roles move ------------------------------------------------------------------

    def promote(self, new: PodView, views: list[PodView], excluded: dict[str, str],
                fallback: PodView | None = None) -> dict[str, str]:
        """Candidate becomes the source of everyone (still fenced), then writable, then published.
        `fallback`: a switchover's fenced old primary, given its writes back if the candidate fails
        before it takes any. A node that does not answer is left as it is (fenced: it was a replica, or
        the old primary) and returned with why; the controller points it at the new primary later."""
        semi = semi_sync_on(self.cluster.values)
        self.step(f"making {new.name} the source")
        try:
            with self.server(new) as server:
                server.become_source(semi)
                if semi and not semi_sync_holds(self.cluster.values):
                    server.wait_alone(False)  # alone in its cluster: nobody could acknowledge
        except ServerError as e:
            if fallback is None:
                raise
            self.step(f"giving {fallback.name} its writes back")
            with suppress(ServerError):  # it may have stopped replicating; if it does not answer, its agent
                self.repoint(new, fallback)  # follows the one writable peer when it is back
            self.give_back(fallback, new, f"stopped answering as it became the source ({e.message})")
        answering = [v for v in views if v.name != new.name and v.state is not None]
        for v in answering:
            if v.name in excluded:
                self.step(f"quarantining {v.name}")
                progress(f"{v.name}: quarantined ({excluded[v.name]}); it stays fenced until re-cloned")
                self.cluster.platform.quarantine(v.name, excluded[v.name])
        unreached: dict[str, str] = {}
        self.follow(new, answering, excluded, unreached)
        self.step(f"making {new.name} writable")
        with self.server(new) as server:
            server.unfence()
        self.step(f"publishing {new.name} as the primary")
        self.cluster.platform.set_primary(new.name)
        return unreached

    def follow(self, new: PodView, views: list[PodView], excluded: dict[str, str], unreached: dict[str, str]) -> None:
        """Each node replicates from `new`, or, when quarantined, stops replicating; fenced either way. One
        that stopped answering is noted in `unreached` and left fenced."""
        for v in views:
            self.step(f"{'fencing' if v.name in excluded else 'repointing'} {v.name}")
            try:
                if v.name in excluded:
                    with self.server(v) as server:
                        server.fence(0)
                        server.stop_replicating()
                else:
                    self.repoint(v, new)
            except ServerError as e:
                unreached[v.name] = e.message
                progress(f"{v.name}: not repointed, it stopped answering ({e.message}); it stays fenced")

    def stop_receiving(self, view: PodView) -> None:
        with self.server(view, wait=30) as server:
            server.stop_receiving()

    def repoint(self, view: PodView, source: PodView) -> None:
        """Fence a node and make it replicate from `source` with GTID auto-position."""
        with self.server(view) as server:
            server.fence(0)
            server.replicate_from(source.fqdn, semi_sync_on(self.cluster.values))

    def quarantine_diverged(self, wait: float = 3.0) -> list[str]:
        """After a promotion, once the new primary took a write (this waits up to `wait` for replicas still
        connecting, which writes need not wait for): replicas whose new source refuses their GTID position
        (error 1236) hold errant transactions the positions could not show (MariaDB): stop them and
        quarantine them."""
        deadline = time.monotonic() + wait
        while True:
            views, nodes = self.look()
            settling = [n for n in nodes if n.reachable and n.source and not n.io_running and not n.diverged
                        and not n.quarantined]
            if not settling or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        done = []
        refused = diverged(nodes)
        for v in views:
            if v.name in refused:
                self.step(f"quarantining {v.name}")
                progress(f"{v.name}: quarantined (its source refuses its GTID position: diverged history)")
                with self.server(v) as server:
                    server.stop_replicating()
                self.cluster.platform.quarantine(v.name, "errant transactions: diverged GTID history (error 1236)")
                done.append(v.name)
        return done

    def first_write(self, since: float, timeout: float = 30.0) -> float:
        """Seconds from `since` to the first acknowledged write through the primary name."""
        name = self.cluster.platform.primary_fqdn()

        @retry(stop=stop_after_delay(timeout), wait=wait_fixed(0.02), retry=retry_if_exception_type(ServerError),
               reraise=True)
        def write() -> None:
            self.cluster.servers.write_probe(name, timeout=1.0)

        try:
            write()
        except ServerError as e:
            raise OperationFailed(f"no write through {name} succeeded within {timeout:g}s: {e.message}") from None
        return time.monotonic() - since


__all__ = ["Election", "Roles", "errant"]
