"""Real servers on the local runtime, MySQL 9.7 and MariaDB 10.11: bootstrap, DNS, restarts,
scaling, interrupted clones (a backup tool's stream, or MySQL's CLONE plugin) and tricky passwords.
Every cluster is destroyed afterwards, also when a test fails."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pymysql
import pytest
from localcluster import SERVER_MARKS, LocalCluster, Writer, all_rows_everywhere, cli, flavors, ok, wait_healthy

from mysqlsts import flavors as server_flavors
from mysqlsts.agent.agent import agent_servers
from mysqlsts.agent.podenv import PodEnv
from mysqlsts.chart import secrets, tls
from mysqlsts.model import ServerError
from mysqlsts.mysql.observe import client_tls
from mysqlsts.mysql.server import SqlServers
from mysqlsts.platform.local import procs

pytestmark = SERVER_MARKS

TRICKY = {
    "rootPassword": "r'o\"o t$HOME`id`\\n#1",
    "replicationPassword": "re pl'; DROP TABLE x; --\\",
    "operatorPassword": "op`$(whoami)` \"quoted\" 'single'",
    "cloneSecret": "cl$one\\\\secret with spaces#",
}


@pytest.fixture(scope="module", params=flavors("mysql", "mariadb"))
def cluster(request, tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("state"), "mysql", request.param)
    try:
        result = c.bootstrap("--replicas", "3", "-o", "json", "--timeout", "180")
        ok(result)
        c.bootstrap_report = json.loads(result.stdout)
        yield c
    finally:
        c.teardown()


def test_bootstrap_three_pods_is_verified(cluster):
    report = cluster.bootstrap_report
    assert report["healthy"] is True
    names = [c["name"] for c in report["checks"]]
    for pod in ("mysql-0", "mysql-1", "mysql-2"):
        assert f"dns {cluster.fqdn(pod)}" in names
        assert f"canary row on {pod}" in " ".join(names) or pod == "mysql-0"
    status = cluster.status()
    roles = {p["pod"]: p["role"] for p in status["pods"]}
    assert roles == {"mysql-0": "primary", "mysql-1": "replica", "mysql-2": "replica"}
    for pod in status["pods"]:
        assert pod["address"].startswith("127.")
        assert pod["read_only"] is (pod["role"] == "replica")
        if pod["role"] == "replica":
            assert pod["source"] == "mysql-0" and pod["io_thread"] == "Yes" and pod["sql_thread"] == "Yes"


def test_verify_json_is_the_only_thing_on_stdout(cluster):
    result = cluster.run("verify", "-o", "json")
    assert result.returncode == 0
    json.loads(result.stdout)
    assert "target: local" in result.stderr


def test_writes_on_the_primary_read_back_from_every_replica_through_pod_dns(cluster):
    with cluster.connect("mysql-primary") as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS app")
        cur.execute("CREATE TABLE IF NOT EXISTS app.t (id INT PRIMARY KEY, v VARCHAR(20))")
        cur.execute("REPLACE INTO app.t VALUES (1, 'one'), (2, 'two'), (3, 'three')")
    for pod in ("mysql-1", "mysql-2"):
        for short in (cluster.fqdn(pod), f"{pod}.mysql"):  # full name and the search-domain short form
            deadline = time.monotonic() + 10
            rows = ()
            while time.monotonic() < deadline:
                with cluster.connect(short) as conn, conn.cursor() as cur:
                    cur.execute("SELECT id, v FROM app.t ORDER BY id")
                    rows = cur.fetchall()
                if len(rows) == 3:
                    break
                time.sleep(0.1)
            assert rows == ((1, "one"), (2, "two"), (3, "three"))


def listening_ports() -> set[int]:
    """TCP ports something on this machine listens on (the kernel's tables: state 0A is LISTEN)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A":
                    ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def test_no_pod_listens_on_the_x_protocol_port(cluster):
    """MySQL's X Plugin is on by default, on *:33060: every pod would listen there (local pods fight over it)
    on a port nobody secured or asked for. Only the client port and the clone listener are open."""
    assert 33060 not in listening_ports()
    for pod in ("mysql-0", "mysql-1", "mysql-2"):
        log = cluster.platform.layout.pod(pod).log("mysql").read_text(errors="replace")
        assert "33060" not in log and "X Plugin ready" not in log, pod


def test_replicas_refuse_writes(cluster):
    with cluster.connect(cluster.fqdn("mysql-1")) as conn, conn.cursor() as cur:
        with pytest.raises(pymysql.err.OperationalError) as err:
            cur.execute("CREATE DATABASE should_fail")
        assert "read-only" in str(err.value).lower() or "READ_ONLY" in str(err.value)


def test_rerunning_bootstrap_changes_nothing(cluster):
    before = {p["pod"]: p["address"] for p in cluster.status()["pods"]}
    pids = {pod: cluster.server_pid(pod) for pod in before}
    result = ok(cluster.run("bootstrap", "--target", "local"))
    assert "nothing to change" in result.stderr
    assert {p["pod"]: p["address"] for p in cluster.status()["pods"]} == before
    assert {pod: cluster.server_pid(pod) for pod in before} == pids


def app_rows(cluster) -> int:
    """Rows in app.t on the primary (created when a test runs alone)."""
    with cluster.connect("mysql-primary") as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS app")
        cur.execute("CREATE TABLE IF NOT EXISTS app.t (id INT PRIMARY KEY, v VARCHAR(20))")
        cur.execute("SELECT COUNT(*) FROM app.t")
        return cur.fetchone()[0]


def app_table(cluster, *ids: int) -> None:
    """A new app.t on the primary holding these rows."""
    with cluster.connect(f"{cluster.name}-primary") as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE app")
        cur.execute("CREATE TABLE app.t (id INT PRIMARY KEY)")
        if ids:
            cur.execute("INSERT INTO app.t VALUES " + ", ".join(f"({i})" for i in ids))


def test_a_switchover_whose_terminal_goes_away_mid_way_still_leaves_one_writable_primary(cluster):
    """`mysqlsts switchover 2>&1 | head -1` in a terminal then closed: the reader is gone and SIGHUP
    comes right after the fence; the switchover finishes, then the command ends."""
    switch = cluster.start("switchover", "--to", "mysql-1")
    try:
        for line in switch.stderr:
            if "fencing mysql-0" in line:
                break
        switch.stdout.close()
        switch.stderr.close()
        switch.send_signal(signal.SIGHUP)
        assert switch.wait(timeout=120) == 130
    finally:
        if switch.poll() is None:
            switch.kill()
    report = wait_healthy(cluster)
    assert report["healthy"], report
    assert roles(cluster) == {"mysql-0": "replica", "mysql-1": "primary", "mysql-2": "replica"}
    ok(cluster.run("switchover", "--to", "mysql-0"))


@pytest.mark.parametrize("command", ["restart-pod", "reclone", "switchover --to", "failover --to"])
def test_an_unknown_pod_is_bad_input_that_names_the_pods(cluster, command):
    before = {p["pod"]: p["address"] for p in cluster.status()["pods"]}
    result = cluster.run(*command.split(), "mysql-7")
    assert result.returncode == 2, result.stderr
    name, argument = [*command.split(), "POD"][:2]
    assert result.stderr.strip().splitlines()[-1] == (
        f"mysqlsts {name}: {argument}: no pod 'mysql-7' in cluster 'mysql'; its pods: mysql-0, mysql-1, mysql-2")
    assert "Traceback" not in result.stderr
    assert {p["pod"]: p["address"] for p in cluster.status()["pods"]} == before  # nothing restarted


def test_restarted_replica_keeps_its_data_and_rejoins_at_a_new_address(cluster):
    rows = app_rows(cluster)
    before = {p["pod"]: p["address"] for p in cluster.status()["pods"]}
    ok(cluster.run("restart-pod", "mysql-1"))
    after = {p["pod"]: p for p in cluster.status()["pods"]}
    assert after["mysql-1"]["address"] != before["mysql-1"]
    assert after["mysql-1"]["role"] == "replica"
    with cluster.connect(cluster.fqdn("mysql-1")) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM app.t")
        assert cur.fetchone()[0] == rows
    assert wait_healthy(cluster)["healthy"]


def test_a_replica_whose_replication_position_lags_its_binlog_rejoins(cluster):
    """MariaDB records a replicated DDL's position (gtid_slave_pos) in a transaction of its own, after the
    DDL is binlogged: a crash between the two leaves the position behind what the replica holds. Back, the
    replica must replicate from what it holds, not ask for a transaction it has (which gtid_strict_mode
    then refuses to binlog twice: error 1950, and the pod never turns ready)."""
    if cluster.flavor != "mariadb":
        pytest.skip("MySQL's gtid_executed is what the binlog and the engine hold, at once")
    with cluster.connect("mysql-primary") as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS app")
        cur.execute("CREATE TABLE app.ddl_before_the_crash (id INT PRIMARY KEY)")
    assert wait_healthy(cluster)["healthy"]  # its canary row reached every replica, after the DDL
    with cluster.servers().operator(cluster.fqdn("mysql-2"), timeout=5) as server, server.conn.cursor() as cur:
        cur.execute("STOP SLAVE")  # the operator's account: read_only refuses root a new position
        cur.execute("SELECT @@GLOBAL.gtid_slave_pos, @@GLOBAL.gtid_binlog_pos")
        slave_pos, binlog_pos = cur.fetchone()
        assert slave_pos == binlog_pos and "," not in slave_pos, (slave_pos, binlog_pos)
        domain, server, seq = slave_pos.split("-")
        cur.execute("SET GLOBAL gtid_slave_pos = %s", (f"{domain}-{server}-{int(seq) - 1}",))  # what the crash left
    kill_server_and_wait_restart(cluster, "mysql-2")
    report = wait_healthy(cluster)
    assert report["healthy"], report
    with cluster.connect(cluster.fqdn("mysql-2")) as conn, conn.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.gtid_slave_pos")
        assert cur.fetchone()[0] != f"{domain}-{server}-{int(seq) - 1}"


def test_restarted_primary_comes_back_as_primary_with_its_data(cluster):
    rows = app_rows(cluster)
    ok(cluster.run("restart-pod", "mysql-0"))
    roles = {p["pod"]: p["role"] for p in cluster.status()["pods"]}
    assert roles["mysql-0"] == "primary"
    report = wait_healthy(cluster)
    assert report["healthy"], report
    with cluster.connect("mysql-primary") as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO app.t VALUES (4, 'four')")
        cur.execute("SELECT COUNT(*) FROM app.t")
        assert cur.fetchone()[0] == rows + 1


def kill_server_and_wait_restart(cluster, pod: str) -> None:
    old = cluster.server_pid(pod)
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if cluster.server_pid(pod) != old:
                return
        except (KeyError, json.JSONDecodeError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{pod}'s server was not restarted")


def test_externally_killed_server_is_restarted_and_rejoins(cluster):
    kill_server_and_wait_restart(cluster, "mysql-2")  # a replica: rejoins by itself
    report = wait_healthy(cluster)
    assert report["healthy"], report
    # The primary: it comes back fenced and never unfences itself (no controller runs here) ...
    server_log = cluster.platform.layout.pod("mysql-0").log("mysql")
    cuts = server_log.read_text(errors="replace").count("Successfully truncated binlog")
    kill_server_and_wait_restart(cluster, "mysql-0")
    time.sleep(3)
    report = cluster.verify()
    assert not report["healthy"]
    assert any(c["name"] == "exactly one writable node" and c["detail"] == "none writable" for c in report["checks"])
    # A person unfences a replica meanwhile: a restarting replica must not follow it, since the primary
    # name still reaches mysql-0 (the recorded primary).
    with cluster.servers().operator(cluster.fqdn("mysql-2"), timeout=5) as server:
        server.unfence()
    try:
        agent_log = cluster.platform.layout.pod("mysql-1").log("agent")
        kill_server_and_wait_restart(cluster, "mysql-1")
        deadline = time.monotonic() + 30
        while "the primary name reaches mysql-0" not in agent_log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "mysql-2 is writable but the primary name reaches mysql-0" in agent_log.read_text(), \
            agent_log.read_text()[-2000:]
        pods = {p["pod"]: p for p in cluster.status()["pods"]}
        assert pods["mysql-1"]["source"] != "mysql-2" and "replicating from mysql-2" not in agent_log.read_text()
    finally:
        with cluster.servers().operator(cluster.fqdn("mysql-2"), timeout=5) as server:
            server.fence(0)
        # ... until someone decides: the node holding every transaction is promoted: mysql-0, which
        # kept what its binlog held (a primary restarting in place never cuts its tail).
        ok(cluster.run("failover", "--if-no-primary"))
    assert wait_healthy(cluster)["healthy"]
    assert roles(cluster) == {"mysql-0": "primary", "mysql-1": "replica", "mysql-2": "replica"}
    assert server_log.read_text(errors="replace").count("Successfully truncated binlog") == cuts


def test_scale_out_to_five_then_in_to_two(cluster):
    rows = app_rows(cluster)
    ok(cluster.run("scale", "--replicas", "5"))
    status = cluster.status()
    assert [p["pod"] for p in status["pods"]] == [f"mysql-{i}" for i in range(5)]
    assert sum(p["role"] == "replica" for p in status["pods"]) == 4
    with cluster.connect(cluster.fqdn("mysql-4")) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM app.t")
        assert cur.fetchone()[0] == rows
    ok(cluster.run("scale", "--replicas", "2"))
    status = cluster.status()
    assert [p["pod"] for p in status["pods"] if p["running"]] == ["mysql-0", "mysql-1"]
    pods_dir = cluster.state / "mysql" / "pods"
    for kept in ("mysql-2", "mysql-3", "mysql-4"):  # like PVCs: kept unless --delete-data
        assert (pods_dir / kept / "pv" / "data").is_dir()
    assert cluster.verify()["healthy"]
    ok(cluster.run("scale", "--replicas", "3"))  # back, reusing mysql-2's data
    assert wait_healthy(cluster)["healthy"]


def test_interrupted_clone_leaves_nothing_and_a_retry_starts_clean(cluster):
    # Enough data that the clone takes a moment.
    with cluster.connect("mysql-primary") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS app.big (id INT AUTO_INCREMENT PRIMARY KEY, pad CHAR(255))")
        cur.execute("INSERT INTO app.big (pad) VALUES (REPEAT('x', 255))")
        for _ in range(18):
            cur.execute("INSERT INTO app.big (pad) SELECT pad FROM app.big")
    pod = cluster.platform.layout.pod("mysql-3")
    shutil.rmtree(pod.dir, ignore_errors=True)  # a fresh ordinal
    scale = subprocess.Popen([sys.executable, "-m", "mysqlsts", "scale", "--replicas", "4", "--name", "mysql"],
                             env={**os.environ, "MYSQLSTS_HOME": str(cluster.state)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (pod.pv / "staging").is_dir() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (pod.pv / "staging").is_dir(), "the clone never started"
        time.sleep(0.2)
        pgid = procs.read_pid(pod.pid_file)
        os.killpg(pgid, signal.SIGKILL)  # the node dies mid-clone
        scale.wait(timeout=60)
    finally:
        if scale.poll() is None:
            scale.kill()
    assert not (pod.pv / "data").exists(), "an interrupted clone must never look like data"
    ok(cluster.run("scale", "--replicas", "4"))
    assert (pod.pv / "data").is_dir() and not (pod.pv / "staging").exists()
    with cluster.connect(cluster.fqdn("mysql-3")) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM app.big")
        assert cur.fetchone()[0] == 2 ** 18
    assert wait_healthy(cluster)["healthy"]


def test_clone_onto_a_full_disk_fails_cleanly_and_succeeds_once_there_is_room(cluster):
    # Runs after the interrupted-clone test: app.big makes the data set ~90 MiB.
    pod = cluster.platform.layout.pod("mysql-4")
    shutil.rmtree(pod.dir, ignore_errors=True)
    pod.pv.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(pod.pv)], check=True)  # a small PV
    try:
        result = cluster.run("scale", "--replicas", "5", "--timeout", "20")
        assert result.returncode == 1, result.stderr
        assert "mysql-4" in result.stderr
        log = pod.log("clone-mysql").read_text()
        assert "No space left on device" in log or "failed" in log, log[-2000:]
        assert not (pod.pv / "data").exists(), "a clone that ran out of space must never look like data"
        ok(cluster.run("scale", "--replicas", "4"))  # stop the pod before its PV goes away
    finally:
        cluster.platform.stop_pod("mysql-4")
        subprocess.run(["umount", str(pod.pv)], check=False)
    ok(cluster.run("scale", "--replicas", "5"))  # room now: the retry starts clean and completes
    assert (pod.pv / "data").is_dir() and not (pod.pv / "staging").exists()
    with cluster.connect(cluster.fqdn("mysql-4")) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM app.big")
        assert cur.fetchone()[0] == 2 ** 18
    ok(cluster.run("scale", "--replicas", "4", "--delete-data"))


def staged_bytes(staging: Path) -> int:
    """What a clone has written so far (the folder may be wiped while we count)."""
    total = 0
    with contextlib.suppress(OSError):
        for f in staging.rglob("*"):
            with contextlib.suppress(OSError):
                total += f.stat().st_size if f.is_file() else 0
    return total


@pytest.mark.parametrize("flavor", flavors("mysql", "mariadb"))
def test_a_clone_whose_donor_dies_mid_stream_starts_over_from_another_donor(tmp_path, flavor):
    """A new pod's clone survives its donor: the first donor's copy is cut (mariabackup killed in the
    clone container, as the OOM killer would, the donor staying a ready replica; with MySQL's CLONE
    plugin the donor's server itself is killed, the donating side of the copy), the second donor's whole
    pod dies. Each time the half copy is thrown away and the clone starts over from a donor that has not
    failed it, and the pod turns ready with every acknowledged row."""
    c = LocalCluster(tmp_path / "state", "donor", flavor)
    writer = None
    try:
        # Throttled, so that each copy takes some seconds and can be cut in the middle (unthrottled it takes
        # half a second): mariabackup's I/O operations (a fresh data dir is some 700 of them), the CLONE
        # plugin's MiB per second (some 75 MiB).
        ok(c.bootstrap("--replicas", "3", "--set", f"mysql.cloneThrottle={200 if flavor == 'mariadb' else 4}"))
        new = c.platform.layout.pod("donor-3")
        writer = Writer(c)
        writer.start()
        scale = c.start("scale", "--replicas", "4")
        try:
            def streaming(donor: str) -> tuple[int, list[int]]:
                """The donor's pod and the processes that send the copy, once part of it has arrived."""
                pgid = procs.read_pid(c.platform.layout.pod(donor).pid_file)
                marker = "--backup" if flavor == "mariadb" else "mysqld --defaults-file"
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    # Staging is wiped before the next donor is named: what arrives after, comes from it.
                    log = new.log("clone-mysql").read_text() if new.log("clone-mysql").is_file() else ""
                    named = f"cloning from {donor}" in log or f"moving to donor {donor}" in log
                    senders = [p for p in procs.group_members(pgid) if marker in procs.cmdline(p)]
                    if named and senders and staged_bytes(new.pv / "staging") > 1 << 20:
                        return pgid, senders
                    time.sleep(0.02)
                raise AssertionError(f"{donor} never streamed to donor-3")

            _, senders = streaming("donor-1")  # the first ready replica
            for pid in senders:
                os.kill(pid, signal.SIGKILL)
            pgid, _ = streaming("donor-2")
            os.killpg(pgid, signal.SIGKILL)  # the whole donor pod dies
            _, progress = scale.communicate(timeout=120)
        finally:
            if scale.poll() is None:
                scale.kill()
        # scale itself fails once donor-3 is ready: donor-2, which it waits for next, is gone.
        assert "donor-3: ready" in progress, progress
        assert (new.pv / "data").is_dir() and not (new.pv / "staging").exists()
        log = new.log("clone-mysql").read_text()
        assert "cloning from donor-1 (a ready replica)" in log
        assert any(cut in log for cut in ("the clone stream from donor-1 ended early", "from donor-1 was cut",
                                          "the clone from donor-1 failed")), log
        for move in ("donor-2 (a ready replica) after the clone from donor-1 failed; attempt 2 of 3",
                     "donor-0 (primary) after the clone from donor-2 failed; attempt 3 of 3"):
            assert f"moving to donor {move}" in log, log
        assert log.count("clone complete") == 1
        ok(c.run("bootstrap"))  # donor-2 comes back, as the StatefulSet would re-create it
        acked = writer.finish()
        assert len(acked) > 50
        all_rows_everywhere(c, acked)
    finally:
        if writer is not None:
            writer.finish()
        c.teardown()


def test_stale_state_after_a_reboot_is_detected_and_restarted(cluster):
    """The machine goes down a moment after a commit. MariaDB makes a commit durable in its binlog
    and marks it committed in the engine later, so every node may find it only prepared; the
    replicas' crash recovery cuts it, and the primary, back in place, must keep it."""
    layout = cluster.platform.layout
    groups = [procs.read_pid(p.pid_file) for p in layout.existing_pods() if p.pid_file.is_file()]
    dns_pid = procs.read_pid(layout.dns_dir / "dnsmasq.pid")
    with cluster.connect("mysql-primary") as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS app")
        cur.execute("CREATE TABLE IF NOT EXISTS app.last (id INT PRIMARY KEY)")
        cur.execute("INSERT INTO app.last VALUES (1)")  # acknowledged: semi-sync had a replica take it
    for pgid in [g for g in groups if g] + [dns_pid]:  # the machine goes down: everything dies at once
        os.killpg(pgid, signal.SIGKILL)
    for pgid in [g for g in groups if g] + [dns_pid]:
        while procs.group_alive(pgid):
            time.sleep(0.05)
    report = cluster.verify()
    assert report["healthy"] is False
    assert any(c["name"] == "pod mysql-0 running and ready" and not c["ok"] for c in report["checks"])
    ok(cluster.run("bootstrap", "--target", "local"))
    report = wait_healthy(cluster)
    assert report["healthy"], report
    pods = roles(cluster)
    assert pods["mysql-0"] == "primary"
    for pod in pods:
        deadline = time.monotonic() + 10
        while True:
            with cluster.connect(cluster.fqdn(pod)) as conn, conn.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM app.last")
                if cur.fetchone()[0] == 1 or time.monotonic() > deadline:
                    break
            time.sleep(0.1)
        with cluster.connect(cluster.fqdn(pod)) as conn, conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM app.last")
            assert cur.fetchone()[0] == 1, f"{pod} lost the last acknowledged write"


def tls_context(cluster, pod: str, client_certificate: bool = True) -> ssl.SSLContext:
    """A TLS client trusting the cluster's CA, optionally with the certificate the pods present."""
    tls_dir = cluster.state / cluster.name / "pods" / pod / "tls"
    context = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))
    if client_certificate:
        context.load_cert_chain(str(tls_dir / "tls.crt"), str(tls_dir / "tls.key"))
    return context


