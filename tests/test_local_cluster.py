"""Real MariaDB servers on the local runtime: bootstrap, DNS, restarts, scaling,
interrupted clones and tricky passwords. Every cluster is destroyed afterwards,
also when a test fails."""

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
from localcluster import SERVER_MARKS, LocalCluster, Writer, all_rows_everywhere, cli, ok, wait_healthy

from mysqlsts.platform.local import procs

pytestmark = SERVER_MARKS

TRICKY = {
    "rootPassword": "r'o\"o t$HOME`id`\\n#1",
    "replicationPassword": "re pl'; DROP TABLE x; --\\",
    "operatorPassword": "op`$(whoami)` \"quoted\" 'single'",
    "cloneSecret": "cl$one\\\\secret with spaces#",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("state"), "mysql")
    try:
        result = c.run("bootstrap", "--target", "local", "--set", "flavor=mariadb", "--replicas", "3",
                       "-o", "json", "--timeout", "180")
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
    # ... until someone decides: the node holding every transaction is promoted. That is mysql-0, unless
    # its crash recovery cut a commit its storage engine had not made durable yet (the last canary
    # write, a moment before the kill; MariaDB commits in the engine after the binlog): then a replica,
    # which acknowledged that commit, holds more, and mysql-0 follows it.
    ok(cluster.run("failover", "--if-no-primary"))
    assert wait_healthy(cluster)["healthy"]
    roles = {p["pod"]: p["role"] for p in cluster.status()["pods"]}
    cut = server_log.read_text(errors="replace").count("Successfully truncated binlog") > cuts
    assert list(roles.values()).count("primary") == 1
    assert roles["mysql-0"] == "primary" or (cut and roles["mysql-0"] == "replica"), roles
    if roles["mysql-0"] != "primary":  # the tests after this one start from mysql-0 as the primary
        ok(cluster.run("switchover", "--to", "mysql-0"))


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


def test_a_clone_whose_donor_dies_mid_stream_starts_over_from_another_donor(tmp_path):
    """A new pod's clone survives its donor: the first donor's backup tool is killed (as the OOM killer
    would kill it in the clone container: the donor stays a ready replica), the second donor's whole pod
    dies. Each time the half copy is thrown away and the clone starts over from a donor that has not
    failed it, and the pod turns ready with every acknowledged row."""
    c = LocalCluster(tmp_path / "state", "donor")
    writer = None
    try:
        # mysql.cloneThrottle=200: a fresh data dir is some 700 of mariabackup's I/O operations, so each
        # stream takes about 3 s here and can be cut in the middle (unthrottled it takes 0.5 s).
        ok(c.run("bootstrap", "--target", "local", "--set", "flavor=mariadb", "--replicas", "3",
                 "--set", "mysql.cloneThrottle=200"))
        new = c.platform.layout.pod("donor-3")
        writer = Writer(c)
        writer.start()
        scale = c.start("scale", "--replicas", "4")
        try:
            def streaming(donor: str) -> tuple[int, list[int]]:
                """The donor's pod and its backup tool, once that has sent part of the copy."""
                pgid = procs.read_pid(c.platform.layout.pod(donor).pid_file)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    backups = [p for p in procs.group_members(pgid) if "--backup" in procs.cmdline(p)]
                    if backups and staged_bytes(new.pv / "staging") > 1 << 20:
                        return pgid, backups
                    time.sleep(0.02)
                raise AssertionError(f"{donor} never streamed to donor-3")

            _, backups = streaming("donor-1")  # the first ready replica
            for pid in backups:
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
        assert "the clone stream from donor-1 ended early" in log or "from donor-1 was cut" in log, log
        assert "moving to donor donor-2 (a ready replica) after the clone from donor-1 failed; attempt 2 of 3" in log
        assert "moving to donor donor-0 (primary) after the clone from donor-2 failed; attempt 3 of 3" in log
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
    layout = cluster.platform.layout
    groups = [procs.read_pid(p.pid_file) for p in layout.existing_pods() if p.pid_file.is_file()]
    dns_pid = procs.read_pid(layout.dns_dir / "dnsmasq.pid")
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
    assert {p["pod"]: p["role"] for p in cluster.status()["pods"]}["mysql-0"] == "primary"


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


def test_replication_runs_over_tls_with_the_source_verified(cluster):
    current = roles(cluster)
    (primary,) = [p for p, r in current.items() if r == "primary"]
    for pod in [p for p, r in current.items() if r == "replica"]:
        with cluster.connect(cluster.fqdn(pod)) as conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute("SHOW SLAVE STATUS")
            status = cur.fetchone()
        assert status["Slave_IO_Running"] == "Yes", status
        assert status["Master_SSL_Allowed"] == "Yes" and status["Master_SSL_Verify_Server_Cert"] == "Yes"
        assert status["Master_SSL_CA_File"] == str(cluster.state / "mysql" / "pods" / pod / "tls" / "ca.crt")
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
        cur.execute("SHOW GRANTS")
        assert "REQUIRE SSL" in cur.fetchone()[0]


def test_bad_values_are_rejected_before_anything_starts(tmp_path):
    result = cli(tmp_path, "bootstrap", "--target", "local", "--set", "replicas=-1", "--set", "flavor=nosql")
    assert result.returncode == 2
    assert "replicas: must be an integer" in result.stderr and "flavor: must be one of" in result.stderr
    assert not (tmp_path / "mysql").exists()


def test_tricky_passwords_work_end_to_end_and_never_leak(tmp_path):
    c = LocalCluster(tmp_path / "state", "tricky")
    sets = [arg for k, v in TRICKY.items() for arg in ("--set", f"auth.{k}={v}")]
    try:
        ok(c.run("bootstrap", "--target", "local", "--set", "flavor=mariadb", "--replicas", "2", *sets))
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
        # and the server's own replication metadata (master.info), where every MariaDB replica
        # keeps its source credentials.
        for path in (c.state).rglob("*"):
            if not path.is_file() or path == secret_file or path.name == "master.info" or \
                    path.parent.name == "secrets":
                continue
            data = path.read_bytes()
            for pw in TRICKY.values():
                assert pw.encode() not in data, f"{path} holds a password"
    finally:
        c.teardown()
    assert not (tmp_path / "state" / "tricky" / "pods").exists()
