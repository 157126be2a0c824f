"""The `mysqlsts` command line: parse, dispatch, and map errors to exit codes.

0 success/healthy, 1 unhealthy or failed, 2 bad input. User mistakes print one
line per problem on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence

import pymysql

from mysqlsts import __version__, interrupts
from mysqlsts.errors import BadInput, MysqlstsError
from mysqlsts.model import ServerError

HOLDER = re.compile(r"[!-~]{1,253}")  # a Lease holder identity as mysqlsts writes one: printable ASCII, no space


def _values_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--values", dest="values_files", action="append", default=[], metavar="VALUES",
                   help="values YAML file (repeatable; later files win)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="PATH=VALUE",
                   help="override one value, e.g. --set replicas=5 (repeatable, applied last)")


def _where_options(p: argparse.ArgumentParser, default: object) -> None:
    """Where the cluster is: accepted before the command (their defaults, from the environment, live on
    the main parser) and after it (`default` SUPPRESS there, so an option not given after the command
    keeps what was given before it)."""
    p.add_argument("--target", choices=["local", "kubernetes"],
                   default=os.environ.get("MYSQLSTS_TARGET") if default is None else default,
                   help="where the cluster runs (default: $MYSQLSTS_TARGET, else kubernetes when a kubeconfig "
                        "context exists, else local)")
    p.add_argument("--name", default=os.environ.get("MYSQLSTS_NAME") if default is None else default,
                   help="cluster name (default: $MYSQLSTS_NAME, else from values, 'mysql')")
    p.add_argument("-n", "--namespace", default=default,
                   help="Kubernetes namespace (default: from values, 'default')")
    p.add_argument("--context", default=default, help="kubeconfig context (kubernetes target)")
    p.add_argument("--state-dir", default=default,
                   help="local state root (default: $MYSQLSTS_HOME or the XDG state directory)")


def _target_options(p: argparse.ArgumentParser, values: bool = False) -> None:
    # Set by an in-cluster step that runs while its caller holds the cluster lock: the holder identity of
    # the caller's Lease, which the step checks before each of its own steps. A bare flag gives "" (refused).
    p.add_argument("--caller-holds-lock", nargs="?", const="", metavar="HOLDER", help=argparse.SUPPRESS)
    _where_options(p, argparse.SUPPRESS)
    if values:
        _values_options(p)


def _output_option(p: argparse.ArgumentParser, choices: Sequence[str]) -> None:
    p.add_argument("-o", "--output", choices=list(choices), default=choices[0], help="output format")


def build_parser() -> argparse.ArgumentParser:
    from mysqlsts.commands import chart, cluster

    parser = argparse.ArgumentParser(
        prog="mysqlsts",
        description="Deploy and operate a MySQL/MariaDB primary/replica StatefulSet (Kubernetes or local runtime).",
    )
    parser.add_argument("--version", action="version", version=f"mysqlsts {__version__}")
    _where_options(parser, None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=handler)
        return p

    p = add("render", chart.render_cmd, "render the chart's Kubernetes objects as YAML")
    _values_options(p)
    p.add_argument("--output-dir", help="write one file per object into DIR instead of one stream on stdout")

    p = add("validate", chart.validate_cmd, "check values against the schema and objects against Kubernetes")
    _values_options(p)

    p = add("bootstrap", cluster.bootstrap_cmd, "create or converge a cluster and verify it")
    _target_options(p, values=True)
    p.add_argument("--replicas", type=int, help="shorthand for --set replicas=N")
    p.add_argument("--controller", action="store_true",
                   help="shorthand for --set controller.enabled=true: automatic failover in the background")
    p.add_argument("--timeout", type=float, default=600, metavar="SECONDS", help="give up after this long")
    _output_option(p, ["table", "json"])

    p = add("status", cluster.status_cmd, "show every pod's role, replication state and readiness")
    _target_options(p)
    _output_option(p, ["table", "json"])

    p = add("verify", cluster.verify_cmd, "check the topology end to end (exit 0 healthy, 1 unhealthy)")
    _target_options(p)
    _output_option(p, ["table", "json"])
    p.add_argument("--publish-primary", action="store_true",
                   help="first point the primary name (role labels, DNS) at the observed primary")

    p = add("scale", cluster.scale_cmd, "change the number of pods")
    _target_options(p)
    p.add_argument("--replicas", type=int, required=True)
    p.add_argument("--delete-data", action="store_true", help="also delete removed pods' data (like their PVCs)")
    p.add_argument("--timeout", type=float, default=600, metavar="SECONDS")
    _output_option(p, ["table", "json"])

    def operation(name: str, handler: Callable[[argparse.Namespace], int], help_: str, timeout: float,
                  pod_help: str | None = None, to_help: str | None = None) -> argparse.ArgumentParser:
        p = add(name, handler, help_)
        _target_options(p)
        if pod_help:
            p.add_argument("pod", help=pod_help)
        if to_help:
            p.add_argument("--to", metavar="POD", help=to_help)
        p.add_argument("--timeout", type=float, default=timeout, metavar="SECONDS")
        _output_option(p, ["table", "json"])
        return p

    operation("restart-pod", cluster.restart_pod_cmd, "restart one pod; it keeps its name and data and rejoins",
              300, pod_help="pod name, e.g. mysql-1")
    operation("switchover", cluster.switchover_cmd, "planned change of primary: fence, catch up, promote, "
              "repoint; prints the write-unavailable window", 300,
              to_help="the replica to promote (default: the most caught-up healthy one)")
    p = operation("failover", cluster.failover_cmd,
                  "unplanned: the primary is unreachable; promote the replica holding every transaction", 300,
                  to_help="the replica to promote (still checked for safety)")
    p.add_argument("--force", action="store_true", help="promote even when transactions would be lost (listed)")
    p.add_argument("--if-no-primary", action="store_true",
                   help="only act when no node is writable (recovery after restarts); otherwise do nothing")

    p = add("controller", cluster.controller_cmd,
            "automatic failover: watch the primary and fail over when it is lost (runs until stopped)")
    _target_options(p)
    p.add_argument("--check-interval", type=float, metavar="SECONDS",
                   help="seconds between checks (default: controller.checkIntervalSeconds, 0.25)")

    operation("reclone", cluster.reclone_cmd, "rebuild a pod's data from a healthy donor (e.g. a quarantined pod)",
              900, pod_help="pod name, e.g. mysql-2")

    from mysqlsts.commands import drill

    p = add("drill", drill.drill_cmd, "failover drill: a fault on the primary under write load, measured "
            "(run; schedule/unschedule it; show its history)")
    p.add_argument("action", nargs="?", choices=["run", "schedule", "unschedule", "history"], default="run")
    _target_options(p)
    p.add_argument("--fault", help="kill, hang, switchover or isolate (default: drills.fault)")
    p.add_argument("--rate", type=float, metavar="WRITES_PER_S", help="the writer's rate (default: drills.rate)")
    p.add_argument("--duration", type=float, metavar="S", help="seconds of writing (default: drills.durationSeconds)")
    p.add_argument("--force", action="store_true", help="run even when the preflight verification fails")
    p.add_argument("--cron", help="schedule: a 5-field cron expression, e.g. '0 3 * * 1'")
    p.add_argument("--metrics-file", metavar="PATH",
                   help="also write the last drill's metrics here (Prometheus textfile format)")
    _output_option(p, ["table", "json", "md"])

    # In-cluster only: a step of bootstrap's password change (orchestrator/passwords.py), run in a Job on
    # Kubernetes. No help entry: bootstrap runs it.
    p = sub.add_parser("passwords", description="a step of a password change (bootstrap runs it)")
    p.set_defaults(handler=cluster.passwords_cmd)
    p.add_argument("step", choices=["accept", "forget"])
    p.add_argument("keys", nargs="+", choices=["rootPassword", "operatorPassword", "replicationPassword",
                                               "cloneSecret"])
    _target_options(p)
    p.add_argument("--timeout", type=float, default=300, metavar="SECONDS")
    _output_option(p, ["json"])

    # In-pod only: the StatefulSet's agent container runs it (mysqlsts/agent/). No help entry: it is not a
    # command for people, and it reads its pod's environment and volumes.
    p = sub.add_parser("agent", description="the pod agent of the StatefulSet's agent container (in-pod only)")
    p.set_defaults(handler=_agent)

    p = add("destroy", cluster.destroy_cmd, "stop and remove the cluster (data kept unless --delete-data)")
    _target_options(p)
    p.add_argument("--delete-data", action="store_true", help="also delete every pod's data")
    return parser


def _agent(args: argparse.Namespace) -> int:
    from mysqlsts.agent.agent import main as agent_main

    return agent_main()


def _positive(args: argparse.Namespace) -> list[str]:
    problems = []
    for field in ("replicas", "timeout", "check_interval"):
        value = getattr(args, field, None)
        if value is not None and value < (1 if field == "replicas" else 0.001):
            flag = field.replace("_", "-")
            problems.append(f"--{flag}: must be {'an integer >= 1' if field == 'replicas' else '> 0'}, got {value}")
    return problems


def _holder(args: argparse.Namespace) -> list[str]:
    value = getattr(args, "caller_holds_lock", None)
    if value is not None and not HOLDER.fullmatch(value):
        return [f"--caller-holds-lock: must name the holder of the caller's cluster lock (one word, "
                f"no spaces), got {value!r}"]
    return []


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        interrupts.install()
    try:
        problems = _positive(args) + _holder(args)
        if problems:
            raise BadInput(problems)
        return args.handler(args)
    except MysqlstsError as e:
        for line in e.problems:
            print(f"mysqlsts {args.command}: {line}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"mysqlsts {args.command}: interrupted", file=sys.stderr)
        return 130
    except pymysql.MySQLError as e:  # a server that went away under a step: one line, not a traceback
        print(f"mysqlsts {args.command}: database error: {describe_sql_error(e)}", file=sys.stderr)
        return 1
    except ServerError as e:
        print(f"mysqlsts {args.command}: database error: {e}", file=sys.stderr)
        return 1


def describe_sql_error(e: Exception) -> str:
    code, *rest = e.args or ("",)
    return f"{code} {rest[0]}" if rest else str(code)


if __name__ == "__main__":
    raise SystemExit(main())