def first_bytes(sock: socket.socket) -> bytes:
    """What the peer sends first; nothing when it closes or fails the handshake."""
    try:
        return sock.recv(1024)
    except (ssl.SSLError, ConnectionError, TimeoutError):
        return b""


def roles(cluster) -> dict[str, str]:
    return {p["pod"]: p["role"] for p in cluster.status()["pods"]}


def test_clone_port_rejects_a_wrong_secret(cluster):
    """A peer with the cluster's certificate but not the clone secret gets no backup."""
    if cluster.flavor == "mysql":
        pytest.skip("the CLONE plugin's donor is the server: test_the_clone_plugin_donor_...")
    cluster.platform.enter_network()
    host = cluster.fqdn("mysql-0")
    with tls_context(cluster, "mysql-1").wrap_socket(socket.create_connection((host, 3307), timeout=10),
                                                     server_hostname=host) as s:
        f = s.makefile("rwb")
        nonce, role = f.readline().decode().split()
        assert len(nonce) == 32 and role in ("primary", "replica")
        f.write(b"0" * 64 + b" intruder\n")
        f.flush()
        s.settimeout(10)
        assert first_bytes(s) == b""  # closed without a byte of backup
    log = (cluster.state / "mysql" / "pods" / "mysql-0" / "logs" / "clone.log").read_text()
    assert "rejected: wrong clone secret" in log


