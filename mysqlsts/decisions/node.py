"""The pod agent's decisions about its own node, pure: which role to settle in from what the peers
say (never from the ordinal), and whether the pod can serve its role (readiness).

The agent (mysqlsts/agent/) observes its server and the peers, calls `settle`, and does the one
action; the orchestrator moves roles with the same mysql/ code. A node that held data never
promotes itself: only a brand-new first primary (the bootstrap marker) with no peer answering does,
so an old primary coming back cannot unfence itself during a failover."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from mysqlsts.decisions.failover import Node, unknown_to
from mysqlsts.decisions.lag import LagBound
from mysqlsts.model import ServerState


class NodeAction(Enum):
    PRIMARY = "primary"  # already writable: nothing to do
    FOLLOWING = "following"  # already replicating from `primary`: nothing to do
    FOLLOW = "follow"  # replicate from `primary`, the one writable peer
    QUARANTINE = "quarantine"  # holds transactions `primary` lacks: stay fenced until re-cloned
    PROMOTE = "promote"  # the cluster's first primary, just initialized: lift the fence
    WAIT = "wait"  # nothing this node may decide alone: look again

    @property
    def settled(self) -> bool:
        """The role is settled (or never will be by this node): stop looking."""
        return self is not NodeAction.WAIT


@dataclass(frozen=True)
class NodeDecision:
    action: NodeAction
    reason: str
    primary: str | None = None  # the primary the node is, follows or is to follow


def settle(own: Node, peers: list[Node], fresh_primary: bool, published: str | None = None) -> NodeDecision:
    """One look at the node and its peers, in this order:
    1. the node is writable, or replicates with its receiver running: settled already;
    2. exactly one peer is writable: follow it, unless the node holds transactions that peer
       lacks (errant): then quarantine; but only when it is the recorded primary, as far as the
       node can tell: `published` is the pod the cluster's primary name reaches (None: no pod
       answers there, as before the first primary is published); a writable peer that is not the
       pod it names is not followed, nor judged against (a person or a command made it writable);
    3. several peers are writable: refuse to pick one;
    4. the node is the first primary its init container created a moment ago (fresh_primary)
       and no peer answers: promote itself;
    5. otherwise wait for the orchestrator (CLI or controller) to choose a primary."""
    if own.writable:
        return NodeDecision(NodeAction.PRIMARY, "writable: this pod is the primary", own.name)
    if own.source is not None and own.io_running:
        return NodeDecision(NodeAction.FOLLOWING, f"replicating from {own.source}", own.source)
    answering = [p for p in peers if p.reachable and p.name != own.name]
    writable = [p.name for p in answering if p.writable]
    if len(writable) > 1:
        return NodeDecision(NodeAction.WAIT, f"more than one writable peer ({', '.join(writable)}): refusing to "
                                             "pick one; waiting for the orchestrator")
    if len(writable) == 1:
        primary = next(p for p in answering if p.writable)
        if published is not None and published != primary.name:
            return NodeDecision(NodeAction.WAIT, f"{primary.name} is writable but the primary name reaches "
                                                 f"{published}: following only the recorded primary; waiting "
                                                 "for the orchestrator")
        extra = unknown_to(own, primary)
        if extra is not None:
            return NodeDecision(NodeAction.QUARANTINE, f"errant transactions: {extra} is not contained in "
                                                       f"{primary.name}'s GTIDs", primary.name)
        return NodeDecision(NodeAction.FOLLOW, f"{primary.name} is the one writable peer", primary.name)
    if fresh_primary and not answering:
        return NodeDecision(NodeAction.PROMOTE, "the cluster's first primary, just initialized, and no peer answers",
                            own.name)
    followed = sorted({p.source for p in answering if p.source})
    if followed:
        return NodeDecision(NodeAction.WAIT, f"no writable peer; the peers follow {', '.join(followed)}; waiting "
                                             "for the orchestrator to choose a primary")
    return NodeDecision(NodeAction.WAIT, f"no primary found among the peers yet ({len(answering)} answered); "
                                         "waiting")


def acknowledgers(own: str, peers: list[Node]) -> list[str]:
    """Peers that replicate from `own` with their receiver connected: the ones that acknowledge its commits."""
    return sorted(p.name for p in peers if p.reachable and p.source == own and p.io_running)


def serving_role(state: ServerState | None, not_ready: str | None) -> str:
    """What the pod can serve as right now, for a new pod choosing a clone donor (a ready replica
    spares the primary): `primary`, `replica`, or `none` when it is not ready or does not answer."""
    if state is None or not_ready is not None:
        return "none"
    return "primary" if state.writable else "replica"


def readiness(state: ServerState, quarantined: bool, bound: LagBound, pending: int | None) -> str | None:
    """Why the pod cannot serve its role, or None when it can: the primary is writable, a replica
    replicates with both threads running, within the bound in seconds and in transactions received
    but not applied (`pending`). The same conditions as a replica's verify check
    (decisions/topology.replica_check) that a pod can judge about itself: which node is the primary
    and semi-sync are the verifier's to judge."""
    if quarantined:
        return "quarantined: errant transactions"
    if state.writable:
        return None
    if state.source_host is None:
        return "read-only and not replicating"
    if state.io_running != "Yes" or state.sql_running != "Yes":
        return f"replication threads: io={state.io_running or '-'} sql={state.sql_running or '-'}"
    return bound.exceeded(state.lag, pending)
