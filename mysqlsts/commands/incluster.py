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


class RoleSteps:
    """The role changes a lifecycle step needs midway, for a caller that already holds the lock."""

    def recover(self, cluster: Cluster) -> None:
        in_cluster(cluster.platform, cluster.values, ["failover", "--if-no-primary", "--caller-holds-lock"], 120,
                   lambda: Roles(cluster).recover())

    def switchover(self, cluster: Cluster, timeout: float) -> None:
        in_cluster(cluster.platform, cluster.values, ["switchover", "--caller-holds-lock"], timeout,
                   lambda: Roles(cluster).switchover())