def test_the_clone_port_speaks_only_tls_to_holders_of_a_cluster_certificate(cluster):
    """The clones of this cluster came over TLS: the listener speaks nothing else, shows a certificate
    valid for the donor's per-pod name, and wants one signed by the cluster's CA."""
    cluster.platform.enter_network()
    host = cluster.fqdn("mysql-0")
    with socket.create_connection((host, 3307), timeout=10) as s:  # plaintext: no challenge, no stream
        s.sendall(b"hello\n")
        data = first_bytes(s)
        assert not data.strip().isalnum(), data
    with tls_context(cluster, "mysql-1", client_certificate=False).wrap_socket(
            socket.create_connection((host, 3307), timeout=10), server_hostname=host) as s:
        assert first_bytes(s) == b""  # no client certificate: refused before the challenge
    with pytest.raises(ssl.SSLCertVerificationError):  # the donor is checked by its name
        tls_context(cluster, "mysql-1").wrap_socket(socket.create_connection((host, 3307), timeout=10),
                                                    server_hostname="mysql-0.elsewhere.example")
    with tls_context(cluster, "mysql-1").wrap_socket(socket.create_connection((host, 3307), timeout=10),
                                                     server_hostname=host) as s:
        assert s.getpeercert()["subjectAltName"]
        nonce, role = s.makefile("rb").readline().decode().split()
        assert len(nonce) == 32 and nonce.isalnum()  # the challenge, only now
        assert role in ("primary", "replica")  # what the pod can serve as, by its agent's verdict
    for pod in ("mysql-1", "mysql-2"):
        log = (cluster.state / "mysql" / "pods" / pod / "logs" / "clone-mysql.log").read_text()
        assert "clone complete" in log
    log = (cluster.state / "mysql" / "pods" / "mysql-0" / "logs" / "clone.log").read_text()
    assert "serving clone streams over TLS" in log


