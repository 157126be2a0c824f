"""The first primary of a new cluster, on real servers (local runtime, MySQL 9.7 and MariaDB 10.11).

Its replicas clone their data from it before they can acknowledge anything. A commit on it that waited
for an acknowledgement meanwhile would wait for ever: no replica is there to give it, and the replicas'
clones wait for that commit to finish. So it commits without waiting until its replicas replicate from
it; from then on every commit waits for an acknowledgement, for good."""

from __future__ import annotations

import time

import pymysql
import pytest
from localcluster import SERVER_MARKS, LocalCluster, flavors, ok, wait_healthy

from mysqlsts import flavors as server_flavors
from mysqlsts.errors import OperationFailed

pytestmark = SERVER_MARKS


@pytest.mark.parametrize("flavor", flavors("mysql", "mariadb"))
def test_a_write_before_the_replicas_join_commits_and_never_holds_their_clone(tmp_path, flavor):
    c = LocalCluster(tmp_path / "state", "first", flavor)
    boot = None
    try:
        boot = c.start("bootstrap", "--target", "local", "--set", f"flavor={flavor}", "--replicas", "3",
                       "--timeout", "180")
        deadline = time.monotonic() + 120
        conn = None
        while conn is None:  # first-0 takes writes: its agent promoted it, and nobody has cloned from it yet
            assert time.monotonic() < deadline and boot.poll() is None, "first-0 never took writes"
            try:
                conn = c.connect(c.fqdn("first-0"), read_timeout=200)  # a held commit fails the test, not hangs it
                with conn.cursor() as cur:
                    cur.execute("SELECT @@GLOBAL.read_only")
                    if cur.fetchone()[0]:
                        conn.close()
                        conn = None
            except (pymysql.MySQLError, OperationFailed, OSError):  # no cluster DNS yet, or no server
                conn = None
            if conn is None:
                time.sleep(0.05)
        replicas = [p for p in c.platform.pods() if p.name != "first-0"]
        assert not any(p.ready for p in replicas), "the replicas joined before the write: nothing was tested"
        with conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE app")
            cur.execute("CREATE TABLE app.early (id INT PRIMARY KEY)")
            cur.execute("INSERT INTO app.early VALUES (1)")  # acknowledged: no replica to wait for yet
        _, progress = boot.communicate(timeout=300)
        assert boot.returncode == 0, progress[-3000:]
        assert wait_healthy(c)["healthy"]
        for pod in ("first-0", "first-1", "first-2"):
            with c.connect(c.fqdn(pod)) as conn, conn.cursor() as cur:
                cur.execute("SELECT id FROM app.early")
                assert cur.fetchall() == ((1,),), pod
        # From now on a commit waits for an acknowledgement even while no replica is connected.
        wait_alone = server_flavors.get(flavor).semi_sync_wait_alone_var
        with c.connect(c.fqdn("first-0")) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT @@GLOBAL.{wait_alone}")
            assert cur.fetchone()[0] == 1
        assert "semi-sync holds every commit from now on" in c.platform.layout.pod("first-0").log("agent").read_text()
        ok(c.run("verify"))
    finally:
        if boot is not None and boot.poll() is None:
            boot.kill()
        c.teardown()
