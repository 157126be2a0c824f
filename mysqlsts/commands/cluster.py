"""Cluster commands: pick the target, load the cluster, run the orchestrator, print."""

from __future__ import annotations

import argparse
import json
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from mysqlsts import output
from mysqlsts.chart import secrets
from mysqlsts.chart import values as chart_values
from mysqlsts.chart.render import render
from mysqlsts.commands.incluster import RoleSteps, caller_holds_lock, in_cluster
from mysqlsts.decisions.topology import Check
from mysqlsts.errors import BadInput, OperationFailed
from mysqlsts.orchestrator import passwords as password_change
from mysqlsts.orchestrator import rollout
from mysqlsts.orchestrator.cluster import Cluster
from mysqlsts.orchestrator.failover import Roles
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


def target_of(args: argparse.Namespace) -> str | None:
    """The target named by --target or $MYSQLSTS_TARGET; None when neither names one."""
    if args.target not in (None, "local", "kubernetes"):  # --target is checked by its parser: this came from
        raise BadInput(f"MYSQLSTS_TARGET: must be local or kubernetes, got {args.target!r}")  # the environment
    return args.target


def platform_for(args: argparse.Namespace, name: str, namespace: str | None = None):
    target = target_of(args)
    if target is None and not _kube_context_exists(args.context):
        target = "local"
    if target == "local":
        return LocalPlatform(state_root(args.state_dir), name)
    from mysqlsts.platform.kubernetes.platform import KubernetesPlatform  # the client loads slowly

    platform = KubernetesPlatform(name, namespace=args.namespace or namespace, context=args.context)
    if target is None:  # chosen because a kubeconfig exists: a local user may not mean it, so fail fast
        problem = platform.api.unanswered()
        if problem:
            raise OperationFailed(f"{platform.describe()}, chosen since a kubeconfig names a context: its API "
                                  f"server does not answer ({problem}); for the local runtime pass --target local "
                                  "or set MYSQLSTS_TARGET=local")
    return platform


def _cluster_name(args: argparse.Namespace) -> str:
    name = args.name or "mysql"
    if not DNS_LABEL.fullmatch(name) or len(name) > 40:
        raise BadInput(f"--name: must be a DNS-1123 label of at most 40 characters, got {name!r}")
    return name


def cluster_of(platform, values: dict[str, Any], passwords: dict[str, str] | None = None) -> Cluster:
    """A cluster whose lifecycle steps run their role changes where SQL reaches the pods."""
    return Cluster(platform, values, passwords, steps=RoleSteps())


def existing(args: argparse.Namespace) -> tuple[Any, Cluster]:
    platform = platform_for(args, _cluster_name(args))
    cluster = cluster_of(platform, platform.values())
    announce(args, platform.describe())
    return platform, cluster


def locked(platform, args: argparse.Namespace):
    """The cluster lock; for an in-cluster step run for a caller that holds it, the check that it still does."""
    return platform.lock(held_by=getattr(args, "caller_holds_lock", None))


def verification(platform, cluster: Cluster, publish: bool, timeout: float = 300) -> dict[str, Any]:
    def here() -> dict[str, Any]:
        if publish:
            cluster.publish_primary()
        return checks_doc(cluster.verify())

    report = in_cluster(platform, cluster.values, ["verify"] + (["--publish-primary"] if publish else []),
                        timeout, here)
    return {"cluster": platform.name, "target": platform.target, **report}


def checks_doc(checks: list[Check]) -> dict[str, Any]:
    return {"healthy": all(c.ok for c in checks),
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks]}


def args_json(args: argparse.Namespace) -> bool:
    return getattr(args, "output", "table") == "json"


def announce(args: argparse.Namespace, text: str) -> None:
    """The first line of output names target and cluster; with -o json or md (documents) it goes to stderr."""
    (output.progress if getattr(args, "output", "table") != "table" else output.line)(text)


def print_checks(report: dict[str, Any], args: argparse.Namespace) -> int:
    checks = report["checks"]
    healthy = all(c["ok"] for c in checks)
    if args_json(args):
        output.document({**report, "healthy": healthy})
    else:
        output.table("verification", ["check", "result", "detail"],
                     [[c["name"], "ok" if c["ok"] else "FAIL", c["detail"]] for c in checks])
        output.line(f"cluster is {'HEALTHY' if healthy else 'UNHEALTHY'}: "
                    f"{sum(c['ok'] for c in checks)}/{len(checks)} checks passed")
    return 0 if healthy else 1


