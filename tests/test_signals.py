"""A command ended by SIGTERM (kill, a Job's deadline, an eviction), Ctrl-C or a closed terminal runs its
cleanup: the lock it holds on a cluster (a Lease on Kubernetes, which outlives the process) is released, not
left to expire; but only once a role change in progress is over."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest


def as_command(body: str, handler: str, command: str) -> str:
    """A script that runs `handler` (defined in `body`) as the mysqlsts command `command`, through cli.main."""
    return body + f"""
def parser():
    p = argparse.ArgumentParser()
    p.set_defaults(handler={handler}, command="{command}")
    return p

cli.build_parser = parser
sys.exit(cli.main([]))
"""

COMMAND = as_command(r"""
import argparse, pathlib, sys, time
from mysqlsts import cli

marker = pathlib.Path(sys.argv[1])

def holds_a_lock(args):
    try:
        print("locked", flush=True)
        time.sleep(60)
    finally:
        marker.write_text("released")
    return 0
""", "holds_a_lock", "bootstrap")


def signalled(script: list[str], ready: str, signum: int) -> tuple[subprocess.Popen, str]:
    """Run a script until it prints `ready`, send it `signum`, and return it ended, with its stderr."""
    proc = subprocess.Popen([sys.executable, "-c", *script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == ready
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc, err


def test_sigterm_runs_the_commands_cleanup_and_exits_like_ctrl_c(tmp_path):
    marker = tmp_path / "released"
    proc, err = signalled([COMMAND, str(marker)], "locked", signal.SIGTERM)
    assert marker.read_text() == "released"
    assert proc.returncode == 130 and err.strip() == "mysqlsts bootstrap: interrupted"


def test_a_server_that_goes_away_under_a_command_is_one_line_not_a_traceback(monkeypatch, capsys):
    import argparse

    import pymysql

    from mysqlsts import cli

    def refused(args):
        raise pymysql.err.OperationalError(2003, "Can't connect to MySQL server on 'mysql-primary' (111)")

    def parser():
        p = argparse.ArgumentParser()
        p.set_defaults(handler=refused, command="drill")
        return p

    monkeypatch.setattr(cli, "build_parser", parser)
    assert cli.main([]) == 1
    err = capsys.readouterr().err
    assert err == "mysqlsts drill: database error: 2003 Can't connect to MySQL server on 'mysql-primary' (111)\n"


ROLE_CHANGE = as_command(r"""
import argparse, pathlib, sys, threading, time
from mysqlsts import cli, interrupts, output

marker = pathlib.Path(sys.argv[1])

def changes_roles(args):
    try:
        def change():
            with interrupts.role_change():  # as Roles.switchover and failover run: maybe in a thread
                print("changing", flush=True)
                for i in range(40):  # the fence, the promotion, ... each step saying what it does
                    output.progress(f"step {i}")
                    output.line(f"step {i}")
                    time.sleep(0.02)
                marker.write_text("finished")
        worker = threading.Thread(target=change) if sys.argv[2] == "thread" else None
        if worker:
            worker.start()
            worker.join()
        else:
            change()
        time.sleep(60)  # the signal ends the command once the change is over
    finally:
        marker.write_text(marker.read_text() + ", released")
    return 0
""", "changes_roles", "switchover")


@pytest.mark.parametrize("where", ["main", "thread"])
@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_role_change_waits_for_it_then_ends_the_command(tmp_path, signum, where):
    """A closed terminal (SIGHUP), kill or Ctrl-C in the middle of a switchover left no writable node:
    the change finishes first, then the command ends like Ctrl-C, its cleanup run."""
    marker = tmp_path / "marker"
    marker.write_text("")
    proc, err = signalled([ROLE_CHANGE, str(marker), where], "changing", signum)
    assert marker.read_text() == "finished, released"
    assert proc.returncode == 130, err
    assert f"{signal.Signals(signum).name} received: finishing the role change in progress first" in err
    assert err.strip().splitlines()[-1] == "mysqlsts switchover: interrupted"


def test_a_reader_that_goes_away_does_not_stop_a_role_change(tmp_path):
    """`mysqlsts drill | head`: once the reader is gone, the output goes nowhere and the change goes on."""
    marker = tmp_path / "marker"
    marker.write_text("")
    proc = subprocess.Popen([sys.executable, "-c", ROLE_CHANGE, str(marker), "main"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "changing"
        proc.stdout.close()
        proc.stderr.close()
        deadline = time.monotonic() + 30
        while "finished" not in marker.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.read_text() == "finished"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert marker.read_text() == "finished, released" and proc.returncode == 130
