"""Rolling out a changed pod template. The StatefulSet updates OnDelete, so mysqlsts
decides the order: replicas one at a time, then a switchover, then the old primary.
Writes stop only for the switchover's window, with or without the controller."""

from __future__ import annotations

import time

from mysqlsts.orchestrator.cluster import Cluster
from mysqlsts.output import progress


def roll(cluster: Cluster, timeout: float) -> list[str]:
    """Restart every pod that runs an older template; returns them in the order restarted."""
    deadline = time.monotonic() + timeout
    platform = cluster.platform
    pods = [p for p in platform.pods() if p.ordinal < cluster.values["replicas"]]
    outdated = {p.name: p.ordinal for p in pods if p.outdated}
    if not outdated:
        return []
    primary = platform.recorded_primary()
    if primary is None:  # which pod to switch away from is not known: restart nothing
        progress(f"not rolling {', '.join(sorted(outdated))} to the new pod template: no primary is recorded yet "
                 "(run bootstrap again once the cluster verifies)")
        return []
    order = sorted((n for n in outdated if n != primary), key=lambda n: -outdated[n])  # as RollingUpdate would
    for name in order:
        progress(f"{name}: restarting on the new pod template")
        cluster.restart_pod(name, deadline - time.monotonic())
    if primary in outdated:
        if len(pods) > 1:
            progress(f"{primary}: the primary runs the old template: switching over first")
            switch_over(cluster, deadline - time.monotonic())
        else:
            progress(f"{primary}: the only pod; writes stop until it is back")
        cluster.restart_pod(primary, deadline - time.monotonic())
        order.append(primary)
    return order


def switch_over(cluster: Cluster, timeout: float) -> None:
    """Away from the old primary before it restarts, for a caller that holds the lock."""
    cluster.switchover(timeout)
