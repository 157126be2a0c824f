"""Pure failover decisions over observed nodes: is the primary lost, who may be
promoted, what would be lost, which nodes hold errant transactions. No I/O:
the orchestrator observes, these decide, the orchestrator acts."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import reduce

from mysqlsts.decisions import gtid
from mysqlsts.decisions.gtid import Gtids
from mysqlsts.flavors import Flavor
from mysqlsts.model import ServerState


@dataclass(frozen=True)
class Node:
    name: str
    reachable: bool  # answered SQL just now
    writable: bool = False
    executed: Gtids | None = None  # gtid_executed / gtid_current_pos
    retrieved: Gtids | None = None  # received but maybe not applied yet (relay log)
    origin: str = ""  # server_uuid (MySQL) / server_id (MariaDB): how its own transactions are named
    source: str | None = None  # the pod it replicates from
    io_running: bool = False  # the replication receiver is connected to its source
    lag: int | None = None
    quarantined: bool = False
    diverged: bool = False  # its source refused its GTID position (error 1236): errant, by the server's check
    owns_data: bool = False  # it has a volume with data (a PVC, a local data directory), answering or not
    timed_out: bool = False  # silent, not refusing: hung or only slow, where a refusal means down

    @property
    def known(self) -> Gtids | None:
        """Everything this node has, applied or waiting in its relay log."""
        if self.executed is None:
            return None
        return self.executed if self.retrieved is None else self.executed.union(self.retrieved)


def node_of_state(name: str, state: ServerState | None, flavor: Flavor, quarantined: bool = False,
                  owns_data: bool = False, timed_out: bool = False) -> Node:
    """A node as its server described itself (None: it did not answer; `timed_out`: within the time
    given, rather than refusing). Raises gtid.GtidError on GTIDs that do not parse."""
    if state is None:
        return Node(name=name, reachable=False, quarantined=quarantined, owns_data=owns_data, timed_out=timed_out)
    return Node(name=name, reachable=True, writable=state.writable, executed=gtid.parse(flavor, state.gtid),
                retrieved=gtid.parse(flavor, state.retrieved) if state.retrieved else None, origin=state.origin,
                source=state.source_host.split(".", 1)[0] if state.source_host else None,
                io_running=state.io_running == "Yes", lag=state.lag, quarantined=quarantined,
                diverged=state.io_errno == 1236, owns_data=owns_data)


@dataclass(frozen=True)
class Verdict:
    act: bool
    reason: str


@dataclass(frozen=True)
class Election:
    candidate: str | None
    reason: str
    lost: dict[str, str] = field(default_factory=dict)  # node -> GTIDs it has that the candidate lacks
    excluded: dict[str, str] = field(default_factory=dict)  # node -> why it may not be promoted
    errant: frozenset[str] = frozenset()  # the excluded nodes holding errant transactions: to quarantine

    @property
    def safe(self) -> bool:
        return self.candidate is not None and not self.lost


def errant(node: Node, others: list[Node]) -> Gtids | None:
    """Transactions this node originated itself that none of the others has: written on a
    replica, or the unacknowledged tail of a primary that was failed over."""
    if node.executed is None:
        return None
    everyone = [o.known for o in others if o.name != node.name and o.known is not None]
    if not everyone:
        return None
    theirs = reduce(lambda a, b: a.union(b), everyone)
    extra = node.executed.minus(theirs).originated_by(node.origin)
    return extra or None


def unknown_to(node: Node, primary: Node) -> Gtids | None:
    """What a node holds that the primary it is to follow has never seen: errant transactions,
    which replication would refuse or, worse, skip. None when it may follow the primary."""
    if node.executed is None or primary.known is None or primary.known.contains(node.executed):
        return None
    return node.executed.minus(primary.known)


def short_of(primary: Node, nodes: list[Node]) -> dict[str, Gtids]:
    """What other nodes hold that `primary` has never seen, leaving out what each originated itself (a
    write on a replica, a lost primary's unacknowledged tail: errant, theirs to lose). Anything else
    came from a primary of the cluster's history, so a primary short of it holds less than a node with
    data (an empty pod initialized over the cluster's data): never to be recorded, nor cloned from."""
    if primary.known is None:
        return {}
    short = {}
    for n in nodes:
        if n.name == primary.name or n.executed is None:
            continue
        missing = n.executed.minus(primary.known)
        foreign = missing.minus(missing.originated_by(n.origin)) if n.origin else missing
        if foreign:
            short[n.name] = foreign
    return short


def is_diverged(node: Node, nodes: list[Node]) -> bool:
    """Its source refused its GTID position (error 1236) because their histories differ. Not when
    the source is a fenced node holding less than it: a primary back from a crash whose recovery cut
    what its storage engine had not made durable yet (MariaDB commits in the engine after the
    binlog, and semi-sync had a replica acknowledge it first) refuses the replicas that are merely
    ahead of it; they hold what it lost."""
    if not node.diverged:
        return False
    source = next((o for o in nodes if o.name == node.source), None)
    behind_it = (source is not None and source.reachable and not source.writable and source.known is not None
                 and node.known is not None and node.known.contains(source.known)
                 and not source.known.contains(node.known))
    return not behind_it


def diverged(nodes: list[Node]) -> list[str]:
    """Nodes whose source refused their GTID position for a history of their own, not quarantined yet."""
    return [n.name for n in nodes if is_diverged(n, nodes) and not n.quarantined]


def silent_owners(nodes: list[Node], primary: str | None) -> list[str]:
    """Nodes that hold data but do not answer, the lost primary aside. Semi-sync needs one replica's
    acknowledgement, so a silent replica may be the only one holding acknowledged writes: no election
    may leave it out (after a full restart, the stale node that answers first would win). What the lost
    primary alone holds was never acknowledged."""
    return [n.name for n in nodes if n.owns_data and not n.reachable and not n.quarantined and n.name != primary]


def wait_for_silent(silent: list[str]) -> str:
    return (f"{', '.join(silent)} {'holds' if len(silent) == 1 else 'hold'} data but "
            f"{'does' if len(silent) == 1 else 'do'} not answer: no election until "
            f"{'it does' if len(silent) == 1 else 'they do'} (acknowledged writes may be there alone)")


def primary_lost(nodes: list[Node], primary: str | None) -> Verdict:
    """The primary is lost only when it does not answer here AND the replicas that answer say
    they lost it too (their receivers are down): one flaky probe never fails over. No election
    while a node that holds data is silent (see silent_owners)."""
    writable = [n for n in nodes if n.reachable and n.writable]
    if writable:
        return Verdict(False, f"{', '.join(n.name for n in writable)} is writable")
    silent = silent_owners(nodes, primary)
    if silent:
        return Verdict(False, wait_for_silent(silent))
    by_name = {n.name: n for n in nodes}
    p = by_name.get(primary or "")
    if p is not None and p.reachable:
        return Verdict(True, f"{primary} answers but is fenced (it restarted): no writable node")
    replicas = [n for n in nodes if n.name != primary and n.reachable and not n.quarantined]
    if not replicas:
        return Verdict(False, f"{primary or 'the primary'} does not answer, and neither does any replica")
    connected = [n.name for n in replicas if n.io_running and n.source == primary]
    if connected:
        return Verdict(False, f"{primary} does not answer here, but {', '.join(connected)} still "
                              "receive from it: not failing over on this alone")
    return Verdict(True, f"{primary or 'the primary'} does not answer, and no replica receives from it "
                         f"({', '.join(n.name for n in replicas)} confirm)")


def elect(nodes: list[Node], max_lag: int | None = None, to: str | None = None,
          avoid: str | None = None, planned: bool = False, primary: str | None = None) -> Election:
    """The node to promote: the one holding everything any node has (so no acknowledged
    write is lost), never an errant or quarantined node, never one lagging beyond max_lag.
    `to` forces the choice (it is still checked); `avoid` loses ties; lost GTIDs are reported, never hidden.
    `planned`: the primary answers, fenced, and the candidate receives everything from it before it
    takes writes, so nothing can be lost and only what each node still has to apply counts.
    `primary`: the recorded primary. What it alone holds is never errant: no failover has moved the
    role since it wrote it, so when it answers (it restarted) that is the newest history, not a stray
    (its replicas may have lost their copies of acknowledged commits in their own crash recovery)."""
    excluded: dict[str, str] = {}
    errant_nodes: set[str] = set()
    eligible = []
    for n in nodes:
        if not n.reachable or n.known is None:
            excluded[n.name] = "does not answer"
        elif n.quarantined:
            excluded[n.name] = "quarantined"
        elif is_diverged(n, nodes):
            excluded[n.name] = "errant transactions: its source refused its GTID position (diverged)"
            errant_nodes.add(n.name)
        elif n.name != primary and (e := errant(n, nodes)) is not None:
            excluded[n.name] = f"errant transactions {e}"
            errant_nodes.add(n.name)
        elif max_lag is not None and n.lag is not None and n.lag > max_lag and not n.writable:
            excluded[n.name] = f"lags {n.lag}s (limit {max_lag}s)"
        else:
            eligible.append(n)
    if to is not None:
        if to in excluded:
            return Election(None, f"{to} cannot be promoted: {excluded[to]}", excluded=excluded,
                            errant=frozenset(errant_nodes))
        if to not in {n.name for n in eligible}:
            return Election(None, f"{to} is not a pod of this cluster", excluded=excluded,
                            errant=frozenset(errant_nodes))
        chosen = next(n for n in eligible if n.name == to)
    elif not eligible:
        return Election(None, "no node may be promoted", excluded=excluded, errant=frozenset(errant_nodes))
    else:
        sources = {n.source for n in nodes if n.source}

        def rank(n: Node) -> tuple:
            # Most transactions first (unless planned); among equals not `avoid` (a lost primary back
            # from a crash), then the one that has applied the most (it takes writes soonest: what it
            # still has to apply is outage), then the current source of the others (no repointing),
            # then the lowest ordinal.
            held = () if planned else (n.known.count(), n.name != avoid)
            return (*held, n.executed.count(), n.name in sources, -_ordinal(n.name))

        chosen = max(eligible, key=rank)
    if planned:
        return Election(chosen.name, f"{chosen.name} " + ("was named" if to else "has the least left to apply"),
                        excluded=excluded, errant=frozenset(errant_nodes))
    lost = {}
    for n in nodes:
        if n.name == chosen.name or n.known is None:
            continue
        missing = n.known.minus(chosen.known)
        if n.name != primary and (e := errant(n, nodes)) is not None:
            missing = missing.minus(e)  # its own stray writes: quarantined, never replicated
        if missing:
            lost[n.name] = str(missing)
    reason = (f"{chosen.name} holds every transaction any node has" if not lost
              else f"{chosen.name} lacks transactions other nodes have")
    return Election(chosen.name, reason, lost=lost, excluded=excluded, errant=frozenset(errant_nodes))


def switchover_candidate(nodes: list[Node], primary: str, to: str | None = None) -> Election:
    """Planned: the healthy replica (or `to`) of a healthy primary with the least left to apply."""
    replicas = [n for n in nodes if n.name != primary]
    broken = {n.name: "not replicating from the primary" for n in replicas
              if n.reachable and not n.quarantined and (n.source != primary or not n.io_running)}
    if to is not None and to == primary:
        return Election(None, f"{to} is the primary already")
    if to in broken:
        return Election(None, f"{to} cannot take over: {broken[to]}", excluded=broken)
    candidates = [n for n in replicas if n.name not in broken]
    result = elect(candidates, to=to, planned=True)
    return Election(result.candidate, result.reason, excluded={**broken, **result.excluded}, errant=result.errant)


def repoint_order(replicas: list[str], old: str | None, acks: int) -> tuple[list[str], list[str]]:
    """Which nodes follow the new primary before it takes writes, and which after. A switchover's old
    primary goes last: on MySQL, turning its semi-sync source off waits for its acknowledgement receiver
    to notice (up to 1 s), and that need not delay anyone's writes, unless its acknowledgement is one of
    the `acks` the new primary's first commit needs (0: semi-sync off)."""
    if old not in replicas or len(replicas) - 1 < acks:
        return list(replicas), []
    return [r for r in replicas if r != old], [old]


def _ordinal(name: str) -> int:
    try:
        return int(name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0
