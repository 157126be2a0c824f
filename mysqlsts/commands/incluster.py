"""Where a step that speaks SQL to the pods runs: the one place that decides it.

The pods' per-pod DNS names resolve only inside the cluster's network. A step runs
here when this process is (or can join) that network; otherwise the same command
runs as `mysqlsts ARGV -o json` in a Job inside the cluster and its JSON report
comes back. Only this layer builds such an argv: the orchestrator asks for the
step through `RoleSteps`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

from mysqlsts.orchestrator.cluster import Cluster
from mysqlsts.orchestrator.failover import Roles
from mysqlsts.platform.base import Platform

T = TypeVar("T")


def in_cluster(platform: Platform, values: dict[str, Any], argv: list[str], timeout: float,
               here: Callable[[], T], guard: AbstractContextManager[Any] | None = None) -> T | dict[str, Any]:
    """`here()` in the cluster's network (under `guard`, e.g. the lock, only then: a Job takes its own),
    else `mysqlsts ARGV` in a Job, whose report is returned."""
    if not platform.inside:
        return platform.run_in_cluster(values, argv, timeout)
    with guard or nullcontext():
        platform.enter_network()
        return here()


def caller_holds_lock(platform: Platform) -> list[str]:
    """The flag for a Job run while this process holds the cluster lock: it names the holder, and the Job
    checks before each step that the Lease is still that holder's (this process may be killed or cut off
    while the Job runs on). No holder (a platform that runs no Job): no flag, the command locks itself."""
    holder = platform.lock_holder()
    return ["--caller-holds-lock", holder] if holder else []


class RoleSteps:
    """The role changes a lifecycle step needs midway, for a caller that already holds the lock."""

    def recover(self, cluster: Cluster) -> None:
        in_cluster(cluster.platform, cluster.values,
                   ["failover", "--if-no-primary", *caller_holds_lock(cluster.platform)], 120,
                   lambda: Roles(cluster).recover())

    def switchover(self, cluster: Cluster, timeout: float) -> None:
        in_cluster(cluster.platform, cluster.values, ["switchover", *caller_holds_lock(cluster.platform)], timeout,
                   lambda: Roles(cluster).switchover())
