"""Real servers (local runtime, MySQL 9.7 and MariaDB 10.11): the bound on transactions received but not
applied, and the primary's commit throttle (failover.throttleBehindTransactions), against appliers stopped
by hand."""

from __future__ import annotations

import time

import pytest
from localcluster import SERVER_MARKS, LocalCluster, flavors, ok, wait_healthy

pytestmark = SERVER_MARKS
REPLICAS = ("mysql-1", "mysql-2")


@pytest.fixture(scope="module", params=flavors("mysql"))
def cluster(request, tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("state"), "mysql", request.param)
    try:
        ok(c.bootstrap("--replicas", "3",
                 "--set", "failover.throttleBehindTransactions=200", "--set", "health.maxBehindTransactions=300",
                 "--set", "health.maxLagSeconds=60",
                 "--set", "mysql.applierThreads=1", "-o", "json"))
        yield c
    finally:
        c.teardown()


def sql(cluster, pod: str, statement: str):
    with cluster.connect(cluster.fqdn(pod)) as conn, conn.cursor() as cur:
        cur.execute(statement)
        return cur.fetchall()


def commit_delay(cluster) -> int:
    """How long every group commit on the primary waits, in µs: MySQL's binlog_group_commit_sync_delay, or
    MariaDB's binlog_commit_wait_usec while its count is one no group reaches (decisions/lag.commit_delay)."""
    if cluster.flavor == "mysql":
        return int(sql(cluster, "mysql-0", "SELECT @@GLOBAL.binlog_group_commit_sync_delay")[0][0])
    ((count, usec),) = sql(cluster, "mysql-0", "SELECT @@GLOBAL.binlog_commit_wait_count, "
                                               "@@GLOBAL.binlog_commit_wait_usec")
    assert int(count) in (0, 1000000), count
    return int(usec) if int(count) else 0


def applier(cluster, action: str) -> str:
    return f"{action} {'REPLICA' if cluster.flavor == 'mysql' else 'SLAVE'} SQL_THREAD"


def agent_log(cluster, pod: str) -> str:
    return cluster.platform.layout.pod(pod).log("agent").read_text()


def until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.5)
    return result


def test_a_backlog_beyond_the_bound_makes_replicas_unready_and_throttles_the_primary_until_applied(cluster):
    assert wait_healthy(cluster)["healthy"]
    assert commit_delay(cluster) == 0  # nobody behind: no throttle
    for pod in REPLICAS:
        sql(cluster, pod, applier(cluster, "STOP"))
    try:
        with cluster.connect("mysql-primary") as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE IF NOT EXISTS app")
            cur.execute("CREATE TABLE app.backlog (id INT PRIMARY KEY)")
            for n in range(400):
                cur.execute("INSERT INTO app.backlog VALUES (%s)", (n,))
        status = {p["pod"]: p for p in cluster.status()["pods"]}
        assert all(status[pod]["behind"] >= 400 for pod in REPLICAS), status

        # The primary's agent delays every group commit, doubling while every replica stays behind.
        until(lambda: commit_delay(cluster) >= 8000, 15, "a group-commit delay of 8 ms or more")
        assert "throttling commits: every replica has more than 200 transactions received but not applied" \
               in agent_log(cluster, "mysql-0")
        with cluster.connect("mysql-primary") as conn, conn.cursor() as cur:
            began = time.monotonic()
            cur.execute("INSERT INTO app.backlog VALUES (1000)")
            assert time.monotonic() - began >= 0.008  # a commit now waits the delay

        # Too far behind to serve reads, though both threads' trouble is the one a human made.
        report = cluster.verify()
        details = {c["name"]: c["detail"] for c in report["checks"]}
        assert not report["healthy"]
        for pod in REPLICAS:
            assert "threads io=Yes sql=No" in details[f"replica {pod} replicates from the primary"]
    finally:
        for pod in REPLICAS:
            sql(cluster, pod, applier(cluster, "START"))

    # Applied: the throttle eases off to nothing and the cluster is healthy again.
    until(lambda: commit_delay(cluster) == 0, 20, "the throttle lifted")
    assert "commit throttle lifted" in agent_log(cluster, "mysql-0")
    assert wait_healthy(cluster)["healthy"]


def test_a_replica_applying_but_too_far_behind_in_transactions_is_not_ready(cluster):
    """Both threads running and seconds behind small, but more received than the bound and not applied
    (its applier waits on a global read lock): not ready, and verify says why."""
    assert wait_healthy(cluster)["healthy"]
    with cluster.connect(cluster.fqdn("mysql-1")) as held, held.cursor() as lock:
        lock.execute("FLUSH TABLES WITH READ LOCK")
        with cluster.connect("mysql-primary") as conn, conn.cursor() as cur:
            for n in range(2000, 2400):
                cur.execute("INSERT INTO app.backlog VALUES (%s)", (n,))
        verdict = cluster.platform.layout.pod("mysql-1").run / "agent-ready"  # what probe.sh readiness reads
        until(lambda: "transactions received but not applied exceeds 300" in verdict.read_text(), 5,
              f"the agent's verdict on mysql-1 ({verdict.read_text()!r})")
        until(lambda: not {p["pod"]: p for p in cluster.status()["pods"]}["mysql-1"]["ready"], 30,
              "mysql-1 not ready (the probe's failure threshold)")
        report = cluster.verify()
        lock.execute("UNLOCK TABLES")
    replica = {c["name"]: c for c in report["checks"]}["replica mysql-1 replicates from the primary"]
    assert not replica["ok"] and replica["detail"].endswith(" transactions received but not applied exceeds 300")
    assert int(replica["detail"].split()[0]) >= 400, replica
    assert wait_healthy(cluster)["healthy"]
