"""Switchover, failover, the controller, fencing and quarantine on real servers
(local runtime, MySQL 9.7 and MariaDB 10.11), with an independent writer that records every
acknowledged commit and an independent read_only sampler on every pod."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import threading
import time

import pymysql
import pytest
from localcluster import (
    SERVER_MARKS,
    LocalCluster,
    Sampler,
    Writer,
    all_rows_everywhere,
    flavors,
    ok,
    wait_healthy,
)

from mysqlsts import flavors as server_flavors
from mysqlsts.decisions import gtid
from mysqlsts.platform.local import procs

pytestmark = SERVER_MARKS
PODS = ["mysql-0", "mysql-1", "mysql-2"]


@pytest.fixture(scope="module", params=flavors("mysql", "mariadb"))
def cluster(request, tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("state"), "mysql", request.param)
    try:
        ok(c.bootstrap("--replicas", "3", "-o", "json"))
        yield c
    finally:
        c.teardown()


def only_on(cluster, *names: str) -> None:
    """A scenario CI runs on some flavors only (see localcluster.flavors): skip it on the others, unless
    MYSQLSTS_TEST_FLAVORS asks for more."""
    if cluster.flavor not in [p.values[0] for p in flavors(*names)]:
        pytest.skip(f"CI runs this scenario on {', '.join(names)} (MYSQLSTS_TEST_FLAVORS=all runs it on both)")


def primary_of(cluster) -> str:
    roles = {p["pod"]: p["role"] for p in cluster.status()["pods"]}
    (primary,) = [p for p, r in roles.items() if r == "primary"]
    return primary


class Watched:
    """A writer and a read_only sampler around a block of operations."""

    def __init__(self, cluster):
        self.cluster = cluster

    def __enter__(self):
        self.writer = Writer(self.cluster)
        self.sampler = Sampler(self.cluster, PODS)
        self.writer.start()
        self.sampler.start()
        return self

    def __exit__(self, *exc):
        self.acked = self.writer.finish()
        self.sampler.finish()
        return False


def test_switchover_round_trip_through_every_ordinal(cluster):
    start = primary_of(cluster)
    order = [p for p in PODS if p != start] + [start]
    with Watched(cluster) as w:
        for target in order:
            before = len(w.writer.acked)
            report = json.loads(ok(cluster.run("switchover", "--to", target, "-o", "json")).stdout)
            assert report["from"] != target and report["to"] == target
            assert report["write_unavailable_seconds"] >= 0
            assert primary_of(cluster) == target
            deadline = time.monotonic() + 10
            while len(w.writer.acked) <= before + 5 and time.monotonic() < deadline:
                time.sleep(0.05)  # the writer goes on through the primary name
            assert len(w.writer.acked) > before + 5
    assert w.sampler.sweeps > 50 and w.sampler.split_brain == []
    all_rows_everywhere(cluster, w.acked)


def test_switchover_refuses_the_primary_itself_and_unknown_pods(cluster):
    primary = primary_of(cluster)
    result = cluster.run("switchover", "--to", primary)
    assert result.returncode == 1 and "is the primary already" in result.stderr
    result = cluster.run("switchover", "--to", "mysql-9")  # a user's mistake: bad input, exit 2
    assert result.returncode == 2 and "--to: no pod 'mysql-9'" in result.stderr, result.stderr
    result = cluster.run("failover")
    assert result.returncode == 1 and "use `mysqlsts switchover`" in result.stderr  # the primary answers


def kill_server(cluster, pod: str, sig: int = signal.SIGKILL) -> int:
    pid = cluster.server_pid(pod)
    os.kill(pid, sig)
    return pid


def wait_new_primary(cluster, old: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with cluster.connect(f"{cluster.name}-primary") as conn, conn.cursor() as cur:
                cur.execute("SELECT @@GLOBAL.report_host, @@GLOBAL.read_only")
                host, ro = cur.fetchone()
            if not ro and not host.startswith(old + "."):
                return host.split(".")[0]
        except Exception:
            pass
        time.sleep(0.1)
    raise AssertionError(f"no new primary within {timeout}s")


def killed_and_replaced(cluster, writer, old: str, writes: int = 5, timeout: float = 15) -> str:
    """kill -9 of `old`'s server: the new primary, once `writes` more of the writer's writes went through
    the primary name."""
    killed_at = time.monotonic()
    kill_server(cluster, old)
    new = wait_new_primary(cluster, old)
    deadline = time.monotonic() + timeout
    while writer.acked_since(killed_at) < writes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.acked_since(killed_at) >= writes, "writes did not resume through the primary name"
    return new


@pytest.fixture
def controller(cluster):
    ok(cluster.run("bootstrap", "--controller", "--set", "controller.blockPeriodSeconds=0",
                   "--set", "controller.autoReclone=true"))
    yield cluster
    ok(cluster.run("bootstrap", "--set", "controller.enabled=false"))


def test_kill_9_of_the_primary_with_the_controller_running(controller):
    cluster = controller
    old = primary_of(cluster)
    with Watched(cluster) as w:
        time.sleep(0.5)
        new = killed_and_replaced(cluster, w.writer, old, writes=10, timeout=10)
    assert new != old
    assert w.sampler.split_brain == []
    all_rows_everywhere(cluster, w.acked)
    roles = {p["pod"]: p["role"] for p in cluster.status()["pods"]}
    assert roles[old] == "replica"  # the old primary rejoined (or was re-cloned) as a replica
    log = (cluster.state / cluster.name / "controller.log").read_text().splitlines()
    decisions = [json.loads(line) for line in log if line.startswith("{")]
    assert any(d["event"] == "failed-over" and d["from"] == old and d["to"] == new for d in decisions)
    assert all(d.get("reason") or d["event"] in ("leading", "stopped", "failed-over", "recloned")
               for d in decisions)


def test_a_hung_primary_is_failed_over_and_comes_back_fenced(controller):
    only_on(controller, "mysql")
    cluster = controller
    old = primary_of(cluster)
    with Watched(cluster) as w:
        pid = kill_server(cluster, old, signal.SIGSTOP)
        try:
            new = wait_new_primary(cluster, old, timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)  # the hang ends (if it was not killed as a fence)
        time.sleep(2)
    assert new != old
    assert w.sampler.split_brain == [], "the resumed old primary was writable next to the new one"
    report = wait_healthy(cluster)
    assert report["healthy"], report
    roles = {p["pod"]: p["role"] for p in cluster.status()["pods"]}
    assert roles[old] == "replica"
    all_rows_everywhere(cluster, w.acked)


def test_a_primary_stalled_for_less_than_the_hang_budget_is_not_failed_over(controller):
    """A 1 s SIGSTOP is a slow primary (a stalled disk, a stop-the-world pause): the controller
    waits, the same server takes writes again, and no acknowledged write is lost."""
    only_on(controller, "mariadb")
    cluster = controller
    old = primary_of(cluster)
    budget = 1.3  # controller.hungAfterSeconds, the chart's default
    log = cluster.state / cluster.name / "controller.log"
    seen = len(log.read_text().splitlines()) if log.exists() else 0
    with Watched(cluster) as w:
        time.sleep(0.5)
        pid = kill_server(cluster, old, signal.SIGSTOP)
        try:
            time.sleep(1.0)
        finally:
            os.kill(pid, signal.SIGCONT)
        resumed = time.monotonic()
        time.sleep(budget + 2.0)  # past when a hang would have been failed over
        assert w.writer.acked_since(resumed) >= 10, "writes did not resume on the stalled primary"
    assert primary_of(cluster) == old and cluster.server_pid(old) == pid  # neither failed over nor killed
    assert w.sampler.split_brain == []
    events = [json.loads(line) for line in log.read_text().splitlines()[seen:] if line.startswith("{")]
    assert not any(e["event"] == "failing-over" for e in events), events
    all_rows_everywhere(cluster, w.acked)


def test_an_errant_transaction_quarantines_the_replica_until_it_is_recloned(cluster):
    only_on(cluster, "mysql")
    primary = primary_of(cluster)
    stray, target = [p for p in PODS if p != primary]
    # A write on a replica by an account that may move the fence (MySQL's super_read_only holds for
    # every account; MariaDB's read_only not for the operator): an errant GTID.
    cluster.platform.enter_network()
    with pymysql.connect(host=cluster.fqdn(stray), user="mysqlsts", password=cluster.passwords()["operatorPassword"],
                         autocommit=True) as conn, conn.cursor() as cur:
        if cluster.flavor == "mysql":
            cur.execute("SET GLOBAL super_read_only = OFF")
        cur.execute("CREATE DATABASE IF NOT EXISTS stray")
        if cluster.flavor == "mysql":
            cur.execute("SET GLOBAL super_read_only = ON")
    result = json.loads(ok(cluster.run("switchover", "--to", target, "-o", "json")).stdout)
    assert result["to"] == target
    status = cluster.status()
    assert {p["pod"]: p["role"] for p in status["pods"]}[stray] == "quarantined"
    report = cluster.verify()
    assert not report["healthy"]
    ok(cluster.run("reclone", stray))
    roles = {p["pod"]: p["role"] for p in cluster.status()["pods"]}
    assert roles[stray] == "replica"
    assert wait_healthy(cluster)["healthy"]
    with cluster.connect(cluster.fqdn(stray)) as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE 'stray'")
        assert cur.fetchone() is None  # the errant write is gone with the old data


def test_no_acknowledged_write_is_lost_across_ten_consecutive_failovers(controller):
    only_on(controller, "mariadb")
    cluster = controller
    primaries = [primary_of(cluster)]
    with Watched(cluster) as w:
        for _ in range(10):
            primaries.append(killed_and_replaced(cluster, w.writer, primaries[-1]))
            assert wait_healthy(cluster, timeout=90)["healthy"]  # the old primary rejoined or was re-cloned
    assert len(set(primaries[1:]) | {primaries[0]}) >= 2 and all(a != b for a, b in itertools.pairwise(primaries))
    assert w.sampler.split_brain == []
    assert len(w.acked) > 100
    all_rows_everywhere(cluster, w.acked)


def test_a_primary_killed_mid_commit_loses_nothing_acknowledged_and_comes_back_a_replica(controller):
    """kill -9 of the primary while its commits wait for acknowledgements that cannot come (both replicas'
    receivers stopped): the transactions in flight are in its binlog, synced, acknowledged to no one.
    MariaDB: its crash recovery cuts them off (init_rpl_role), so it rejoins as a replica of the new primary
    with its own data, holding nothing the new primary lacks. MySQL has no such cut: its recovery commits
    that tail, which it then holds alone, so it is quarantined (errant) and re-cloned (autoReclone)."""
    cluster = controller
    flavor = server_flavors.get(cluster.flavor)
    assert wait_healthy(cluster)["healthy"]
    old = primary_of(cluster)
    replicas = [p for p in PODS if p != old]
    layout = cluster.platform.layout.pod(old)
    data_inode = (layout.pv / "data").stat().st_ino
    server_log = layout.log("mysql")
    log_file = cluster.state / cluster.name / "controller.log"
    seen = len(log_file.read_text().splitlines())
    burst = Writer(cluster, table="app.burst")  # a second writer: more than one commit in flight
    with Watched(cluster) as w:
        burst.start()
        time.sleep(0.5)
        for pod in replicas:
            with cluster.connect(cluster.fqdn(pod)) as conn, conn.cursor() as cur:
                cur.execute(flavor.stop_receiving_sql)  # receivers stalled: no acknowledgement reaches the primary
        with cluster.connect(cluster.fqdn(old)) as conn, conn.cursor() as cur:
            deadline = time.monotonic() + 10
            while True:  # both writers' commits are in the binlog, waiting
                cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                            "WHERE STATE LIKE 'Waiting for semi-sync ACK%'")
                if cur.fetchone()[0] >= 2 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        new = killed_and_replaced(cluster, w.writer, old)
        acked_burst = burst.finish()
    assert new != old
    assert w.sampler.split_brain == []
    assert wait_healthy(cluster, timeout=120)["healthy"]
    pods = {p["pod"]: p for p in cluster.status()["pods"]}
    assert pods[old]["role"] == "replica" and pods[old]["source"] == new, pods[old]
    events = [json.loads(line) for line in log_file.read_text().splitlines()[seen:] if line.startswith("{")]
    if cluster.flavor == "mariadb":
        assert (layout.pv / "data").stat().st_ino == data_inode, "the old primary was re-cloned"
        assert not [e for e in events if e.get("pod") == old and e["event"] in ("quarantining", "recloning")], events
        assert "Successfully truncated binlog" in server_log.read_text(errors="replace"), \
            "the old primary's recovery cut no tail: the test did not kill it mid-commit"
    else:
        assert (layout.pv / "data").stat().st_ino != data_inode, "the old primary kept its unacknowledged tail"
        assert any(e.get("pod") == old and e["event"] == "recloned" for e in events), events
    all_rows_everywhere(cluster, w.acked)
    all_rows_everywhere(cluster, acked_burst, table="app.burst")
    deadline = time.monotonic() + 30
    while True:  # nothing is written now: once caught up, the old primary holds exactly what the new one holds
        seen_now = {pod: held(cluster, pod) for pod in (old, new)}
        if seen_now[old] == seen_now[new] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    (old_gtids, old_rows), (new_gtids, new_rows) = seen_now[old], seen_now[new]
    assert new_gtids.contains(old_gtids), seen_now
    assert old_rows == new_rows


def held(cluster, pod: str) -> tuple:
    """A pod's GTIDs and the ids of both test tables."""
    flavor = server_flavors.get(cluster.flavor)
    with cluster.connect(cluster.fqdn(pod)) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {flavor.gtid_executed_sql.removeprefix('SELECT ')}, "
                    "(SELECT GROUP_CONCAT(id ORDER BY id) FROM app.ledger), "
                    "(SELECT GROUP_CONCAT(id ORDER BY id) FROM app.burst)")
        position, *rows = cur.fetchone()
    return gtid.parse(flavor, position.replace("\n", "")), tuple(rows)


