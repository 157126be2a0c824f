"""A manual switchover or failover waits for a running drill (the drill lock, up to its --timeout), then
refuses with one line naming the drill; a drill that ends during the wait lets it go on. No server is
started: the lock primitive and the command's locking are what is under test."""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from mysqlsts import cli
from mysqlsts.chart.values import load
from mysqlsts.commands import cluster as cluster_commands
from mysqlsts.errors import OperationFailed
from mysqlsts.orchestrator.failover import Roles
from mysqlsts.platform.local import runtime
from mysqlsts.platform.local.runtime import LocalPlatform
from mysqlsts.state import write_json


def local_cluster(state: Path) -> LocalPlatform:
    """A local cluster as far as its values file: enough for a command to load it, no pods."""
    platform = LocalPlatform(state, "mysql")
    platform.layout.root.mkdir(parents=True)
    write_json(platform.layout.values_file, load([], ["flavor=mariadb"]))
    return platform


def target(state: Path) -> list[str]:
    return ["--target", "local", "--name", "mysql", "--state-dir", str(state)]


@contextmanager
def drill_ending_once_waited_for(platform: LocalPlatform, monkeypatch):
    """A drill holding its lock until someone has started waiting for it (its progress line is out),
    then ending: whatever the machine's load, the release falls inside the wait. Yields that event."""
    holder = ExitStack()
    holder.enter_context(platform.drill_lock())
    waiting = threading.Event()
    real = runtime.progress

    def progress(message: str) -> None:
        real(message)
        if message.startswith("waiting for the running drill"):
            waiting.set()

    def end() -> None:
        if waiting.wait(10):
            time.sleep(0.2)  # a moment into the wait
        holder.close()

    monkeypatch.setattr(runtime, "progress", progress)
    ender = threading.Thread(target=end)
    ender.start()
    try:
        yield waiting
    finally:
        ender.join()


# -- the lock primitive -----------------------------------------------------------------------------


def test_a_held_drill_lock_is_refused_at_once_naming_its_holder(tmp_path):
    platform = local_cluster(tmp_path)
    with platform.drill_lock():
        started = time.monotonic()
        with pytest.raises(OperationFailed) as e, LocalPlatform(tmp_path, "mysql").drill_lock():
            pass
    assert time.monotonic() - started < 2  # a second drill does not wait
    assert e.value.problems == [f"another drill (pid {os.getpid()}) is working on cluster 'mysql'"]


def test_waiting_for_a_held_drill_lock_gives_up_after_the_wait(tmp_path, capsys):
    platform = local_cluster(tmp_path)
    with platform.drill_lock():
        started = time.monotonic()
        with pytest.raises(OperationFailed) as e, LocalPlatform(tmp_path, "mysql").drill_lock(wait=0.6):
            pass
        waited = time.monotonic() - started
    assert 0.6 <= waited < 10
    assert e.value.problems == [f"another drill (pid {os.getpid()}) is working on cluster 'mysql'; "
                                "waited 0.6s for it to finish"]
    assert f"waiting for the running drill (pid {os.getpid()}) to finish (up to 0.6s)" in capsys.readouterr().err


def test_a_drill_that_ends_during_the_wait_hands_the_lock_over(tmp_path, monkeypatch):
    platform = local_cluster(tmp_path)
    with drill_ending_once_waited_for(platform, monkeypatch) as waited, \
            LocalPlatform(tmp_path, "mysql").drill_lock(wait=30):
        assert waited.is_set()
        with pytest.raises(OperationFailed), platform.drill_lock():  # now it is this holder's
            pass
    with platform.drill_lock():  # and released after
        pass


def test_a_drill_holding_its_lock_still_takes_the_cluster_lock(tmp_path):
    """The drill's own switchover fault: under the drill lock, it takes only the cluster lock."""
    platform = local_cluster(tmp_path)
    with platform.drill_lock(), platform.lock():
        pass