def bootstrap_cmd(args: argparse.Namespace) -> int:
    sets = list(args.sets)
    if args.replicas is not None:
        sets.append(f"replicas={args.replicas}")
    if args.name:
        sets.append(f"name={args.name}")
    if args.namespace:
        sets.append(f"namespace={args.namespace}")
    if args.controller:
        sets.append("controller.enabled=true")
    values = chart_values.load(args.values_files, sets)
    platform = platform_for(args, values["name"], values["namespace"])
    recorded = platform.recorded_values()
    if recorded is not None:  # an existing cluster or its kept data: files and --set change its own values
        if not platform.exists():
            output.progress(f"cluster {values['name']}: data kept by destroy; starting from its values and passwords")
        values = chart_values.load(args.values_files, sets, base=recorded)
        problems = chart_values.immutable_changes(recorded, values)
        if problems:
            raise BadInput(problems)
    announce(args, platform.describe())
    with platform.lock():
        stored = platform.stored_passwords()
        passwords, _ = secrets.merge(values, stored)
        changing = password_change.changed(stored, passwords) if recorded is not None else []
        if changing and not platform.exists():
            raise BadInput([f"auth.{k}: the data destroy kept comes back with its own passwords; bootstrap "
                            "without it, then change it on the running cluster" for k in changing])
        if changing:
            change_passwords(platform, recorded, stored, passwords, changing, "accept", args.timeout)
        objects = render(values, passwords)
        changes = []
        if recorded is None and values["replicas"] > 1:
            # Pods start together (Parallel): a new cluster's pod 0 would see its peers and wait to clone
            # from them. It initializes the first primary alone; the others then clone from it.
            # The same objects, the StatefulSet at one replica: the pod template must not change after.
            seed = [{**o, "spec": {**o["spec"], "replicas": 1}} if o["kind"] == "StatefulSet" else o
                    for o in objects]
            output.progress(f"new cluster: {values['name']}-0 initializes the first primary alone")
            changes += platform.apply(values, passwords, seed)
            cluster_of(platform, {**values, "replicas": 1}, passwords).converge(args.timeout)
        changes += platform.apply(values, passwords, objects)
        for change in changes:
            output.progress(change)
        cluster = cluster_of(platform, values, passwords)
        started = cluster.converge(args.timeout)
        rolled = rollout.roll(cluster, args.timeout)
        if changing:  # every pod restarted on the new Secret (its template's checksum changed)
            change_passwords(platform, values, passwords, passwords, changing, "forget", args.timeout)
        if not changes and not started and not rolled:
            output.progress("nothing to change: every object is as rendered and every pod is ready")
        report = verification(platform, cluster, publish=True, timeout=args.timeout)
        change = platform.ensure_controller(values)
        if change:
            output.progress(change)
    return print_checks({**report, "started": started, "rolled": rolled}, args)


def change_passwords(platform, values: dict[str, Any], old: dict[str, str], new: dict[str, str], keys: list[str],
                     step: str, timeout: float) -> None:
    """A step of a password change (orchestrator/passwords.py), in the cluster's network: a Job on
    Kubernetes, which reads the new passwords staged beside the Secret."""
    if step == "accept":
        platform.stage_passwords({k: new[k] for k in keys})
    cluster = cluster_of(platform, values, old)
    in_cluster(platform, values, ["passwords", step, *keys, "--timeout", f"{timeout:g}", *caller_holds_lock(platform)],
               timeout, lambda: password_change.change_step(cluster, step, old, new, keys, timeout))
    if step == "forget":
        platform.stage_passwords(None)


def passwords_cmd(args: argparse.Namespace) -> int:
    """A step of bootstrap's password change run for it in the cluster (not a command for people)."""
    platform, cluster = existing(args)
    stored = platform.passwords()
    new = {**stored, **platform.staged_passwords()} if args.step == "accept" else stored
    with locked(platform, args):
        platform.enter_network()
        report = password_change.change_step(cluster, args.step, stored, new, args.keys, args.timeout)
    output.document(report)
    return 0


def status_cmd(args: argparse.Namespace) -> int:
    platform, cluster = existing(args)
    report = in_cluster(platform, cluster.values, ["status"], 300, lambda: {
        "cluster": platform.name, "target": platform.target,
        "recorded_primary": platform.recorded_primary(), "pods": cluster.status()})
    if args_json(args):
        output.document(report)
        return 0
    cols = ["pod", "address", "dns", "role", "read_only", "super_read_only", "gtid_executed", "source",
            "io_thread", "sql_thread", "lag_seconds", "behind", "ready"]
    output.table(f"cluster {report['cluster']} (recorded primary: {report['recorded_primary'] or 'none'})", cols,
                 [[_cell(r[c]) for c in cols] for r in report["pods"]])
    for r in report["pods"]:
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
    return print_checks(verification(platform, cluster, publish=args.publish_primary), args)


def scale_cmd(args: argparse.Namespace) -> int:
    platform, cluster = existing(args)
    values = chart_values.check({**cluster.values, "auth": {k: "" for k in cluster.values["auth"]},
                                 "replicas": args.replicas})
    with locked(platform, args):
        old = cluster.values["replicas"]
        removed = cluster.removable(args.replicas)
        passwords = platform.passwords()
        platform.apply(values, passwords, render(values, passwords))
        cluster = cluster_of(platform, values, passwords)
        cluster.match_semi_sync_to_size()
        cluster.remove(removed, args.delete_data)
        cluster.converge(args.timeout)
        announce(args, f"scaled {platform.name} from {old} to {args.replicas} pods")
        report = verification(platform, cluster, publish=True, timeout=args.timeout)
    return print_checks(report, args)