def test_a_replica_killed_during_a_switchover(cluster):
    """kill -9 of the replica that is not the candidate, as the switchover fences the old primary: the
    promotion goes on without it (it stays fenced, reported under not_repointed), one writable node at every
    moment, nothing acknowledged lost, and the killed replica comes back following the new primary."""
    only_on(cluster, "mysql")
    assert wait_healthy(cluster)["healthy"]
    old = primary_of(cluster)
    target, victim = [p for p in PODS if p != old]
    with Watched(cluster) as w:
        time.sleep(0.5)
        switchover = cluster.start("switchover", "--to", target, "-o", "json")
        try:
            for line in switchover.stderr:  # the switchover has looked at every node, the victim included
                if f"fencing {old}" in line:
                    kill_server(cluster, victim)
                    break
            out, err = switchover.communicate(timeout=120)
        finally:
            if switchover.poll() is None:
                switchover.kill()
        assert switchover.returncode == 0, err
        report = json.loads(out)
        assert report["to"] == target and list(report["not_repointed"]) == [victim], report
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # its agent joins the one writable peer once its server is back
            pods = {p["pod"]: p for p in cluster.status()["pods"]}
            if pods[victim]["source"] == target and pods[victim]["io_thread"] == "Yes":
                break
            time.sleep(0.5)
        assert pods[victim]["role"] == "replica" and pods[victim]["source"] == target, pods[victim]
    assert w.sampler.sweeps > 20 and w.sampler.split_brain == []
    assert primary_of(cluster) == target == cluster.platform.recorded_primary()
    all_rows_everywhere(cluster, w.acked)


