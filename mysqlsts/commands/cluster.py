"""Cluster commands: pick the target, load the cluster, run the orchestrator, print."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import yaml

from mysqlsts import output
from mysqlsts.chart import secrets
from mysqlsts.chart import values as chart_values
from mysqlsts.chart.render import render
from mysqlsts.decisions.topology import Check
from mysqlsts.errors import BadInput, OperationFailed
from mysqlsts.orchestrator.cluster import Cluster
from mysqlsts.platform.local.runtime import LocalPlatform
from mysqlsts.state import state_root

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _kube_context_exists(context: str | None) -> bool:
    config = os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config")).split(os.pathsep)[0]
    try:
        data = yaml.safe_load(Path(config).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return False
    return bool(context or data.get("current-context"))


def target_of(args: argparse.Namespace) -> str:
    if args.target:
        return args.target
    return "kubernetes" if _kube_context_exists(args.context) else "local"


def platform_for(args: argparse.Namespace, name: str):
    target = target_of(args)
    if target == "kubernetes":
        raise OperationFailed("the kubernetes target is not available in this version yet; "
                              "use --target local")
    return LocalPlatform(state_root(args.state_dir), name)


def _cluster_name(args: argparse.Namespace) -> str:
    name = args.name or "mysql"
    if not DNS_LABEL.fullmatch(name) or len(name) > 40:
        raise BadInput(f"--name: must be a DNS-1123 label of at most 40 characters, got {name!r}")
    return name


def existing(args: argparse.Namespace) -> tuple[LocalPlatform, Cluster]:
    name = _cluster_name(args)
    platform = platform_for(args, name)
    values = platform.values()
    cluster = Cluster(platform, values, platform.passwords())
    announce(args, platform.describe())
    platform.enter_network()
    return platform, cluster


def args_json(args: argparse.Namespace) -> bool:
    return getattr(args, "output", "table") == "json"


def announce(args: argparse.Namespace, text: str) -> None:
    """The first line of output names target and cluster; with -o json it goes to stderr."""
    (output.progress if args_json(args) else output.line)(text)


def print_checks(checks: list[Check], args: argparse.Namespace, extra: dict | None = None) -> int:
    healthy = all(c.ok for c in checks)
    if args_json(args):
        output.document({**(extra or {}), "healthy": healthy,
                         "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks]})
    else:
        output.table("verification", ["check", "result", "detail"],
                     [[c.name, "ok" if c.ok else "FAIL", c.detail] for c in checks])
        output.line(f"cluster is {'HEALTHY' if healthy else 'UNHEALTHY'}: "
                    f"{sum(c.ok for c in checks)}/{len(checks)} checks passed")
    return 0 if healthy else 1


def bootstrap_cmd(args: argparse.Namespace) -> int:
    sets = list(args.sets)
    if args.replicas is not None:
        sets.append(f"replicas={args.replicas}")
    if args.name:
        sets.append(f"name={args.name}")
    if args.namespace:
        sets.append(f"namespace={args.namespace}")
    values = chart_values.load(args.values_files, sets)
    platform = platform_for(args, values["name"])
    if platform.exists() and not args.values_files and not args.sets and args.replicas is None:
        stored = platform.values()  # re-running plain bootstrap keeps the cluster's own values
        values = {**stored, "auth": values["auth"]}
    announce(args, platform.describe())
    with platform.lock():
        passwords, _ = secrets.resolve(values["auth"], platform.layout.secret_file)
        objects = render(values, passwords)
        changes = platform.apply(values, passwords, objects)
        cluster = Cluster(platform, values, passwords)
        platform.enter_network()
        started = cluster.converge(args.timeout)
        if not changes and not started:
            output.progress("nothing to change: every pod is running and ready")
        for change in changes:
            output.progress(change)
        checks = cluster.verify()
    return print_checks(checks, args, {"cluster": values["name"], "target": platform.target, "started": started})


def status_cmd(args: argparse.Namespace) -> int:
    platform, cluster = existing(args)
    rows = cluster.status()
    if args_json(args):
        output.document({"cluster": platform.name, "target": platform.target,
                         "recorded_primary": platform.recorded_primary(), "pods": rows})
        return 0
    cols = ["pod", "address", "dns", "role", "read_only", "super_read_only", "gtid_executed", "source",
            "io_thread", "sql_thread", "lag_seconds", "ready"]
    output.table(f"cluster {platform.name} (recorded primary: {platform.recorded_primary() or 'none'})", cols,
                 [[_cell(r[c]) for c in cols] for r in rows])
    for r in rows:
        if r["error"]:
            output.line(f"{r['pod']}: {r['error']}")
    return 0


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "ON" if value else "OFF"
    return str(value)


def verify_cmd(args: argparse.Namespace) -> int:
    platform, cluster = existing(args)
    with platform.lock():
        checks = cluster.verify()
    return print_checks(checks, args, {"cluster": platform.name, "target": platform.target})


def scale_cmd(args: argparse.Namespace) -> int:
    platform, cluster = existing(args)
    values = chart_values.check({**cluster.values, "auth": {k: "" for k in cluster.values["auth"]},
                                 "replicas": args.replicas})
    with platform.lock():
        old = cluster.values["replicas"]
        if args.replicas < old:
            cluster.scale_in(args.replicas, args.delete_data)
        passwords = cluster.passwords
        platform.apply(values, passwords, render(values, passwords))
        cluster = Cluster(platform, values, passwords)
        cluster.converge(args.timeout)
        output.line(f"scaled {platform.name} from {old} to {args.replicas} pods")
        checks = cluster.verify()
    return print_checks(checks, args)


def restart_pod_cmd(args: argparse.Namespace) -> int:
    platform, cluster = existing(args)
    with platform.lock():
        cluster.restart_pod(args.pod, args.timeout)
        output.line(f"{args.pod} restarted")
        checks = cluster.verify()
    return print_checks(checks, args)


def destroy_cmd(args: argparse.Namespace) -> int:
    name = _cluster_name(args)
    platform = platform_for(args, name)
    if not platform.exists():
        raise BadInput(f"--name: no local cluster {name!r} under {platform.layout.root.parent}")
    output.line(platform.describe())
    with platform.lock():
        platform.destroy(args.delete_data)
    output.line(f"cluster {name} destroyed" + (" with its data" if args.delete_data else "; data kept"))
    return 0
