"""`mysqlsts drill`: run a failover drill, schedule it, show its history."""

from __future__ import annotations

import argparse
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from croniter import croniter

from mysqlsts import output
from mysqlsts.chart import values as chart_values
from mysqlsts.chart.render import render
from mysqlsts.commands.cluster import announce, existing, locked
from mysqlsts.commands.incluster import in_cluster
from mysqlsts.drills import report as reports
from mysqlsts.drills.run import FAULTS, Drill
from mysqlsts.errors import BadInput, OperationFailed


def drill_cmd(args: argparse.Namespace) -> int:
    return {"run": run, "schedule": schedule, "unschedule": schedule, "history": history}[args.action](args)


def settings(args: argparse.Namespace, values: dict[str, Any]) -> tuple[str, float, float]:
    d = values["drills"]
    fault = args.fault or d["fault"]
    rate = args.rate if args.rate is not None else float(d["rate"])
    duration = args.duration if args.duration is not None else float(d["durationSeconds"])
    problems = []
    if fault not in FAULTS:
        problems.append(f"--fault: must be one of {', '.join(FAULTS)}, got {fault!r}")
    if not 0 < rate <= 5000:
        problems.append(f"--rate: must be between 0 and 5000 writes per second, got {rate:g}")
    if duration < 10:
        problems.append(f"--duration: must be at least 10 seconds (the fault needs time to be recovered), got "
                        f"{duration:g}")
    if problems:
        raise BadInput(problems)
    return fault, rate, duration


def run(args: argparse.Namespace) -> int:
    platform, cluster = existing(args)
    fault, rate, duration = settings(args, cluster.values)
    why = platform.fault_unavailable(fault)
    if why:
        raise BadInput(f"--fault: {fault} is not available on the {platform.target} target: {why}")
    remote = ["drill", "--fault", fault, "--rate", f"{rate:g}", "--duration", f"{duration:g}"]

    def here() -> dict[str, Any]:
        checks = cluster.verify()
        failing = [f"{c.name}: {c.detail}" for c in checks if not c.ok]
        if failing and not args.force:
            raise OperationFailed(["preflight: the cluster is not healthy, so a drill would prove nothing "
                                   "(--force runs it anyway):", *failing])
        output.progress(f"drill: {fault} on the primary, {rate:g} writes/s for {duration:g}s")
        report = Drill(cluster, fault, rate, duration).run()
        report["preflight_failures"] = failing
        try:
            reports.store(cluster, report)
        except Exception as e:
            output.progress(f"warning: could not store the report in the cluster's history: {e}")
        metrics = reports.metrics_text(report)
        output.progress(f"metrics: {platform.record_drill(report, metrics)}")
        if args.metrics_file:
            reports.write_metrics(report, Path(args.metrics_file))
        return report

    report = in_cluster(platform, cluster.values, remote + (["--force"] if args.force else []), duration + 600,
                        here, guard=platform.drill_lock())
    reports.show(report, args.output)
    return 0 if report["passed"] else 1


def history(args: argparse.Namespace) -> int:
    platform, cluster = existing(args)
    runs = in_cluster(platform, cluster.values, ["drill", "history"], 300,
                      lambda: {"runs": reports.history(cluster)})["runs"]
    reports.show_history(runs, args.output, platform.name)
    return 0


def schedule(args: argparse.Namespace) -> int:
    platform, cluster = existing(args)
    cron = "" if args.action == "unschedule" else args.cron
    if args.action == "schedule":
        if not cron:
            raise BadInput("--cron: required to schedule a drill, e.g. --cron '0 3 * * 1'")
        if not croniter.is_valid(cron) or len(cron.split()) != 5:
            raise BadInput(f"--cron: not a 5-field cron expression: {cron!r}")
        fault, rate, duration = settings(args, cluster.values)
        why = platform.fault_unavailable(fault)
        if why:
            raise BadInput(f"--fault: {fault} is not available on the {platform.target} target: {why}")
    if platform.target == "local":
        return print_local_schedule(args, platform, cron)
    sets = [f"drills.schedule={cron}"]
    if cron:
        sets += [f"drills.fault={fault}", f"drills.rate={rate:g}", f"drills.durationSeconds={duration:g}"]
    values = chart_values.load([], sets, base=cluster.values)
    with locked(platform, args):
        passwords = platform.passwords()
        for change in platform.apply(values, passwords, render(values, passwords)):
            output.progress(change)
    if cron:
        announce(args, f"CronJob {platform.names.drill} runs `mysqlsts drill --fault {fault}` on '{cron}'; next: "
                       + ", ".join(next_runs(cron)))
    else:
        announce(args, f"drill schedule removed (CronJob {platform.names.drill} deleted)")
    return 0


def next_runs(cron: str, count: int = 3) -> list[str]:
    it = croniter(cron, datetime.now(UTC))
    return [it.get_next(datetime).strftime("%Y-%m-%d %H:%M UTC") for _ in range(count)]


def print_local_schedule(args: argparse.Namespace, platform, cron: str) -> int:
    """The local target has no scheduler of its own: print the cron entry (nothing is installed)."""
    state = platform.layout.root.parent
    if not cron:
        output.line(f"remove the line for cluster {platform.name} from /etc/cron.d/mysqlsts-{platform.name} "
                    "(mysqlsts installed nothing, so there is nothing else to undo)")
        return 0
    fault, rate, duration = settings(args, platform.values())
    command = [sys.executable, "-m", "mysqlsts", "drill", "--target", "local", "--name", platform.name,
               "--state-dir", str(state), "--fault", fault, "--rate", f"{rate:g}", "--duration", f"{duration:g}",
               "-o", "json"]
    log = platform.layout.root / "drills.log"
    output.line(f"# cron entry (printed, not installed): save it as /etc/cron.d/mysqlsts-{platform.name}")
    output.line(f"# next runs: {', '.join(next_runs(cron))}")
    output.line(f"{cron} root {shlex.join(command)} >> {shlex.quote(str(log))} 2>&1")
    return 0