def failover_phase(conns: dict, old: str, recorded: str | None, flavor: server_flavors.Flavor) -> int:
    """How far a failover from `old` has got, from the replicas' own state and the record: 0 not begun,
    1 every receiver stopped, 2 a candidate is the (still fenced) source, 3 it is writable, 4 it is recorded."""
    if recorded != old:
        return 4
    phase = 0
    stopped = 0
    for conn in conns.values():
        with conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute("SELECT @@GLOBAL.read_only AS ro")
            writable = not cur.fetchone()["ro"]
            cur.execute(flavor.replica_status_sql)
            status = cur.fetchone()
        if writable:
            phase = max(phase, 3)
        elif status is None:  # RESET REPLICA ALL: it stopped replicating to become the source
            phase = max(phase, 2)
        elif status[flavor.column("Replica_IO_Running")] == "No":
            stopped += 1
    return max(phase, 1 if stopped == len(conns) else 0)


@pytest.mark.parametrize("kill_at", [pytest.param(1, id="receivers-stopped"),
                                     pytest.param(2, id="candidate-is-source-not-writable")])
def test_a_controller_killed_mid_failover_is_replaced_and_its_successor_finishes(controller, kill_at):
    """kill -9 of the controller halfway through a failover, then a new controller, as the Deployment would
    start one: the new one finishes the failover. The first one is run in slices (SIGSTOP, SIGCONT) from its
    `failing-over` line on, and killed at the first look that finds the failover at least at `kill_at` but
    not yet recorded. Never two writable nodes, nothing acknowledged lost, the recorded primary the writable one."""
    only_on(controller, "mariadb")
    cluster = controller
    old = primary_of(cluster)
    log_file = cluster.state / cluster.name / "controller.log"
    pid_file = cluster.state / cluster.name / "controller.pid"
    first = procs.read_pid(pid_file)
    assert first and procs.alive(first, "mysqlsts controller")
    replicas = [p for p in PODS if p != old]
    conns = {p: cluster.connect(cluster.fqdn(p)) for p in replicas}
    try:
        with Watched(cluster) as w:
            time.sleep(0.5)
            offset = log_file.stat().st_size
            killed_at = time.monotonic()
            kill_server(cluster, old)
            deadline = time.monotonic() + 30
            while '"failing-over"' not in log_file.read_text()[offset:]:
                assert time.monotonic() < deadline, "the controller never began a failover"
                time.sleep(0.001)
            os.kill(first, signal.SIGSTOP)
            # Slices of 0.5 ms up to the phase before the target, then as short as two signals allow, so that
            # the look after each slice finds the target phase before the controller takes its next step.
            steps = 0
            while (phase := failover_phase(conns, old, cluster.platform.recorded_primary(),
                                           server_flavors.get(cluster.flavor))) < kill_at:
                os.kill(first, signal.SIGCONT)
                if phase < kill_at - 1:
                    time.sleep(0.0005)
                os.kill(first, signal.SIGSTOP)
                steps += 1
                assert steps < 20000, "the failover never got there"
            os.kill(first, signal.SIGKILL)
            assert kill_at <= phase < 4, f"killed at phase {phase} after {steps} slices: too late"
            assert '"failed-over"' not in log_file.read_text()[offset:]
            while procs.group_alive(first):
                time.sleep(0.01)
            # As the controller's Deployment starts a new pod: its lock went with the killed process.
            assert "controller started" in cluster.platform.ensure_controller(cluster.platform.values())
            new = wait_new_primary(cluster, old)
            deadline = time.monotonic() + 10
            while w.writer.acked_since(killed_at) < 10 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert w.writer.acked_since(killed_at) >= 10, "writes did not resume through the primary name"
    finally:
        for conn in conns.values():
            conn.close()
    assert w.sampler.sweeps > 20 and w.sampler.split_brain == []
    all_rows_everywhere(cluster, w.acked)
    assert primary_of(cluster) == new == cluster.platform.recorded_primary()
    second = procs.read_pid(pid_file)
    assert second != first
    decisions = [json.loads(line) for line in log_file.read_text()[offset:].splitlines() if line.startswith("{")]
    assert [d["event"] for d in decisions].count("leading") == 1  # the new controller, after the killed one
    assert any(d["event"] in ("failed-over", "recording") for d in decisions), decisions


