"""Pure decisions over observed state: who is primary, what role each pod has,
and which health checks pass. No I/O here; tests feed observations directly."""

from __future__ import annotations

from dataclasses import dataclass

from mysqlsts.decisions.lag import LagBound
from mysqlsts.model import ServerState


@dataclass(frozen=True)
class PodView:
    """One pod as observed: platform facts plus what its server says (None if unreachable)."""

    name: str
    fqdn: str
    address: str | None
    resolved: str | None  # what the pod's DNS name resolves to right now
    running: bool
    ready: bool
    state: ServerState | None
    error: str = ""
    quarantined: bool = False
    has_data: bool = False  # a PVC / local data directory: its node counts in elections even when silent
    role_label: str | None = None  # the role it is published with (Kubernetes label), None if not labelled
    timed_out: bool = False  # it did not answer in time (hung, or slow), rather than refuse (down)
    behind: int | None = None  # transactions received but not applied yet (None: unknown, or no state)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def writable(views: list[PodView]) -> list[str]:
    return [v.name for v in views if v.state is not None and v.state.writable]


def observed_primary(views: list[PodView]) -> str | None:
    """The primary is the one writable node; with none or several there is no primary to name."""
    w = writable(views)
    return w[0] if len(w) == 1 else None


def role(view: PodView, primary: str | None) -> str:
    if view.quarantined:
        return "quarantined"
    if view.state is None:
        return "unknown"
    if view.state.writable:
        return "primary" if view.name == primary else "writable!"
    return "replica"


def published_role(name: str, quarantined: bool, primary: str | None) -> str:
    """The role label a pod should carry: what the primary and read Services select."""
    return "primary" if name == primary else ("quarantined" if quarantined else "replica")


def stale_role_labels(views: list[PodView], primary: str | None) -> list[str]:
    """Pods whose role label is not what it should be: a re-created pod comes with the template's."""
    return [v.name for v in views
            if v.role_label is not None and v.role_label != published_role(v.name, v.quarantined, primary)]


def pod_of(host: str | None) -> str | None:
    return host.split(".", 1)[0] if host else None


def verify_checks(views: list[PodView], recorded: str | None, primary_fqdn: str, primary_name_reaches: str | None,
                  bound: LagBound, semi_sync: bool) -> list[Check]:
    """primary_name_reaches: the pod a connection through the primary name lands on (it says who it
    is), so the check holds for a DNS record (local) and a Service in front of the pod (Kubernetes)."""
    checks: list[Check] = []
    for v in views:
        ok = v.address is not None and v.resolved == v.address
        checks.append(Check(f"dns {v.fqdn}", ok, f"resolves to {v.resolved or 'nothing'}, "
                                                   f"pod address {v.address or 'none (not running)'}"))
    for v in views:
        checks.append(Check(f"pod {v.name} running and ready", v.running and v.ready,
                            "ready" if v.ready else ("not ready" if v.running else "not running")
                            + (f": {v.error}" if v.error else "")))
    w = writable(views)
    checks.append(Check("exactly one writable node", len(w) == 1, ", ".join(w) or "none writable"))
    primary = observed_primary(views)
    checks.append(Check("writable node is the recorded primary", primary is not None and primary == recorded,
                        f"recorded {recorded or 'none'}, writable {', '.join(w) or 'none'}"))
    if primary is not None:
        pview = next(v for v in views if v.name == primary)
        checks.append(Check(f"primary name {primary_fqdn}", primary_name_reaches == primary,
                            f"reaches {primary_name_reaches or 'nothing'}, the primary is {primary}"))
        if semi_sync:
            checks.append(semi_sync_check(pview.state))
    for v in views:
        if v.name == primary:
            continue
        checks.append(replica_check(v, primary, views, bound, semi_sync))
    return checks


def semi_sync_check(state: ServerState) -> Check:
    name = "semi-sync active on the primary"
    if not state.semi_sync_source_on:
        return Check(name, False, "OFF: commits are not waiting for a replica (async)")
    if not state.semi_sync_waits_alone:
        return Check(name, False, "commits would not wait while no replica is connected (async then)")
    return Check(name, True, "acknowledged commits")


def unsettled(views: list[PodView], semi_sync: bool, acks: int, bound: LagBound) -> list[str]:
    """What a look taken just after a change may still see moving: a pod's DNS name resolving to nothing
    or to the address its predecessor had (cached for the answer's TTL), a replica back from a stop
    applying what it missed (healthy threads, past the lag bound: its lag is the age of the transaction
    it applies, so it falls as it catches up, and may first rise after the pod turned ready on an
    applier that had nothing to do yet), and the first primary whose agent has not yet seen that its
    replicas joined (it then holds every commit for an acknowledgement)."""
    moving = [f"the DNS name of {v.name}" for v in views if v.running and v.address and v.resolved != v.address]
    moving += [f"{v.name} catching up ({behind})" for v in views
               if v.state is not None and v.state.io_running == "Yes" and v.state.sql_running == "Yes"
               and not v.state.last_error and (behind := bound.exceeded(v.state.lag, v.behind))]
    primary = observed_primary(views)
    if semi_sync and primary is not None:
        state = next(v.state for v in views if v.name == primary)
        following = [v.name for v in views if v.state is not None and pod_of(v.state.source_host) == primary
                     and v.state.io_running == "Yes"]
        if not state.semi_sync_waits_alone and len(following) >= acks:
            moving.append(f"the semi-sync of {primary}, which {', '.join(following)} replicate from")
    return moving


def replica_check(v: PodView, primary: str | None, views: list[PodView], bound: LagBound, semi_sync: bool) -> Check:
    name = f"replica {v.name} replicates from the primary"
    if v.quarantined:
        return Check(name, False, "quarantined (errant transactions): re-clone it")
    s = v.state
    if s is None:
        return Check(name, False, f"unreachable: {v.error or 'no answer'}")
    problems = []
    pfqdn = next((p.fqdn for p in views if p.name == primary), None)
    if s.writable:
        problems.append("writable")
    if s.source_host is None:
        problems.append("not configured as a replica")
    elif pfqdn is not None and s.source_host != pfqdn:
        problems.append(f"source is {s.source_host}, not {pfqdn}")
    if s.io_running != "Yes" or s.sql_running != "Yes":
        problems.append(f"threads io={s.io_running} sql={s.sql_running}")
    if s.last_error:
        problems.append(f"error: {s.last_error}")
    behind = bound.exceeded(s.lag, v.behind)
    if behind:
        problems.append(behind)
    if semi_sync and not s.semi_sync_replica_on:
        problems.append("semi-sync replica side OFF")
    pending = f", {v.behind} received not applied" if v.behind is not None else ""
    detail = "; ".join(problems) or f"from {s.source_host}, io/sql Yes, lag {s.lag}s{pending}"
    return Check(name, not problems, detail)