def test_the_clone_plugin_donor_takes_only_the_cluster_certificate_and_the_clone_secret(cluster):
    """MySQL's CLONE plugin: the donor's clone account wants a certificate of the cluster's CA and the
    clone secret, over TLS, and may do nothing but donate."""
    if cluster.flavor != "mysql":
        pytest.skip("MariaDB clones with mariabackup's stream: test_clone_port_...")
    cluster.platform.enter_network()
    host = cluster.fqdn("mysql-0")
    tls = cluster.state / cluster.name / "pods" / "mysql-1" / "tls"
    secret = cluster.passwords()["cloneSecret"]
    with_cert = {"ssl_ca": str(tls / "ca.crt"), "ssl_cert": str(tls / "tls.crt"), "ssl_key": str(tls / "tls.key")}
    for kw in ({"password": secret, "ssl_ca": str(tls / "ca.crt")},  # TLS, but no client certificate
               {"password": "not the secret", **with_cert},
               {"password": secret, "ssl_disabled": True}):
        with pytest.raises(pymysql.err.OperationalError) as refused:
            pymysql.connect(host=host, user="mysqlsts_clone", connect_timeout=5, **kw)
        assert refused.value.args[0] == 1045, refused.value
    with pymysql.connect(host=host, user="mysqlsts_clone", password=secret, connect_timeout=5,
                         **with_cert) as conn, conn.cursor() as cur:
        cur.execute("SHOW GRANTS")
        grants = " ".join(r[0] for r in cur.fetchall())
        assert "GRANT BACKUP_ADMIN ON *.*" in grants and "GRANT USAGE ON *.*" in grants, grants
        assert "SELECT" not in grants and "ALL PRIVILEGES" not in grants
    for pod in ("mysql-1", "mysql-2"):
        log = cluster.platform.layout.pod(pod).log("clone-mysql").read_text()
        assert "clone method: clone-plugin" in log and "clone complete (the copy carries its GTID set)" in log