# -- switchover and failover by hand ----------------------------------------------------------------


def test_switchover_waits_for_a_running_drill_then_refuses_in_one_line(tmp_path, run_cli):
    state = tmp_path / "state"
    platform = local_cluster(state)
    with platform.drill_lock():
        started = time.monotonic()
        result = run_cli("switchover", *target(state), "--timeout", "1")
        took = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert took >= 1
    assert "Traceback" not in result.stderr
    progress, refusal = result.stderr.strip().splitlines()
    assert progress.endswith(f"waiting for the running drill (pid {os.getpid()}) to finish (up to 1s)")
    assert refusal == (f"mysqlsts switchover: another drill (pid {os.getpid()}) is working on cluster 'mysql'; "
                       "waited 1s for it to finish")


@pytest.mark.parametrize("command", [["switchover"], ["failover"], ["failover", "--if-no-primary"]])
def test_a_drill_that_ends_lets_the_command_go_on_to_the_cluster_lock(tmp_path, capsys, monkeypatch, command):
    """Released during the wait: the command goes on to its next step, the cluster lock (held here, so
    it stops there without touching a server)."""
    platform = local_cluster(tmp_path)
    with platform.lock(), drill_ending_once_waited_for(platform, monkeypatch) as waited:
        code = cli.main([*command, *target(tmp_path), "--timeout", "30"])
        assert waited.is_set()
    assert code == 1
    err = capsys.readouterr().err
    assert f"waiting for the running drill (pid {os.getpid()}) to finish (up to 30s)" in err
    assert err.strip().splitlines()[-1] == (f"mysqlsts {command[0]}: another mysqlsts command (pid {os.getpid()}) "
                                            "is working on cluster 'mysql'")


def test_once_the_drill_is_done_the_switchover_runs_holding_both_locks(tmp_path, capsys, monkeypatch):
    platform = local_cluster(tmp_path)
    seen = {}

    def switchover(roles, to=None):
        for name, lock in (("drill", platform.drill_lock), ("cluster", platform.lock)):
            try:
                with lock():
                    seen[name] = "free"
            except OperationFailed:
                seen[name] = "held"
        return {"operation": "switchover", "from": "mysql-0", "to": "mysql-1"}

    monkeypatch.setattr(LocalPlatform, "enter_network", lambda self: None)
    monkeypatch.setattr(Roles, "switchover", switchover)
    with drill_ending_once_waited_for(platform, monkeypatch) as waited:
        assert cli.main(["switchover", *target(tmp_path), "--timeout", "30", "-o", "json"]) == 0
        assert waited.is_set()
    out, err = capsys.readouterr()
    assert json.loads(out[out.index("{"):])["to"] == "mysql-1"
    assert "waiting for the running drill" in err
    assert seen == {"drill": "held", "cluster": "held"}  # no drill starts under the switchover
    with platform.drill_lock(), platform.lock():  # both released after
        pass


def test_a_step_for_a_caller_that_holds_the_cluster_lock_does_not_wait_for_a_drill(tmp_path, monkeypatch, capsys):
    platform = local_cluster(tmp_path)
    monkeypatch.setattr(LocalPlatform, "enter_network", lambda self: None)
    monkeypatch.setattr(Roles, "recover", lambda roles: None)
    with platform.drill_lock():
        started = time.monotonic()
        code = cli.main(["failover", "--if-no-primary", "--caller-holds-lock", "cli-7-0a1b2c", *target(tmp_path),
                         "--timeout", "30"])
    assert code == 0 and time.monotonic() - started < 20  # not the 30 s wait
    assert "waiting for the running drill" not in capsys.readouterr().err