def test_a_fence_ends_a_lock_tables_write_holder(cluster):
    """LOCK TABLES ... WRITE holds no transaction, yet blocks read_only: the fence ends that session too."""
    assert wait_healthy(cluster)["healthy"]
    primary = primary_of(cluster)
    with cluster.connect(cluster.fqdn(primary)) as holder, holder.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS app")
        cur.execute("CREATE TABLE IF NOT EXISTS app.locked (id INT PRIMARY KEY)")
        cur.execute("LOCK TABLES app.locked WRITE")
        cur.execute("SELECT CONNECTION_ID()")
        (holder_id,) = cur.fetchone()
        with cluster.servers().operator(cluster.fqdn(primary), timeout=5, read_timeout=30) as server:
            killed = server.fence(1)
            assert holder_id in killed
            assert server.state().read_only
            server.unfence()
        with pytest.raises(pymysql.err.OperationalError):
            cur.execute("SELECT 1")  # its session was ended
    assert wait_healthy(cluster)["healthy"]


def test_a_fence_ends_commits_waiting_for_an_acknowledgement_that_cannot_come(cluster):
    """Every replica's receiver stopped: a commit on the primary waits for an acknowledgement for ever,
    and holds read_only. The fence ends it (its client is cut off, never acknowledged) and sets read_only;
    the primary's semi-sync is as it was after."""
    assert wait_healthy(cluster)["healthy"]
    primary = primary_of(cluster)
    flavor = server_flavors.get(cluster.flavor)
    replicas = [p for p in PODS if p != primary]
    waiting = cluster.connect(cluster.fqdn(primary), read_timeout=60)
    waiting.cursor().execute("CREATE DATABASE IF NOT EXISTS app")
    waiting.cursor().execute("CREATE TABLE IF NOT EXISTS app.unacked (id INT PRIMARY KEY)")
    for pod in replicas:
        with cluster.connect(cluster.fqdn(pod)) as conn, conn.cursor() as cur:
            cur.execute(flavor.stop_receiving_sql)
    outcome: list = []
    try:
        started = time.monotonic()

        def commit():
            try:
                waiting.cursor().execute("INSERT INTO app.unacked VALUES (1)")
                outcome.append("acknowledged")
            except pymysql.MySQLError as e:
                outcome.append(e)

        writer = threading.Thread(target=commit, daemon=True)
        writer.start()
        deadline = time.monotonic() + 10
        with cluster.connect(cluster.fqdn(primary)) as conn, conn.cursor() as cur:
            while True:
                cur.execute("SELECT COUNT(*) FROM information_schema.processlist "
                            "WHERE state LIKE 'Waiting for semi-sync ACK%'")
                if cur.fetchone()[0] or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        assert writer.is_alive(), "the commit did not wait for an acknowledgement"
        with cluster.servers().operator(cluster.fqdn(primary), timeout=5, read_timeout=30) as server:
            server.fence(1)
            state = server.state()
            assert state.read_only and state.semi_sync_waits_alone
            server.unfence()
        writer.join(10)
        assert not writer.is_alive() and outcome and outcome[0] != "acknowledged", outcome
        assert time.monotonic() - started < 30
        with cluster.connect(cluster.fqdn(primary)) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT @@GLOBAL.{flavor.semi_sync_source_var}")
            assert cur.fetchone()[0] == 1  # semi-sync back on
    finally:
        for pod in replicas:
            with cluster.connect(cluster.fqdn(pod)) as conn, conn.cursor() as cur:
                cur.execute(flavor.start_replica_sql)
    assert wait_healthy(cluster)["healthy"]