def test_a_new_pod_that_cannot_verify_its_peers_clones_from_nobody(cluster):
    """A new pod checks its donor's certificate against the cluster's CA: given another CA, it clones
    from nobody, and leaves nothing a later start could take for data."""
    from mysqlsts.chart import tls as chart_tls
    from mysqlsts.chart import values as chart_values
    from mysqlsts.state import read_json, write_json

    secret_file = cluster.state / cluster.name / "secret.json"
    kept = read_json(secret_file)
    foreign = chart_tls.generate(chart_values.load([], ["name=elsewhere"]))  # another cluster's CA
    pod = cluster.platform.layout.pod("mysql-3")
    shutil.rmtree(pod.dir, ignore_errors=True)
    try:
        write_json(secret_file, {**kept, "tlsCA": foreign["tlsCA"]}, 0o600)  # what mysql-3's volume gets
        result = cluster.run("scale", "--replicas", "4", "--timeout", "20")
        assert result.returncode == 1, result.stderr
        log = pod.log("clone-mysql").read_text()
        assert "cannot donate (its clone listener does not answer)" in log, log[-2000:]
        assert "clone complete" not in log and not (pod.pv / "data").exists()
    finally:
        write_json(secret_file, kept, 0o600)
    ok(cluster.run("scale", "--replicas", "3", "--delete-data"))
    assert wait_healthy(cluster)["healthy"]


def test_the_clone_plugin_checks_its_donors_certificate(cluster):
    """The CLONE plugin's own check, as clone-mysql.sh sets it up (clone_ssl_ca, _cert, _key): a donor
    whose certificate the recipient's CA did not sign is refused before a byte is copied."""
    if cluster.flavor != "mysql":
        pytest.skip("mariabackup's stream is checked by socat: test_the_clone_port_speaks_only_tls_...")
    from mysqlsts.chart import tls as chart_tls
    from mysqlsts.chart import values as chart_values

    recipient = cluster.platform.layout.pod("mysql-2")
    foreign = recipient.tmp / "foreign-ca.crt"
    foreign.write_text(chart_tls.generate(chart_values.load([], ["name=elsewhere"]))["tlsCA"])
    donor = cluster.fqdn("mysql-1")
    secret = cluster.passwords()["cloneSecret"]
    with cluster.connect(cluster.fqdn("mysql-2")) as conn, conn.cursor() as cur:
        cur.execute("SET GLOBAL clone_valid_donor_list = %s", (f"{donor}:3306",))
        cur.execute("SET GLOBAL clone_ssl_cert = %s, GLOBAL clone_ssl_key = %s",
                    (str(recipient.volumes["tls"] / "tls.crt"), str(recipient.volumes["tls"] / "tls.key")))
        for ca, works in ((foreign, False), (recipient.volumes["tls"] / "ca.crt", True)):
            target = recipient.tmp / f"clone-{works}"
            shutil.rmtree(target, ignore_errors=True)
            cur.execute("SET GLOBAL clone_ssl_ca = %s", (str(ca),))
            try:
                cur.execute(f"CLONE INSTANCE FROM 'mysqlsts_clone'@'{donor}':3306 IDENTIFIED BY %s "
                            "DATA DIRECTORY = %s REQUIRE SSL", (secret, str(target)))
                assert works, "cloned from a donor whose certificate the recipient's CA did not sign"
                assert (target / "mysql.ibd").is_file()
            except pymysql.err.OperationalError as e:
                assert not works and "certificate verify failed" in str(e), e
            finally:
                shutil.rmtree(target, ignore_errors=True)


