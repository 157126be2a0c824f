"""Probes, disruption budget, shutdown and deadlines of the rendered chart (issue 11, row 13).

Each decision is described in docs/architecture.md ("Probes, disruption and
shutdown"); these tests pin what the chart renders and that the hooks and
probes do what they claim when run.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from mysqlsts.chart import values as chart_values
from mysqlsts.chart.render import render
from mysqlsts.errors import BadInput
from mysqlsts.orchestrator.controller import Controller

SCRIPTS = Path(__file__).parent.parent / "charts" / "mysql-sts" / "scripts"


def objects(*sets: str) -> list[dict]:
    values = chart_values.load([], list(sets))
    return render(values, defaultdict(lambda: "not-a-secret"))


def one(objs: list[dict], kind: str) -> dict:
    (obj,) = [o for o in objs if o["kind"] == kind]
    return obj


def server_container(objs: list[dict]) -> dict:
    pod = one(objs, "StatefulSet")["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == "mysql")


def test_readiness_runs_every_few_seconds_and_times_out_within_its_period():
    probe = server_container(objects())["readinessProbe"]
    assert probe["periodSeconds"] >= 5
    assert probe["timeoutSeconds"] < probe["periodSeconds"]
    custom = server_container(objects("pod.readinessProbe.periodSeconds=10",
                                      "pod.readinessProbe.timeoutSeconds=4"))["readinessProbe"]
    assert (custom["periodSeconds"], custom["timeoutSeconds"]) == (10, 4)


def test_a_readiness_timeout_not_below_its_period_is_refused():
    with pytest.raises(BadInput, match=r"pod\.readinessProbe\.timeoutSeconds"):
        chart_values.load([], ["pod.readinessProbe.timeoutSeconds=5"])


def test_volume_ownership_changes_only_on_a_root_mismatch():
    pod = one(objects(), "StatefulSet")["spec"]["template"]["spec"]
    assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"


@pytest.mark.parametrize("replicas", [1, 2])
def test_no_disruption_budget_below_three_pods(replicas):
    assert [o for o in objects(f"replicas={replicas}") if o["kind"] == "PodDisruptionBudget"] == []


def test_three_pods_or_more_get_a_budget_of_one():
    assert one(objects(), "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert one(objects("replicas=5"), "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_a_budget_that_would_stall_semi_sync_is_refused():
    with pytest.raises(BadInput, match=r"podDisruptionBudget\.maxUnavailable: at most 1"):
        chart_values.load([], ["podDisruptionBudget.maxUnavailable=2"])
    chart_values.load([], ["podDisruptionBudget.maxUnavailable=2", "replicas=5"])  # 4 replicas, 1 ack: fine


def test_the_server_container_fences_before_it_stops_within_the_grace_period():
    objs = objects()
    command = server_container(objs)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:3] == ["bash", "/opt/mysqlsts/scripts/probe.sh", "prestop"]
    grace = one(objs, "StatefulSet")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert 0 < int(command[3]) < grace and grace >= 120
    with pytest.raises(BadInput, match=r"pod\.preStopSleepSeconds"):
        chart_values.load([], ["pod.preStopSleepSeconds=120"])


def test_the_drill_job_has_a_deadline_derived_from_the_drill_duration():
    for duration, deadline in ((60, 420), (600, 1500)):
        cron = one(objects("drills.schedule=0 3 * * 1", f"drills.durationSeconds={duration}"), "CronJob")
        assert cron["spec"]["concurrencyPolicy"] == "Forbid"
        assert cron["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] == deadline


def controller_container() -> dict:
    deployment = one(objects("controller.enabled=true"), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_the_controller_probes_check_the_loops_heartbeat(tmp_path):
    container = controller_container()
    heartbeat = next(e["value"] for e in container["env"] if e["name"] == "MYSQLSTS_HEARTBEAT_FILE")
    for kind in ("livenessProbe", "readinessProbe"):
        command = container[kind]["exec"]["command"]
        assert heartbeat in command
        here = [tmp_path / "beat" if part == heartbeat else part for part in command]
        assert subprocess.run(here, capture_output=True).returncode != 0  # no heartbeat yet
        (tmp_path / "beat").touch()
        assert subprocess.run(here, capture_output=True).returncode == 0  # fresh
        stale = time.time() - float(command[-1]) - 5
        os.utime(tmp_path / "beat", (stale, stale))
        assert subprocess.run(here, capture_output=True).returncode == 1  # the loop hung
        (tmp_path / "beat").unlink()


def test_the_controller_loop_touches_its_heartbeat_after_every_check(tmp_path):
    @contextmanager
    def leadership():
        yield lambda: None

    controller = Controller.__new__(Controller)
    controller.cluster = SimpleNamespace(platform=SimpleNamespace(name="mysql", leadership=leadership))
    controller.log = lambda *_, **__: None
    controller.interval, controller.block_seconds, controller.stopping, controller.hurry = 0.01, 0, False, False
    controller.heartbeat = tmp_path / "beat"
    checks = []

    def tick() -> None:
        checks.append(controller.heartbeat.exists())
        controller.stopping = len(checks) == 2

    controller.tick = tick
    controller.run()
    assert checks == [False, True] and controller.heartbeat.exists()
