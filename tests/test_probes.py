"""The local kubelet's probe schedule, against the pod spec's thresholds and periods."""

from mysqlsts.platform.local.supervisor import Probes

SPEC = {
    "startupProbe": {"periodSeconds": 1, "failureThreshold": 3},
    "readinessProbe": {"periodSeconds": 1, "failureThreshold": 2, "successThreshold": 1},
    "livenessProbe": {"periodSeconds": 10, "failureThreshold": 3},
}


def started(now: float = 0.0) -> Probes:
    probes = Probes(SPEC)
    probes.reset(now)
    assert probes.due(now) == ["startupProbe"]
    assert probes.record("startupProbe", True, now) is True
    return probes


def test_only_the_startup_probe_runs_until_it_passes():
    probes = Probes(SPEC)
    probes.reset(0.0)
    assert probes.due(0.0) == ["startupProbe"]
    assert probes.record("startupProbe", False, 0.0) is None
    assert probes.due(0.5) == []
    assert probes.due(1.0) == ["startupProbe"]


def test_readiness_and_liveness_run_at_once_after_startup():
    probes = started(5.0)
    assert probes.due(5.0) == ["readinessProbe", "livenessProbe"]


def test_startup_failure_threshold_restarts_and_starts_over():
    probes = Probes(SPEC)
    probes.reset(0.0)
    assert [probes.record("startupProbe", False, t) for t in (0, 1, 2)] == [None, None, False]
    assert probes.record("startupProbe", False, 3) is None  # the count starts over after the restart


def test_readiness_turns_false_only_after_its_failure_threshold():
    probes = started()
    assert probes.record("readinessProbe", True, 0) is True
    assert probes.record("readinessProbe", False, 1) is None
    assert probes.record("readinessProbe", False, 2) is False
    assert probes.record("readinessProbe", False, 3) is False  # stays unready, no restart
    assert probes.record("readinessProbe", True, 4) is True


def test_a_success_breaks_a_failure_streak():
    probes = started()
    assert probes.record("livenessProbe", False, 0) is None
    assert probes.record("livenessProbe", False, 10) is None
    assert probes.record("livenessProbe", True, 20) is True
    assert probes.record("livenessProbe", False, 30) is None
    assert probes.record("livenessProbe", False, 40) is None
    assert probes.record("livenessProbe", False, 50) is False


def test_periods_come_from_the_spec():
    probes = started()
    probes.record("readinessProbe", True, 0.0)
    probes.record("livenessProbe", True, 0.0)
    assert probes.due(0.9) == []
    assert probes.due(1.0) == ["readinessProbe"]
    assert probes.due(10.0) == ["readinessProbe", "livenessProbe"]


def test_a_restarted_container_probes_startup_again():
    probes = started()
    probes.reset(100.0)
    assert probes.due(100.0) == ["startupProbe"]


def test_no_startup_probe_means_started():
    probes = Probes({"readinessProbe": {"periodSeconds": 2}})
    probes.reset(0.0)
    assert probes.due(0.0) == ["readinessProbe"]