def test_replication_runs_over_tls_with_the_source_verified(cluster):
    current = roles(cluster)
    (primary,) = [p for p, r in current.items() if r == "primary"]
    flavor = server_flavors.get(cluster.flavor)
    word = "Source" if cluster.flavor == "mysql" else "Master"
    for pod in [p for p, r in current.items() if r == "replica"]:
        with cluster.connect(cluster.fqdn(pod)) as conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute(flavor.replica_status_sql)
            status = cur.fetchone()
        assert status[flavor.column("Replica_IO_Running")] == "Yes", status
        assert status[f"{word}_SSL_Allowed"] == "Yes" and status[f"{word}_SSL_Verify_Server_Cert"] == "Yes"
        assert status[f"{word}_SSL_CA_File"] == str(cluster.state / "mysql" / "pods" / pod / "tls" / "ca.crt")
    # The replication account takes TLS sessions only: the running receivers above are TLS sessions.
    host = cluster.fqdn(primary)
    password = cluster.passwords()["replicationPassword"]
    with pytest.raises(pymysql.err.OperationalError) as refused:
        pymysql.connect(host=host, user="repl", password=password, ssl_disabled=True, connect_timeout=5)
    assert refused.value.args[0] == 1045
    ca = str(cluster.state / "mysql" / "pods" / primary / "tls" / "ca.crt")
    with pymysql.connect(host=host, user="repl", password=password, ssl_ca=ca, ssl_verify_cert=True,
                         ssl_verify_identity=True, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        assert cur.fetchone()[1]
        # MySQL tells the account's TLS requirement apart from its grants.
        cur.execute("SHOW CREATE USER CURRENT_USER()" if cluster.flavor == "mysql" else "SHOW GRANTS")
        assert "REQUIRE SSL" in cur.fetchone()[0]


def test_the_projects_own_sql_travels_over_tls_to_a_certificate_of_the_clusters_ca(cluster):
    """The orchestrator's, the agents' and the Jobs' SQL (a CHANGE REPLICATION SOURCE carries the
    replication password) goes over TLS, and a server whose certificate the cluster's CA did not sign
    is refused."""
    (primary,) = [p for p, r in roles(cluster).items() if r == "primary"]
    with cluster.servers().operator(cluster.fqdn(primary), timeout=5) as server, server.conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        assert cur.fetchone()[1]
    stranger = tls.generate({**cluster.platform.values(), "name": "other"})["tlsCA"]
    servers = SqlServers(server_flavors.get(cluster.flavor), 3306, {**cluster.passwords(), "tlsCA": stranger})
    with pytest.raises(ServerError, match="CERTIFICATE_VERIFY_FAILED"), servers.operator(cluster.fqdn(primary),
                                                                                        timeout=5):
        pass
    # The pod agent reaches its peers with the CA of its TLS volume.
    env = pod_env(cluster, primary)
    with agent_servers(env).operator(cluster.fqdn(next(p for p in roles(cluster) if p != primary)), timeout=5) \
            as server, server.conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        assert cur.fetchone()[1]


def pod_env(cluster, pod: str) -> PodEnv:
    """The agent's view of a pod, from the environment its supervisor gave its agent container."""
    status = json.loads((cluster.state / cluster.name / "pods" / pod / "status.json").read_text())
    pid = status["containers"]["agent"]["pid"]
    environ = dict(line.split("=", 1) for line in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in line)
    return PodEnv.from_environ(environ)


def test_bad_values_are_rejected_before_anything_starts(tmp_path):
    result = cli(tmp_path, "bootstrap", "--target", "local", "--set", "replicas=-1", "--set", "flavor=nosql")
    assert result.returncode == 2
    assert "replicas: must be an integer" in result.stderr and "flavor: must be one of" in result.stderr
    assert not (tmp_path / "mysql").exists()


@pytest.mark.parametrize("flavor", flavors("mysql", "mariadb"))
def test_tricky_passwords_work_end_to_end_and_never_leak(tmp_path, flavor):
    c = LocalCluster(tmp_path / "state", "tricky", flavor)
    sets = [arg for k, v in TRICKY.items() for arg in ("--set", f"auth.{k}={v}")]
    try:
        ok(c.bootstrap("--replicas", "2", *sets))
        assert {k: c.passwords()[k] for k in TRICKY} == TRICKY  # beside them, the TLS pair
        assert c.verify()["healthy"]
        with c.connect(c.fqdn("tricky-0")) as conn, conn.cursor() as cur:  # root logs in with its password
            cur.execute("SELECT CURRENT_USER()")
            assert cur.fetchone()[0] == "root@%"
        secret_file = c.state / "tricky" / "secret.json"
        assert secret_file.stat().st_mode & 0o777 == 0o600
        # No process's arguments or environment hold a password.
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                args = procs.cmdline(int(entry.name))
                try:
                    environment = (entry / "environ").read_bytes()
                except OSError:
                    environment = b""  # gone meanwhile
                for pw in TRICKY.values():
                    assert pw not in args, f"pid {entry.name} has a password in its arguments"
                    assert pw.encode() not in environment, f"pid {entry.name} has a password in its environment"
        # No file holds one, except the secret file, the pods' Secret volumes (files of mode 0440)
        # and the server's own replication metadata, where every replica keeps its source's credentials:
        # master.info (MariaDB); the mysql.slave_master_info table (MySQL), in the mysql tablespace and
        # in the InnoDB logs that record its changes (redo, undo).
        for path in (c.state).rglob("*"):
            innodb = path.name in ("mysql.ibd", "ibdata1") or path.parent.name == "#innodb_redo" or \
                path.name.startswith("undo_")
            if not path.is_file() or path == secret_file or path.name == "master.info" or innodb or \
                    path.parent.name == "secrets":
                continue
            data = path.read_bytes()
            for pw in TRICKY.values():
                assert pw.encode() not in data, f"{path} holds a password"
    finally:
        c.teardown()
    assert not (tmp_path / "state" / "tricky" / "pods").exists()


@pytest.mark.parametrize("flavor", flavors("mariadb"))
def test_a_fresh_clone_holds_its_position_before_it_takes_a_connection(tmp_path, flavor):
    """A copy made by a backup tool gets its GTID position applied before anyone can reach its server:
    a failover re-pointing it in between would have it replicate from nowhere. Cloned from the primary
    (whose own transactions are in no replication position), the copy's first answer must already say
    where its data ends."""
    if flavor == "mysql":
        pytest.skip("MySQL 9.7 clones with the CLONE plugin here, whose copy carries its GTID set; "
                    "xtrabackup's (8.4) is checked statically")
    c = LocalCluster(tmp_path / "state", "fresh", flavor)
    try:
        ok(c.bootstrap("--replicas", "1", "--set", "mysql.semiSync.enabled=false"))  # semi-sync: not the point
        with c.connect("fresh-primary") as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE app")
            cur.execute("CREATE TABLE app.t (id INT PRIMARY KEY)")
            cur.execute("INSERT INTO app.t VALUES (1), (2), (3)")
        scale = c.start("scale", "--replicas", "2")
        try:
            first = None
            deadline = time.monotonic() + 120
            while first is None and time.monotonic() < deadline and scale.poll() is None:
                try:
                    with c.connect(c.fqdn("fresh-1")) as conn, conn.cursor() as cur:  # its first answer
                        cur.execute("SELECT @@GLOBAL.gtid_slave_pos")
                        first = cur.fetchone()[0]
                except pymysql.MySQLError:
                    time.sleep(0.005)
            out, progress = scale.communicate(timeout=300)
        finally:
            if scale.poll() is None:
                scale.kill()
        assert scale.returncode == 0, out + progress
        log = c.platform.layout.pod("fresh-1").log("clone-mysql").read_text()
        position = log.split("clone complete at GTID ")[1].split()[0]
        assert position.startswith("0-") and first == position, (first, log[-1000:])
    finally:
        c.teardown()


@pytest.mark.parametrize("flavor", flavors("mysql", "mariadb"))
def test_scaling_to_and_from_one_pod_keeps_writes_flowing_and_acknowledged(tmp_path, flavor):
    """At one pod a semi-sync primary that holds commits for an acknowledgement hangs every write; at two
    and more, one that does not hold loses what no replica had when it dies. `scale` moves between the two."""
    c = LocalCluster(tmp_path / "state", "solo", flavor)
    server_flavor = server_flavors.get(flavor)

    def write_then_semi_sync() -> tuple[bool, str]:
        """A write (one that hangs fails after 10 s), then whether the primary holds commits while no
        replica is connected, and its semi-sync status."""
        with c.connect("solo-primary", read_timeout=10) as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO app.t VALUES (NULL)")
            cur.execute(f"SELECT @@GLOBAL.{server_flavor.semi_sync_wait_alone_var}")
            holds = bool(cur.fetchone()[0])
            cur.execute("SHOW GLOBAL STATUS LIKE %s", (server_flavor.semi_sync_source_status,))
            return holds, cur.fetchone()[1]

    try:
        ok(c.bootstrap("--replicas", "1"))  # semi-sync on, as by default
        with c.connect("solo-primary", read_timeout=10) as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE app")
            cur.execute("CREATE TABLE app.t (id BIGINT AUTO_INCREMENT PRIMARY KEY)")
        write_then_semi_sync()
        for _ in range(2):
            ok(c.run("scale", "--replicas", "2"))
            assert write_then_semi_sync() == (True, "ON")
            assert wait_healthy(c)["healthy"]  # its checks: semi-sync active on the primary, on the replica
            ok(c.run("scale", "--replicas", "1"))
            write_then_semi_sync()  # does not hang
            assert c.verify()["healthy"]
        with c.connect("solo-primary") as conn, conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM app.t")
            assert cur.fetchone()[0] == 5
    finally:
        c.teardown()


@pytest.mark.parametrize("flavor", flavors("mysql", "mariadb"))
def test_an_acknowledged_commit_held_by_one_replica_survives_its_restart_and_the_failover(tmp_path, flavor):
    """A chained failure: the primary goes with a commit that one replica alone received (and
    acknowledged) but had not applied, and that replica's server dies before any promotion. What it
    received must survive its restart, and the election must see it there."""
    c = LocalCluster(tmp_path / "state", "chain", flavor)
    f = server_flavors.get(flavor)
    try:
        ok(c.bootstrap("--replicas", "3"))
        app_table(c, 1)
        assert wait_healthy(c)["healthy"]
        primary = next(p["pod"] for p in c.status()["pods"] if p["role"] == "primary")
        holder, other = (p for p in ("chain-0", "chain-1", "chain-2") if p != primary)
        with c.connect(c.fqdn(other)) as conn, conn.cursor() as cur:  # receives nothing more
            cur.execute(f.stop_replica_sql + " IO_THREAD")
        with c.connect(c.fqdn(holder)) as conn, conn.cursor() as cur:  # receives, acknowledges, applies nothing
            cur.execute(f.stop_replica_sql + " SQL_THREAD")
        with c.connect("chain-primary", read_timeout=10) as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO app.t VALUES (2)")  # acknowledged: it is in the holder's relay log
        c.platform.stop_pod(primary)  # gone, with its data (a lost node)
        kill_server_and_wait_restart(c, holder)
        deadline = time.monotonic() + 60
        while True:  # an election waits for every node with data (it would refuse, naming the holder)
            try:
                with c.connect(c.fqdn(holder)):
                    break
            except pymysql.MySQLError:
                assert time.monotonic() < deadline, f"{holder} does not answer after its restart"
                time.sleep(0.2)
        failover = c.run("failover")
        assert failover.returncode == 0, failover.stdout + failover.stderr
        with c.connect("chain-primary") as conn, conn.cursor() as cur:
            cur.execute("SELECT id FROM app.t ORDER BY id")
            assert [r[0] for r in cur.fetchall()] == [1, 2], failover.stderr
        c.platform.start_pod(primary)
        assert wait_healthy(c, timeout=120)["healthy"]
        all_rows_everywhere(c, [1, 2], table="app.t")
    finally:
        c.teardown()


@pytest.mark.parametrize("flavor", flavors("mysql", "mariadb"))
def test_an_empty_pod_0_never_becomes_the_primary_over_the_clusters_data(tmp_path, flavor):
    """Pod 0's volume is lost and the cluster stopped; pod 0 starts first, with no peer answering. It must
    not initialize a new primary (its peers would find themselves errant against it and be quarantined,
    and autoReclone would wipe them): it waits for a donor, a node with the data is elected, and pod 0
    clones from it."""
    c = LocalCluster(tmp_path / "state", "empty", flavor)
    try:
        ok(c.bootstrap("--replicas", "3"))
        app_table(c, 1, 2, 3)
        assert wait_healthy(c)["healthy"] and c.platform.recorded_primary() == "empty-0"
        for pod in ("empty-2", "empty-1", "empty-0"):
            c.platform.stop_pod(pod)
        c.platform.delete_pod_data("empty-0")
        c.platform.start_pod("empty-0")
        said = wait_for_line(c.platform.layout.pod("empty-0").log("init-mysql"), "no data")
        assert "this cluster has held data (its recorded primary: empty-0)" in said, said
        assert "initializing the first primary" not in said
        c.platform.start_pod("empty-1")
        c.platform.start_pod("empty-2")
        deadline = time.monotonic() + 120
        while not any(p["role"] == "primary" for p in c.status()["pods"]):  # once both holders answer
            assert time.monotonic() < deadline, "no primary elected among the nodes with the data"
            ok(c.run("failover", "--if-no-primary"))
            time.sleep(1)
        assert wait_healthy(c, timeout=180)["healthy"]
        all_rows_everywhere(c, [1, 2, 3], table="app.t")
        assert not any(p["role"] == "quarantined" for p in c.status()["pods"])
    finally:
        c.teardown()


def wait_for_line(path: Path, text: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while text not in (path.read_text() if path.exists() else ""):
        assert time.monotonic() < deadline, f"{path.name} never said {text!r}:\n{path.read_text()[-2000:]}"
        time.sleep(0.5)
    return path.read_text()


@pytest.mark.parametrize("flavor", flavors("mysql", "mariadb"))
def test_binary_logs_go_once_every_pod_holds_them_and_not_before(tmp_path, flavor):
    """A lagging replica keeps the logs it still needs on every pod; once it caught up, they go."""
    c = LocalCluster(tmp_path / "state", "purge", flavor)
    try:
        ok(c.bootstrap("--replicas", "3", "--set", "mysql.binlogRetentionHours=0"))
        app_table(c)
        assert wait_healthy(c)["healthy"]
        pods = {p["pod"]: p["role"] for p in c.status()["pods"]}
        primary = next(p for p, r in pods.items() if r == "primary")
        lagging = next(p for p, r in pods.items() if r == "replica")
        with c.connect(c.fqdn(lagging)) as conn, conn.cursor() as cur:
            cur.execute(server_flavors.get(flavor).stop_receiving_sql)
        with c.connect("purge-primary") as conn, conn.cursor() as cur:
            for i in range(1, 5):
                cur.execute("INSERT INTO app.t VALUES (%s)", (i,))
                cur.execute("FLUSH BINARY LOGS")
            cur.execute("SHOW BINARY LOGS")
            before = [r[0] for r in cur.fetchall()]
        agent_log = c.platform.layout.pod(primary).log("agent")
        wait_for_line(agent_log, f"{lagging} lacks some of")
        with c.connect("purge-primary") as conn, conn.cursor() as cur:
            cur.execute("SHOW BINARY LOGS")
            assert [r[0] for r in cur.fetchall()][-5:] == before[-5:]  # the four it lacks, and the active one
        with c.connect(c.fqdn(lagging)) as conn, conn.cursor() as cur:
            cur.execute(server_flavors.get(flavor).start_replica_sql)
        all_rows_everywhere(c, [1, 2, 3, 4], table="app.t")  # it fetched them all from the primary's logs
        wait_for_line(agent_log, "purged the binary logs before")
        deadline = time.monotonic() + 60
        while True:
            with c.connect("purge-primary") as conn, conn.cursor() as cur:
                cur.execute("SHOW BINARY LOGS")
                left = [r[0] for r in cur.fetchall()]
            if len(left) == 1 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert left == before[-1:] or (len(left) == 1 and left[0] > before[-1]), left
    finally:
        c.teardown()


@pytest.mark.parametrize("flavor", flavors("mariadb"))
def test_passwords_change_on_a_running_cluster_under_writes(tmp_path, flavor):
    """`bootstrap --set auth.*` on a running cluster: the servers take each new password beside the old,
    the pods restart on the new Secret, then the old ones go; no agent, probe or replica ever meets a
    password its server refuses, and no acknowledged write is lost."""
    c = LocalCluster(tmp_path / "state", "rotate", flavor)
    try:
        ok(c.bootstrap("--replicas", "3"))
        old = c.passwords()
        new = {"operatorPassword": "operator-pw-2026-new", "replicationPassword": "replication 'pw' new",
               "cloneSecret": "clone-secret-2026-new"}
        writer = Writer(c)
        writer.start()
        try:
            result = c.run("bootstrap", *[a for k, v in new.items() for a in ("--set", f"auth.{k}={v}")])
        finally:
            writer.stop.set()
            writer.join()
        ok(result)
        for log in (c.state / "rotate" / "pods").glob("*/logs/*.log"):  # no agent, probe or clone was refused
            if log.name != "mysql.log":
                assert "Access denied" not in log.read_text(errors="replace"), log
        assert {k: c.passwords()[k] for k in new} == new
        assert c.verify()["healthy"]
        all_rows_everywhere(c, [i for i, _ in writer.acked])
        (primary,) = [p for p, r in roles(c).items() if r == "primary"]
        for key, user in (("operatorPassword", "mysqlsts"), ("replicationPassword", "repl")):
            with pytest.raises(pymysql.err.OperationalError) as refused:
                pymysql.connect(host=c.fqdn(primary), user=user, password=old[key], ssl=client_tls(),
                                connect_timeout=5)
            assert refused.value.args[0] == 1045
            pymysql.connect(host=c.fqdn(primary), user=user, password=new[key], ssl=client_tls(),
                            connect_timeout=5).close()
        ok(c.run("bootstrap", "--set", "auth.rootPassword=root-pw-2026-new"))
        with c.connect("rotate-primary") as conn, conn.cursor() as cur:  # with the new root password
            cur.execute("SELECT COUNT(*) FROM app.ledger")
            assert cur.fetchone()[0] == len(writer.acked)
        with pytest.raises(pymysql.err.OperationalError):
            pymysql.connect(host=c.fqdn(primary), user="root", password=old["rootPassword"], ssl=client_tls(),
                            connect_timeout=5)
        assert not (c.state / "rotate" / "secret.next.json").exists()
    finally:
        c.teardown()


@pytest.mark.parametrize("flavor", flavors("mysql"))
def test_a_renewed_certificate_is_loaded_by_the_running_servers(tmp_path, flavor):
    """With tls.existingSecret, cert-manager renews the certificate in the Secret and the kubelet updates
    every pod's TLS volume in place: the servers must present the new one without a restart, and
    replication must go on verifying it. Here the suite plays both: the Secret (secret.json) and the
    files of every pod's TLS volume change together."""
    c = LocalCluster(tmp_path / "state", "renew", flavor)
    try:
        ok(c.bootstrap("--replicas", "2"))
        renewed = tls.generate(c.platform.values())
        secret_file = c.state / "renew" / "secret.json"
        secrets.save(secret_file, {**json.loads(secret_file.read_text()), **renewed})
        for pod in ("renew-0", "renew-1"):
            folder = c.state / "renew" / "pods" / pod / "tls"
            for key, name in tls.DATA_KEYS.items():
                (folder / f".{name}").write_text(renewed[key])
                (folder / f".{name}").chmod(0o440)
                (folder / f".{name}").replace(folder / name)
        der = ssl.PEM_cert_to_DER_cert(renewed["tlsCert"])
        c.platform.enter_network()
        for pod in ("renew-0", "renew-1"):
            deadline = time.monotonic() + 30
            while True:
                with pymysql.connect(host=c.fqdn(pod), user="root", password=c.passwords()["rootPassword"],
                                     ssl=client_tls(), connect_timeout=5) as conn:
                    presented = conn._sock.getpeercert(binary_form=True)
                if presented == der:
                    break
                assert time.monotonic() < deadline, f"{pod} still presents its old certificate"
                time.sleep(0.5)
        replica = next(p for p, r in roles(c).items() if r == "replica")
        flavor_ = server_flavors.get(flavor)
        with c.connect(c.fqdn(replica)) as conn, conn.cursor() as cur:  # a new session checks the new one
            cur.execute(flavor_.stop_replica_sql)
            cur.execute(flavor_.start_replica_sql)
        assert wait_healthy(c)["healthy"]  # the CLI checks the servers against the renewed CA too
    finally:
        c.teardown()