def pod_cmd(args: argparse.Namespace, action: str, done: str) -> int:
    """One pod-level lifecycle step under the lock, then the verification that every command ends with."""
    platform, cluster = existing(args)
    cluster.check_member(args.pod)
    with locked(platform, args):
        getattr(cluster, action)(args.pod, args.timeout)
        announce(args, f"{args.pod} {done}")
        report = verification(platform, cluster, publish=True, timeout=args.timeout)
    return print_checks(report, args)


def restart_pod_cmd(args: argparse.Namespace) -> int:
    return pod_cmd(args, "restart_pod", "restarted")


def destroy_cmd(args: argparse.Namespace) -> int:
    name = _cluster_name(args)
    platform = platform_for(args, name)
    if not platform.exists() and not (args.delete_data and platform.recorded_values() is not None):
        raise BadInput(f"--name: no cluster {name!r} ({platform.describe()})")
    output.line(platform.describe())
    with platform.lock():
        platform.destroy(args.delete_data)
    output.line(f"cluster {name} destroyed" + (" with its data" if args.delete_data else
                                                "; its data, passwords and values kept for a later bootstrap "
                                                "(destroy --delete-data removes them)"))
    return 0


def print_report(report: dict[str, Any], args: argparse.Namespace) -> int:
    if args_json(args):
        output.document(report)
    else:
        output.table(report.get("operation", "result"), ["field", "value"],
                     [[k, json.dumps(v) if isinstance(v, (dict, list)) else v] for k, v in report.items()])
    return 0


def role_change_locks(platform, args: argparse.Namespace):
    """What a manual switchover or failover holds: first the drill lock, waiting up to --timeout for a
    running drill (changing the primary under it would make its figures mean nothing), then the cluster
    lock; the order a drill takes them in, so neither waits on the other. A step run for a caller that
    holds the cluster lock (a lifecycle command's role change) takes neither: it checks before each step
    that its caller still holds it. The controller's automatic failover and a drill's own switchover call
    Roles directly and never come here."""
    if args.caller_holds_lock is not None:
        return locked(platform, args)
    return _drill_then_cluster_lock(platform, args.timeout)


@contextmanager
def _drill_then_cluster_lock(platform, wait: float):
    with platform.drill_lock(wait=wait), platform.lock():
        yield


def _role_change_job(args: argparse.Namespace) -> tuple[list[str], float]:
    """The in-cluster command's own --timeout (its wait for a drill), and the Job's deadline: that wait
    plus the operation's --timeout, so a drill that outlasts the wait ends in the command's refusal,
    not in the Job's deadline."""
    wait = 0.0 if args.caller_holds_lock is not None else args.timeout
    return ["--timeout", f"{args.timeout:g}"], wait + args.timeout


def _forwarded_holder(args: argparse.Namespace) -> list[str]:
    """A step run for a caller that holds the cluster lock, sent on to a Job: the Job checks that caller."""
    return ["--caller-holds-lock", args.caller_holds_lock] if args.caller_holds_lock is not None else []


def switchover_cmd(args: argparse.Namespace) -> int:
    platform, cluster = existing(args)
    if args.to:
        cluster.check_member(args.to, "--to")
    timeout_flag, job_timeout = _role_change_job(args)
    remote = ["switchover", *(["--to", args.to] if args.to else []), *timeout_flag,
              *_forwarded_holder(args)]
    report = in_cluster(platform, cluster.values, remote, job_timeout, lambda: Roles(cluster).switchover(args.to),
                        guard=role_change_locks(platform, args))
    return print_report(report, args)


def failover_cmd(args: argparse.Namespace) -> int:
    platform, cluster = existing(args)
    if args.to:
        cluster.check_member(args.to, "--to")
    flags = {"--force": args.force, "--if-no-primary": args.if_no_primary}
    timeout_flag, job_timeout = _role_change_job(args)
    remote = ["failover", *(["--to", args.to] if args.to else []), *timeout_flag,
              *(f for f, on in flags.items() if on), *_forwarded_holder(args)]

    def here() -> dict[str, Any]:
        roles = Roles(cluster)
        if args.if_no_primary:
            return roles.recover() or {"operation": "none", "reason": "a writable primary answers"}
        return roles.failover(args.to, args.force)

    return print_report(in_cluster(platform, cluster.values, remote, job_timeout, here,
                                   guard=role_change_locks(platform, args)), args)


def controller_cmd(args: argparse.Namespace) -> int:
    from mysqlsts.orchestrator.controller import main_loop

    platform, cluster = existing(args)
    if args.check_interval is not None:
        cluster.values["controller"]["checkIntervalSeconds"] = args.check_interval
    platform.enter_network()
    return main_loop(cluster)


def reclone_cmd(args: argparse.Namespace) -> int:
    return pod_cmd(args, "reclone", "re-cloned")
