"""Changing a running cluster's passwords. Every account whose password changes first takes the new
one beside the old (MySQL's dual passwords, MariaDB's second authentication method), on the primary,
replicated to every pod; then the Secret changes and every pod restarts on it (its template carries a
checksum of the Secret: the ordinary roll, replicas first, a switchover, the old primary); only then
does the old password go. So no agent, probe, replica or clone ever meets a password its server
refuses, and writes stop only for the roll's switchover."""

from __future__ import annotations

import time

from mysqlsts.errors import OperationFailed
from mysqlsts.flavors import Flavor
from mysqlsts.mysql.observe import OPERATOR_USER
from mysqlsts.mysql.server import REPLICATION_USER
from mysqlsts.orchestrator.cluster import Cluster
from mysqlsts.output import progress

CLONE_USER = "mysqlsts_clone"  # MySQL: the CLONE plugin's donor account (lib.sh names it too)


def accounts(flavor: Flavor) -> dict[str, list[tuple[str, str]]]:
    """The accounts each password is for, by values key (auth.*). MariaDB's root@localhost logs in by
    the unix socket, and MariaDB pods clone with a backup tool whose challenge needs no account."""
    return {"rootPassword": [("root", "%"), *([("root", "localhost")] if flavor.name == "mysql" else [])],
            "operatorPassword": [(OPERATOR_USER, "%")],
            "replicationPassword": [(REPLICATION_USER, "%")],
            "cloneSecret": [(CLONE_USER, "%")] if flavor.name == "mysql" else []}


def changed(stored: dict[str, str], wanted: dict[str, str]) -> list[str]:
    """The passwords (values keys) a bootstrap changes on a cluster that has some already."""
    return sorted(k for k in ("rootPassword", "operatorPassword", "replicationPassword", "cloneSecret")
                  if k in stored and stored[k] != wanted.get(k, stored[k]))


def accept_both(cluster: Cluster, stored: dict[str, str], wanted: dict[str, str], keys: list[str],
                timeout: float) -> None:
    """On the primary, each account takes its new password beside the old; every pod applies it."""
    primary = cluster.platform.recorded_primary()
    views = {v.name: v for v in cluster.observe()}
    if primary is None or primary not in views or views[primary].state is None or not views[primary].state.writable:
        raise OperationFailed("passwords change only on a running cluster with a writable primary: "
                              "run bootstrap without the new auth.* values first, then again with them")
    silent = [n for n, v in views.items() if v.running and v.state is None]
    if silent:
        raise OperationFailed(f"{', '.join(silent)} do not answer: every pod must take the new passwords; "
                              "bring them back first (verify tells what is wrong)")
    progress(f"{', '.join(keys)}: the new passwords work beside the old ones from now on")
    with cluster.servers.operator(views[primary].fqdn, 5.0, address=views[primary].address) as server:
        for key in keys:
            for user, host in accounts(cluster.flavor)[key]:
                server.accept_password(user, host, stored[key], wanted[key])
        position = server.executed()
    deadline = time.monotonic() + timeout
    for name, view in views.items():
        if name == primary or view.state is None:
            continue
        with cluster.servers.operator(view.fqdn, 5.0, address=view.address) as server:
            if not server.wait_applied(position, max(1.0, deadline - time.monotonic())):
                raise OperationFailed(f"{name} did not apply the new passwords within {timeout:g}s; the old ones "
                                      "still work everywhere; run bootstrap again once it catches up")


def forget_old(cluster: Cluster, wanted: dict[str, str], keys: list[str]) -> None:
    """Once every pod runs on the new Secret: the old passwords go, on the primary (replicated)."""
    primary = cluster.platform.recorded_primary()
    view = next(v for v in cluster.observe() if v.name == primary)
    with cluster.servers.operator(view.fqdn, 5.0, address=view.address) as server:
        for key in keys:
            for user, host in accounts(cluster.flavor)[key]:
                server.only_password(user, host, wanted[key])
    progress(f"{', '.join(keys)}: the old passwords no longer work")


def change_step(cluster: Cluster, step: str, old: dict[str, str], new: dict[str, str], keys: list[str],
                timeout: float) -> dict[str, object]:
    """One step of a change, in the cluster's network: `accept` before the Secret changes (`cluster`
    logs in with the old passwords), `forget` once every pod restarted on it (with the new ones)."""
    if step == "accept":
        accept_both(cluster, old, new, keys, timeout)
    else:
        forget_old(cluster, new, keys)
    return {"operation": f"passwords {step}", "keys": keys}
