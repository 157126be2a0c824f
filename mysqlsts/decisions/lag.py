"""How far each replica's applier is behind what it has received, and how long it would take to catch
up: what a failover waits for before the candidate takes writes. Pure, over the controller's and the
agents' looks: the bound a replica must keep to serve reads, the controller's expected catch-up, and
the primary's commit throttle (flow control) that keeps the best candidate within a bound."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mysqlsts.decisions.failover import Node, node_of_state
from mysqlsts.decisions.gtid import GtidError
from mysqlsts.flavors import Flavor
from mysqlsts.model import ServerState

WINDOW_SECONDS = 10.0  # the apply rate is measured over the looks of about this long
DELAY_STEP_US = 1_000  # the throttle's first commit delay, and the smallest it keeps
DELAY_MAX_US = 100_000  # and its largest: each group commit waits at most this long (MySQL allows 1 s)


@dataclass(frozen=True)
class Sample:
    at: float  # monotonic seconds of the look
    applied: int  # transactions the node had applied (a count of its executed GTIDs)


def behind(node: Node) -> int | None:
    """Transactions received into the relay log but not applied yet (None: unknown)."""
    if node.executed is None or node.known is None:
        return None
    return max(0, node.known.count() - node.executed.count())


def unapplied(state: ServerState | None, flavor: Flavor) -> int | None:
    """`behind` for a server as it described itself; None when it did not, or is no replica."""
    if state is None or state.source_host is None:
        return None
    try:
        return behind(node_of_state("", state, flavor))
    except GtidError:
        return None


@dataclass(frozen=True)
class LagBound:
    """How far behind a replica may be and still serve reads: seconds behind its source (staleness),
    and transactions received but not applied (what a failover to it would wait for)."""

    seconds: int
    transactions: int | None  # None: not bounded (a pod rendered before the bound existed)

    def exceeded(self, lag: int | None, pending: int | None) -> str | None:
        """Why a replica with this lag and backlog is too far behind; None when it is not. An unknown
        lag is too far (the server cannot tell); an unknown backlog is not (its GTIDs were unreadable)."""
        if lag is None or lag > self.seconds:
            return f"lag {lag if lag is not None else '-'}s exceeds {self.seconds}s"
        if pending is not None and self.transactions is not None and pending > self.transactions:
            return f"{pending} transactions received but not applied exceeds {self.transactions}"
        return None


def commit_delay(backlogs: Sequence[int | None], current: int, limit: int | None) -> int:
    """The primary's next group-commit delay in microseconds, one look at a time (flow control, as
    Galera pauses writes while a node's queue is long): doubled from DELAY_STEP_US up to DELAY_MAX_US
    while every replica has more than `limit` transactions received but not applied, kept between
    limit/2 and limit, halved down to 0 below that. 0 when off (`limit` None) or when no replica
    says how far behind it is: a throttle with nobody to wait for buys nothing."""
    known = [b for b in backlogs if b is not None]
    if limit is None or not known:
        return 0
    best = min(known)
    if best > limit:
        return min(DELAY_MAX_US, max(DELAY_STEP_US, current * 2))
    if best > limit // 2:
        return current
    return current // 2 if current // 2 >= DELAY_STEP_US else 0


def remember(samples: Sequence[Sample], sample: Sample, window: float = WINDOW_SECONDS) -> tuple[Sample, ...]:
    """The samples to keep: the new one and those within `window` before it (a restart, whose count
    went down, starts over)."""
    kept = [s for s in samples if sample.at - s.at <= window and s.applied <= sample.applied]
    return (*kept, sample)


def apply_rate(samples: Sequence[Sample]) -> float | None:
    """Transactions applied per second from the oldest sample to the newest; None below 0.5 s apart."""
    if len(samples) < 2 or samples[-1].at - samples[0].at < 0.5:
        return None
    return (samples[-1].applied - samples[0].applied) / (samples[-1].at - samples[0].at)


def catch_up_seconds(pending: int | None, rate: float | None) -> float | None:
    """How long applying `pending` transactions takes at `rate`: None when either is unknown, or when
    transactions wait and nothing was applied lately (a stopped or stuck applier)."""
    if pending == 0:
        return 0.0
    if pending is None or not rate or rate <= 0:
        return None
    return pending / rate


def catch_up(nodes: Sequence[Node], history: dict[str, tuple[Sample, ...]]) -> dict[str, dict]:
    """Per answering replica: transactions behind, recent apply rate and the expected catch-up time,
    as the controller reports them when it decides to fail over."""
    out = {}
    for n in nodes:
        if not n.reachable or n.writable:
            continue
        pending = behind(n)
        rate = apply_rate(history.get(n.name, ()))
        expected = catch_up_seconds(pending, rate)
        out[n.name] = {"behind": pending, "apply_rate": None if rate is None else round(rate, 1),
                       "expected_seconds": None if expected is None else round(expected, 2)}
    return out
