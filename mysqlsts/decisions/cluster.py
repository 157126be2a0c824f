"""The controller's whole decision, as one pure step: what the nodes said and who is recorded as
primary go in; a named cluster state and exactly one action with its reason come out. The
controller observes, calls `decide`, does that one action, and looks again at the next check:
every rule that used to be spread over the controller's branches is here, in priority order."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from mysqlsts.decisions.failover import Node, diverged, is_diverged, primary_lost, short_of, unknown_to


class State(Enum):
    HEALTHY = "healthy"  # one writable node, the recorded primary
    SPLIT_BRAIN = "split-brain"  # several writable nodes
    PRIMARY_LOST = "primary-lost"  # no writable node, and the evidence says it is gone
    PRIMARY_SILENT = "primary-silent"  # the primary times out: slow or hung, not for long enough to tell
    NO_PRIMARY = "no-primary"  # no writable node, and no election may happen yet
    UNRECORDED_PRIMARY = "unrecorded-primary"  # one writable node that is not the recorded primary
    DEGRADED = "degraded"  # the recorded primary is healthy; some other node needs an action


class Action(Enum):
    NONE = "none"
    WAIT = "wait"  # nothing may be done yet; look again
    BLOCKED = "blocked"  # a failover is due but the block period after the last one has not passed
    FAILOVER = "failover"
    FENCE = "fence"  # `pod` is writable besides the recorded primary
    QUARANTINE = "quarantine"  # `pod` holds errant transactions
    REJOIN = "rejoin"  # `pod` is fenced and follows no one, or the wrong node: point it at `source`
    PUBLISH = "publish"  # role labels are out of date: publish the primary again
    RECLONE = "reclone"  # `pod` is quarantined and autoReclone is on
    RECORD = "record"  # `pod` is the one writable node but not recorded: record it (under the cluster lock)


@dataclass(frozen=True)
class Memory:
    """What the controller remembers between two checks: the decision needs two looks at a stray
    (a node between two steps of its own rejoin is not one), how long the primary has been timing
    out (slow or hung: only the duration tells), and when a failover may happen again."""

    strays: frozenset[str] = frozenset()
    blocked_for: float = 0.0  # seconds left of the block period after the last failover
    silent_for: float = 0.0  # seconds since the first of the unbroken run of probes the primary timed out on


@dataclass(frozen=True)
class Decision:
    state: State
    action: Action
    reason: str
    pod: str | None = None  # the node the action is for
    source: str | None = None  # REJOIN: the node it will follow
    strays: frozenset[str] = frozenset()  # fenced nodes following the wrong source now: remember them


def shortage(short: dict[str, object]) -> str:
    return "; ".join(f"{gtids} that {name} holds" for name, gtids in short.items())


def strays(nodes: list[Node], primary: str) -> frozenset[str]:
    """Fenced, answering, healthy nodes that do not follow the primary."""
    return frozenset(n.name for n in nodes if n.reachable and not n.writable and not n.quarantined
                     and not is_diverged(n, nodes) and n.source != primary)


def decide(nodes: list[Node], recorded: str | None, memory: Memory = Memory(), stale_labels: tuple[str, ...] = (),
           auto_reclone: bool = False, hung_after: float = 0.0) -> Decision:
    """`hung_after`: seconds a primary that times out (rather than refuses) must stay silent before it
    counts as hung: a stall shorter than that is a slow primary, and a failover would cost more than
    waiting. A primary that refuses connections, or whose pod is gone, is down at once."""
    writable = [n.name for n in nodes if n.reachable and n.writable]
    if len(writable) > 1:
        if recorded not in writable:
            return Decision(State.SPLIT_BRAIN, Action.WAIT,
                            f"{', '.join(writable)} are writable and none is the recorded primary "
                            f"({recorded or 'none recorded'}): fencing none; a person must choose")
        extra = next(n for n in writable if n != recorded)
        return Decision(State.SPLIT_BRAIN, Action.FENCE, f"writable besides the recorded primary {recorded}",
                        pod=extra)
    verdict = primary_lost(nodes, recorded)
    if verdict.act:
        lost = next((n for n in nodes if n.name == recorded), None)
        if lost is not None and lost.timed_out and memory.silent_for < hung_after:
            return Decision(State.PRIMARY_SILENT, Action.WAIT,
                            f"{recorded} times out: slow or hung; hung once silent for {hung_after:g}s")
        if memory.blocked_for > 0:
            return Decision(State.PRIMARY_LOST, Action.BLOCKED,
                            f"{verdict.reason}; failover blocked for another {memory.blocked_for:.0f}s "
                            "after the last one")
        return Decision(State.PRIMARY_LOST, Action.FAILOVER, verdict.reason)
    refused = diverged(nodes)
    if refused:
        state = State.DEGRADED if writable == [recorded] else State.NO_PRIMARY
        return Decision(state, Action.QUARANTINE,
                        "its source refuses its GTID position (error 1236): errant", pod=refused[0])
    if not writable:
        return Decision(State.NO_PRIMARY, Action.WAIT, verdict.reason)
    if writable != [recorded]:
        # Nodes boot fenced and only a promotion unfences one, so the one writable node is the primary:
        # a command that moved it and died before recording it leaves this. The controller records it
        # once it holds the cluster lock, i.e. once no command is still in the middle of moving it.
        # Unless it holds less than a node with data: then it is no primary of this cluster's history.
        short = short_of(next(n for n in nodes if n.name == writable[0]), nodes)
        if short:
            return Decision(State.UNRECORDED_PRIMARY, Action.WAIT, f"{writable[0]} is writable but lacks "
                            f"{shortage(short)}: not recording it; a person must choose", pod=writable[0])
        return Decision(State.UNRECORDED_PRIMARY, Action.RECORD,
                        f"{writable[0]} is the one writable node but the recorded primary is {recorded or 'none'}",
                        pod=writable[0])
    if stale_labels:
        return Decision(State.DEGRADED, Action.PUBLISH, "role labels out of date", pod=stale_labels[0])
    now = strays(nodes, recorded)
    primary = next(n for n in nodes if n.name == recorded)
    for name in sorted(now & memory.strays):
        node = next(n for n in nodes if n.name == name)
        extra = unknown_to(node, primary)
        short = short_of(primary, [node])
        if short:  # the primary is the one short: quarantined, the node would be recloned from it
            return Decision(State.DEGRADED, Action.WAIT, f"{recorded} is the primary but lacks "
                            f"{shortage(short)}: not quarantining {name}; a person must choose",
                            pod=name, strays=now)
        if extra is not None:
            return Decision(State.DEGRADED, Action.QUARANTINE, f"holds {extra} that {recorded} lacks",
                            pod=name, strays=now)
        return Decision(State.DEGRADED, Action.REJOIN,
                        f"fenced and following {node.source or 'no one'}; {recorded} is the primary",
                        pod=name, source=recorded, strays=now)
    quarantined = next((n.name for n in nodes if n.quarantined), None)
    short = short_of(primary, [n for n in nodes if n.name == quarantined])
    if quarantined is not None and auto_reclone and short:
        return Decision(State.DEGRADED, Action.WAIT, f"{quarantined} is quarantined, but {recorded} lacks "
                        f"{shortage(short)}: not recloning it from {recorded}; a person must choose",
                        pod=quarantined, strays=now)
    if quarantined is not None and auto_reclone:
        return Decision(State.DEGRADED, Action.RECLONE,
                        "quarantined (errant transactions); controller.autoReclone is on", pod=quarantined,
                        strays=now)
    return Decision(State.HEALTHY, Action.NONE, f"{recorded} is the primary", strays=now)
