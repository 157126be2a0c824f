"""A command ended by SIGTERM (kill, a Job's deadline, an eviction) runs its cleanup: the lock it holds
on a cluster (a Lease on Kubernetes, which outlives the process) is released, not left to expire."""

from __future__ import annotations

import signal
import subprocess
import sys

COMMAND = r"""
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

def parser():
    p = argparse.ArgumentParser()
    p.set_defaults(handler=holds_a_lock, command="bootstrap")
    return p

cli.build_parser = parser
sys.exit(cli.main([]))
"""


def test_sigterm_runs_the_commands_cleanup_and_exits_like_ctrl_c(tmp_path):
    marker = tmp_path / "released"
    proc = subprocess.Popen([sys.executable, "-c", COMMAND, str(marker)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
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
