"""The order a changed pod template is rolled out in, without servers: replicas first (highest
ordinal first), then a switchover, then the old primary; nothing when nothing is outdated."""

from __future__ import annotations

import pytest

from mysqlsts.orchestrator import rollout
from mysqlsts.platform.base import PodInfo


class StubPlatform:
    inside = True

    def __init__(self, outdated: set[str], primary: str, replicas: int, log: list[str]):
        self.outdated, self.primary, self.replicas, self.log = outdated, primary, replicas, log

    def pods(self) -> list[PodInfo]:
        return [PodInfo(name=f"mysql-{i}", ordinal=i, fqdn="", address=None, running=True, ready=True, phase="Running",
                        restarts=0, has_data=True, outdated=f"mysql-{i}" in self.outdated)
                for i in range(self.replicas)]

    def recorded_primary(self) -> str:
        return self.primary


class StubCluster:
    def __init__(self, platform: StubPlatform):
        self.platform, self.values = platform, {"replicas": platform.replicas}

    def restart_pod(self, name: str, timeout: float) -> None:
        assert timeout > 0
        self.platform.log.append(f"restart {name}")


@pytest.fixture
def log(monkeypatch) -> list[str]:
    done: list[str] = []
    monkeypatch.setattr(rollout, "switch_over", lambda cluster, timeout: done.append("switchover"))
    return done


def test_replicas_first_then_a_switchover_then_the_old_primary(log):
    cluster = StubCluster(StubPlatform({"mysql-0", "mysql-1", "mysql-2"}, "mysql-1", 3, log))
    assert rollout.roll(cluster, 60) == ["mysql-2", "mysql-0", "mysql-1"]
    assert log == ["restart mysql-2", "restart mysql-0", "switchover", "restart mysql-1"]


def test_an_up_to_date_primary_is_not_switched_over(log):
    cluster = StubCluster(StubPlatform({"mysql-2"}, "mysql-0", 3, log))
    assert rollout.roll(cluster, 60) == ["mysql-2"]
    assert log == ["restart mysql-2"]


def test_nothing_outdated_nothing_restarted(log):
    assert rollout.roll(StubCluster(StubPlatform(set(), "mysql-0", 3, log)), 60) == []
    assert log == []


def test_a_single_pod_is_restarted_without_a_switchover(log):
    assert rollout.roll(StubCluster(StubPlatform({"mysql-0"}, "mysql-0", 1, log)), 60) == ["mysql-0"]
    assert log == ["restart mysql-0"]


def test_with_no_recorded_primary_nothing_is_restarted(log):
    """Which pod is the primary decides the order: unknown, a replica could be the primary."""
    assert rollout.roll(StubCluster(StubPlatform({"mysql-0", "mysql-1"}, None, 2, log)), 60) == []
    assert log == []