@pytest.mark.parametrize("flag", [["--caller-holds-lock"], ["--caller-holds-lock="], ["--caller-holds-lock", "a b"]])
def test_a_caller_holds_lock_flag_without_a_holder_is_one_line_of_bad_input(tmp_path, capsys, flag):
    local_cluster(tmp_path)
    assert cli.main(["failover", "--if-no-primary", *flag, *target(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert not out and err.count("\n") == 1
    assert err.startswith("mysqlsts failover: --caller-holds-lock: must name the holder of the caller's cluster lock")


# -- on kubernetes: the locks are taken once, where the operation runs --------------------------------


class StubPlatform:
    """Stands in for the kubernetes platform on either side of the in-cluster Job."""

    target = "kubernetes"
    name = "mysql"

    def __init__(self, inside: bool):
        self.inside = inside
        self.taken: list[str] = []
        self.jobs: list[tuple[list[str], float]] = []

    def describe(self) -> str:
        return "target: kubernetes, cluster: mysql (stub)"

    def values(self):
        return load([], ["flavor=mariadb"])

    @contextmanager
    def drill_lock(self, wait: float = 0.0):
        self.taken.append(f"drill lock (wait {wait:g}s)")
        yield

    @contextmanager
    def lock(self, held_by: str | None = None):
        self.taken.append("cluster lock" if held_by is None else f"the check of {held_by}'s cluster lock")
        yield

    def enter_network(self) -> None:
        self.taken.append("network")

    def run_in_cluster(self, values, argv, timeout):
        self.jobs.append((argv, timeout))
        return {"operation": "switchover", "from": "mysql-0", "to": "mysql-1"}


def test_outside_the_cluster_the_job_takes_the_locks_and_its_deadline_covers_the_wait(monkeypatch, capsys):
    stub = StubPlatform(inside=False)
    monkeypatch.setattr(cluster_commands, "platform_for", lambda args, name, namespace=None: stub)
    assert cli.main(["switchover", "--target", "kubernetes", "--timeout", "200", "--to", "mysql-1"]) == 0
    assert stub.taken == []  # not here: the Job's own command takes them, once
    ((argv, timeout),) = stub.jobs
    assert argv == ["switchover", "--to", "mysql-1", "--timeout", "200"]
    assert timeout == 400  # the wait for a drill, then the switchover's own --timeout


def test_in_the_cluster_the_drill_lock_comes_first_then_the_cluster_lock(monkeypatch, capsys):
    stub = StubPlatform(inside=True)
    monkeypatch.setattr(cluster_commands, "platform_for", lambda args, name, namespace=None: stub)
    monkeypatch.setattr(Roles, "failover", lambda roles, to=None, force=False: {"operation": "failover"})
    assert cli.main(["failover", "--target", "kubernetes", "--timeout", "200"]) == 0
    assert stub.taken == ["drill lock (wait 200s)", "cluster lock", "network"]
    assert stub.jobs == []


def test_a_role_change_for_a_caller_that_holds_the_lock_takes_none_and_checks_the_callers(monkeypatch, capsys):
    stub = StubPlatform(inside=True)
    monkeypatch.setattr(cluster_commands, "platform_for", lambda args, name, namespace=None: stub)
    monkeypatch.setattr(Roles, "switchover", lambda roles, to=None: {"operation": "switchover"})
    assert cli.main(["switchover", "--target", "kubernetes", "--caller-holds-lock", "cli-7-0a1b2c"]) == 0
    assert stub.taken == ["the check of cli-7-0a1b2c's cluster lock", "network"]


def test_outside_the_cluster_a_step_for_a_caller_sends_its_holder_on_to_the_job(monkeypatch, capsys):
    stub = StubPlatform(inside=False)
    monkeypatch.setattr(cluster_commands, "platform_for", lambda args, name, namespace=None: stub)
    assert cli.main(["failover", "--target", "kubernetes", "--if-no-primary", "--caller-holds-lock", "cli-7"]) == 0
    assert stub.taken == []
    assert stub.jobs == [(["failover", "--timeout", "300", "--if-no-primary", "--caller-holds-lock", "cli-7"], 300)]
