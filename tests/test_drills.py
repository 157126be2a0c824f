"""Drills on real servers (local runtime, MySQL 9.7 and MariaDB 10.11): each fault, the report checked
against an independent writer's own measurements, a drill that really loses
acknowledged writes reported as failing with the lost ids, abort, history,
metrics and scheduling. The isolate fault has its own file, test_partition.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from localcluster import SERVER_MARKS, LocalCluster, Writer, flavors, ok, wait_healthy

from mysqlsts import flavors as server_flavors
from mysqlsts.decisions.drill import rto

pytestmark = SERVER_MARKS


@pytest.fixture(scope="module", params=flavors("mysql", "mariadb"))
def cluster(request, tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("state"), "mysql", request.param)
    try:
        # A crash can leave the old primary an unacknowledged tail (errant): re-clone it automatically.
        ok(c.bootstrap("--replicas", "3",
                 "--set", "controller.autoReclone=true"))
        yield c
    finally:
        c.teardown()


# How far two writers may disagree about one outage. Each sees it start at its own last write the old
# primary acknowledged and end at its own first write another node acknowledged, so each is off by at
# most one of its write cycles at either end: the drill writes every 10 ms (--rate 100), the witness
# every ~5 ms plus a 20 ms pause after a failure, and on this 2-core machine, under the full suite,
# a commit (a semi-sync round trip) or a Python thread's turn can take up to ~50 ms more.
# Two cycles of each, plus that: 2 * (0.01 + 0.02) + 2 * 0.05 = 0.16 s; 0.25 s leaves headroom, and
# 10% of the outage covers a slow machine stretching every step of a long one alike.
TOLERANCE_SECONDS, TOLERANCE_SHARE = 0.25, 0.1


@pytest.mark.parametrize("fault", ["kill", "hang", "switchover"])
def test_each_fault_is_measured_like_an_independent_writer_sees_it(cluster, fault):
    assert wait_healthy(cluster)["healthy"]
    writer = Writer(cluster, table="app.drill_witness")
    writer.start()
    result = cluster.run("drill", "--fault", fault, "--duration", "20", "--rate", "100", "-o", "json")
    acked = writer.finish()
    report = json.loads(result.stdout)
    assert result.returncode == (0 if report["passed"] else 1)
    assert report["fault"] == fault and report["old_primary"] != report["new_primary"]
    assert report["lost_writes"] == 0 and report["split_brain_samples"] == 0 and report["healthy_after"], report
    assert report["rto_seconds"] is not None and report["promotion_seconds"] is not None
    # the old primary came back as a replica within the drill
    assert report["rejoin_seconds"] is not None, result.stderr[-3000:]
    if fault != "switchover":
        assert report["detection_seconds"] is not None and report["detection_seconds"] <= report["promotion_seconds"]
    # The drill's RTO against the same outage as the independent writer saw it (its own connections
    # through the primary name, its own reconnects), measured around the drill's fault the same way.
    witness = rto(writer.acks, report["fault_at"], report["old_primary"])
    assert witness is not None
    assert abs(report["rto_seconds"] - witness) <= TOLERANCE_SECONDS + TOLERANCE_SHARE * witness, \
        (report["rto_seconds"], witness)
    with cluster.connect(f"{cluster.name}-primary") as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM app.drill_witness")
        assert set(acked) <= {r[0] for r in cur.fetchall()}  # the witness lost nothing either


def test_history_markdown_and_metrics(cluster):
    history = json.loads(ok(cluster.run("drill", "history", "-o", "json")).stdout)["runs"]
    assert [r["fault"] for r in history][-3:] == ["kill", "hang", "switchover"]
    assert history[-1]["rto_vs_recent_median"] is not None
    md = ok(cluster.run("drill", "history", "-o", "md")).stdout
    assert md.splitlines()[0].startswith("| started") and "| switchover |" in md
    metrics = (cluster.state / cluster.name / "metrics" / "mysqlsts_drill.prom").read_text()
    assert 'mysqlsts_drill_passed{cluster="mysql",fault="switchover"} 1.0' in metrics
    assert "# TYPE mysqlsts_drill_rto_seconds gauge" in metrics
    with cluster.connect(f"{cluster.name}-primary") as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM mysqlsts_drill.history")
        assert cur.fetchone()[0] == len(history)  # stored in the cluster's own replicated database
        cur.execute("SHOW TABLES FROM app")
        assert {r[0] for r in cur.fetchall()} <= {"drill_witness", "ledger", "t", "big"}  # user schemas untouched


def test_schedule_prints_a_cron_entry_for_the_local_target(cluster):
    out = ok(cluster.run("drill", "schedule", "--cron", "0 3 * * 1", "--fault", "kill")).stdout
    line = out.strip().splitlines()[-1]
    assert line.startswith("0 3 * * 1 root ") and " drill --target local --name mysql " in line
    assert "printed, not installed" in out
    bad = cluster.run("drill", "schedule", "--cron", "every monday")
    assert bad.returncode == 2 and "--cron: not a 5-field cron expression" in bad.stderr


def test_an_aborted_drill_undoes_its_fault_and_leaves_the_cluster_healthy(cluster):
    assert wait_healthy(cluster)["healthy"]
    env = {**os.environ, "MYSQLSTS_HOME": str(cluster.state)}
    proc = subprocess.Popen([sys.executable, "-m", "mysqlsts", "drill", "--fault", "hang", "--duration", "60",
                             "--name", cluster.name], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    # The primary is hung once the drill says so: only then is there a fault to undo.
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "injecting hang" in line:
            proc.send_signal(signal.SIGTERM)
            break
    _, rest = proc.communicate(timeout=120)
    err = "".join(seen) + rest
    assert "injecting hang" in err, err
    assert "drill aborted: fault undone" in err, err
    assert proc.returncode == 130, err
    assert wait_healthy(cluster, timeout=60)["healthy"]
    ok(cluster.run("drill", "--fault", "kill", "--duration", "10"))  # and the drill lock was released


@pytest.fixture(params=flavors("mariadb"))
def async_cluster(request, tmp_path):
    c = LocalCluster(tmp_path / "state", "lossy", request.param)
    try:
        ok(c.bootstrap("--set", "mysql.semiSync.enabled=false"))
        yield c
    finally:
        c.teardown()


def test_a_drill_that_loses_acknowledged_writes_fails_and_names_them(async_cluster):
    cluster = async_cluster
    # No semi-sync, and replicas that stopped receiving: writes are acknowledged by the primary alone.
    for pod in ("lossy-1", "lossy-2"):
        with cluster.connect(cluster.fqdn(pod)) as conn, conn.cursor() as cur:
            cur.execute(server_flavors.get(cluster.flavor).stop_receiving_sql)
    result = cluster.run("drill", "--fault", "kill", "--duration", "10", "--force", "-o", "json")
    report = json.loads(result.stdout)
    assert result.returncode == 1 and report["passed"] is False
    assert report["lost_writes"] > 0 and report["lost_ids"]
    assert any("acknowledged writes lost" in r for r in report["verdict_reasons"])
    with cluster.connect(f"{cluster.name}-primary") as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'mysqlsts_drill' "
                    "AND table_name = 'ledger'")
        present: set[int] = set()
        if cur.fetchone()[0]:  # the replicas stopped receiving before the drill created its ledger
            cur.execute("SELECT id FROM mysqlsts_drill.ledger WHERE run_id = %s", (report["run_id"],))
            present = {r[0] for r in cur.fetchall()}
    assert present.isdisjoint(report["lost_ids"])  # really missing on the new primary
