"""What a drill's measurements mean: RTO, lost writes, split-brain, the verdict. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ack:
    id: int
    at: float  # monotonic seconds
    by: str = ""  # the pod that acknowledged it


def rto(acks: list[Ack], fault_at: float, old: str) -> float | None:
    """The outage a client saw: its last write acknowledged by the old primary (a write in flight
    at the fault may still land there) to its first one acknowledged by another node after the
    fault. None if writes never resumed."""
    after = [a.at for a in acks if a.at > fault_at and a.by != old]
    if not after:
        return None
    resumed = min(after)
    before = [a.at for a in acks if a.at < resumed and (a.by == old or a.at <= fault_at)]
    return resumed - (max(before) if before else fault_at)


def lost(acks: list[Ack], present: set[int]) -> list[int]:
    """Acknowledged writes missing from a node: the RPO, by id."""
    return sorted(a.id for a in acks if a.id not in present)


def overlaps(samples: list[tuple[float, list[str]]]) -> list[tuple[float, list[str]]]:
    """Moments at which more than one node was writable (split-brain)."""
    return [(t, nodes) for t, nodes in samples if len(nodes) > 1]


def acks_after_handover(acks: list[Ack]) -> list[Ack]:
    """Writes a node acknowledged after another node had acknowledged one since it last did: two nodes
    taking writes at once, as the clients saw it. The read_only samples cannot see across a partition
    (an isolated primary answers no sampler), the clients on its side can."""
    stale, retired, current = [], set(), None
    for ack in sorted(acks, key=lambda a: a.at):
        if ack.by in retired:
            stale.append(ack)
            continue
        if current is not None and ack.by != current:
            retired.add(current)
        current = ack.by
    return stale


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: list[str]


def verdict(rto_seconds: float | None, lost_writes: int, split_brain: int, healthy_after: bool,
            max_rto: float, max_lost: int, split_brain_acks: int = 0) -> Verdict:
    reasons = []
    if rto_seconds is None:
        reasons.append("writes never resumed through the primary name")
    elif rto_seconds > max_rto:
        reasons.append(f"RTO {rto_seconds:.2f}s exceeds drills.maxRTOSeconds {max_rto:g}s")
    if lost_writes > max_lost:
        reasons.append(f"{lost_writes} acknowledged writes lost (drills.maxLostWrites {max_lost})")
    if split_brain:
        reasons.append(f"two writable nodes seen at {split_brain} moment(s)")
    if split_brain_acks:
        reasons.append(f"{split_brain_acks} write(s) acknowledged by a node after another had taken writes over")
    if not healthy_after:
        reasons.append("the cluster was not healthy after the drill")
    return Verdict(not reasons, reasons)
