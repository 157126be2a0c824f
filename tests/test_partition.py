"""A partitioned primary on the local runtime (`drill --fault isolate`): the cut itself (nftables
rules and a cgroup of their own, always removed), and on real servers a primary cut off from its
peers and the controller while a client on its side keeps writing to it, checked by an
independent ledger."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from localcluster import SERVER_MARKS, LocalCluster, Writer, flavors, ok, wait_healthy

from mysqlsts.errors import OperationFailed
from mysqlsts.platform.base import PodInfo
from mysqlsts.platform.local import partition
from mysqlsts.platform.local.partition import Partition
from mysqlsts.platform.local.runtime import LocalPlatform

SIDE_IDS = 1_000_000_000  # the test's own side client writes ids above this


def tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout


# -- without servers -------------------------------------------------------------------------------


def test_the_rules_cut_the_pods_address_and_processes_off_all_but_itself_and_its_side(tmp_path, monkeypatch):
    monkeypatch.setattr(partition, "cgroup2_root", lambda: Path("/sys/fs/cgroup/unified"))
    cut = Partition(tmp_path, "my-db")
    cgroup = cut.cgroup(Path("/sys/fs/cgroup/unified"))
    rules = cut.rules("127.1.2.10", "127.1.2.251", cgroup)
    assert rules.startswith(f"table inet mysqlsts_my_db_{cut.key} {{")  # its own table: one delete removes all
    assert "type filter hook output priority filter; policy accept;" in rules  # loopback passes output once
    assert "ip saddr 127.1.2.10 ip daddr != { 127.1.2.10, 127.1.2.251 } drop" in rules
    assert "ip daddr 127.1.2.10 ip saddr != { 127.1.2.10, 127.1.2.251 } drop" in rules
    assert f'socket cgroupv2 level 1 "unified/mysqlsts-isolate-{cut.key}" ip daddr != ' in rules  # its own sockets
    assert Partition(tmp_path / "other", "my-db").table != cut.table  # same name, other state folder


def test_isolate_is_refused_with_one_line_saying_why(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert LocalPlatform.fault_unavailable("isolate") == \
        "cutting a pod off takes nftables rules and a cgroup, which need root"
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(partition, "nft_binary", lambda: None)
    assert LocalPlatform.fault_unavailable("isolate") == "nft not found on PATH (apt-get install nftables)"
    assert LocalPlatform.fault_unavailable("kill") is None


def test_a_cut_whose_process_died_is_left_over_for_the_next_command_to_heal(tmp_path):
    cut = Partition(tmp_path, "mysql")
    assert not cut.leftover()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for pid, started, left in ((os.getpid(), partition.procs.started(os.getpid()), False),
                               (int(dead.stdout), "1", True), (os.getpid(), "1", True)):  # pid reused: not the cutter
        (tmp_path / "isolation.json").write_text(json.dumps({"by": {"pid": pid, "started": started}}))
        assert cut.leftover() is left


class FakeCut:
    def __init__(self, left_over: bool = False):
        self.calls: list[tuple] = []
        self.left_over = left_over

    def cut(self, *args) -> None:
        self.calls.append(("cut", *args))

    def heal(self) -> list[str]:
        self.calls.append(("heal",))
        return ["nftables table inet mysqlsts_mysql_0123456789 deleted"]

    def leftover(self) -> bool:
        return self.left_over


def fake_platform(tmp_path, monkeypatch, cut: FakeCut) -> LocalPlatform:
    platform = LocalPlatform(tmp_path, "mysql")
    monkeypatch.setattr(LocalPlatform, "partition", property(lambda self: cut))
    monkeypatch.setattr(platform, "pods", lambda: [PodInfo(name="mysql-0", ordinal=0, fqdn="mysql-0.mysql", address=
                                                           "127.1.2.10", running=True, ready=True, phase="Running",
                                                           restarts=0, has_data=True)])
    monkeypatch.setattr(platform, "_supervisor", lambda name: 4242)
    monkeypatch.setattr(platform, "client_side_address", lambda: "127.1.2.251")
    return platform


def test_a_cut_that_does_not_hold_is_undone_and_refused(tmp_path, monkeypatch):
    cut = FakeCut()
    platform = fake_platform(tmp_path, monkeypatch, cut)
    leak = "its own processes still reach 127.1.2.11:3306"
    monkeypatch.setattr(platform, "partition_leak", lambda name, address: leak)
    with pytest.raises(OperationFailed, match=r"^--fault isolate: the cut of mysql-0 does not hold \(its own processes "
                                              r"still reach 127.1.2.11:3306\), so isolate cannot be injected here"):
        platform.isolate("mysql-0")
    assert cut.calls == [("cut", "mysql-0", 4242, "127.1.2.10", "127.1.2.251"), ("heal",)]
    monkeypatch.setattr(platform, "partition_leak", lambda name, address: None)
    heal = platform.isolate("mysql-0")
    assert cut.calls[-1] == ("cut", "mysql-0", 4242, "127.1.2.10", "127.1.2.251")
    heal()
    assert cut.calls[-1] == ("heal",)


def test_any_command_heals_a_cut_left_by_a_drill_that_died(tmp_path, monkeypatch, capsys):
    for left_over in (False, True):
        cut = FakeCut(left_over)
        fake_platform(tmp_path, monkeypatch, cut).heal_leftover_partition()
        assert cut.calls == ([("heal",)] if left_over else [])
    assert "healed the partition a drill that died left behind: nftables table" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() != 0 or partition.unavailable() is not None,
                    reason=f"cannot cut a pod off here: {partition.unavailable() if os.geteuid() == 0 else 'not root'}")
def test_a_cut_holds_both_ways_spares_its_side_and_heals_without_a_trace(tmp_path):
    """A stand-in pod (its own process group, listening on its address) and a peer, real rules."""
    block = f"127.79.{os.getpid() % 250}"
    address, peer_address, side = f"{block}.10", f"{block}.11", f"{block}.251"
    peer = socket.create_server((peer_address, 0))
    pod = subprocess.Popen([sys.executable, "-c", (
        "import socket, sys\n"
        f"listener = socket.create_server(({address!r}, 0))\n"
        "print(listener.getsockname()[1], flush=True)\n"
        "for line in sys.stdin:\n"
        "    try:\n"
        f"        socket.create_connection(({peer_address!r}, int(line)), timeout=1).close()\n"
        "        print('reached', flush=True)\n"
        "    except OSError:\n"
        "        print('blocked', flush=True)\n")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
    port = int(pod.stdout.readline())
    cut = Partition(tmp_path, "mysql")

    def outward() -> str:
        pod.stdin.write(f"{peer.getsockname()[1]}\n")
        pod.stdin.flush()
        return pod.stdout.readline().strip()

    def inward(source: str | None = None) -> str:
        try:
            socket.create_connection((address, port), timeout=1, source_address=(source, 0) if source else None).close()
            return "reached"
        except OSError:
            return "blocked"

    try:
        assert (inward(), inward(side), outward()) == ("reached", "reached", "reached")
        cut.cut("mysql-0", pod.pid, address, side)
        assert cut.table in tables() and not cut.leftover()
        assert (inward(), inward(side), outward()) == ("blocked", "reached", "blocked")
    finally:
        healed = cut.heal()
        pod.kill()
        peer.close()
    assert len(healed) == 2 and cut.table not in tables() and not cut.record_file.exists()
    assert not cut.cgroup(partition.cgroup2_root()).exists()
    assert cut.heal() == []  # again: nothing left to do


# -- on real servers -------------------------------------------------------------------------------


@pytest.fixture(params=flavors("mysql"))
def cluster(request, tmp_path):
    c = LocalCluster(tmp_path / "state", "part", request.param)
    try:
        # The cluster's own controller, in its own process: cut off from the primary like its peers. A
        # crashed primary may keep an unacknowledged tail (errant): it is re-cloned automatically. A
        # partition costs about 5 s of RTO here (MariaDB's STOP SLAVE waits 2 s trying to reach the cut
        # primary); this test is about what is lost and who takes writes, not about time on a busy
        # machine, so the RTO limit is 20 s rather than 10.
        ok(c.bootstrap("--replicas", "3", "--controller", "--set", "controller.autoReclone=true",
                       "--set", "drills.maxRTOSeconds=20"))
        yield c
    finally:
        try:
            c.platform.partition.heal()  # whatever happened to the drill
            for log in [c.state / c.name / "controller.log", *(c.state / c.name / "pods").glob("*/logs/*.log")]:
                kept = tmp_path / "logs" / log.relative_to(c.state / c.name)  # for a failure's diagnosis
                kept.parent.mkdir(parents=True, exist_ok=True)
                kept.write_bytes(log.read_bytes())
        finally:
            c.teardown()
        assert c.platform.partition.table not in tables()


def on_servers(test):
    for mark in SERVER_MARKS:
        test = mark(test)
    return test


@on_servers
def test_a_partitioned_primary_acknowledges_nothing_that_is_lost_and_comes_back_fenced(cluster):
    c = cluster
    assert wait_healthy(c)["healthy"]
    old = c.platform.recorded_primary()
    address = next(p.address for p in c.platform.pods() if p.name == old)
    side = c.platform.client_side_address()
    named = Writer(c, table="app.partition")  # through the primary name, wherever it points
    direct = Writer(c, table="app.partition", host=address, bind=side, first_id=SIDE_IDS + 1)  # the old primary's side
    named.start()
    direct.start()
    try:
        # 50 s: the partition lasts until the promotion and 3 s more, then the old primary has the rest of
        # the drill to come back (a re-clone under load took 15 s).
        result = c.run("drill", "--fault", "isolate", "--duration", "50", "--rate", "50", "-o", "json", timeout=400)
    finally:
        named.finish()
        direct.finish()
    (c.state.parent / "drill.log").write_text(result.stderr + result.stdout)  # kept for a failure's diagnosis
    report = json.loads(result.stdout)
    assert result.returncode == (0 if report["passed"] else 1), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert c.platform.partition.table not in tables()  # healed by the drill itself

    # The controller promoted a replica; the drill's own ledger and figures agree with ours below.
    new = report["new_primary"]
    assert report["old_primary"] == old and new != old, report
    assert report["lost_writes"] == 0 and report["split_brain_samples"] == 0 and report["split_brain_acks"] == 0
    assert report["acks_while_isolated"] == 0 and report["side_writes_acknowledged"] > 0, report
    cut = report["fault_at"]  # epoch seconds, like the writers' own times
    healed = cut + report["partition_healed_seconds"]
    assert report["passed"], (report["verdict_reasons"], report["failed_checks"])
    assert report["rejoin_seconds"] is not None and report["rejoin_seconds"] > report["partition_healed_seconds"]

    # Semi-sync without fallback: the old primary acknowledged nothing to its side once cut off. A commit
    # in flight at the cut blocked (no replica could acknowledge it) until it failed.
    after_cut = [a.id for a in direct.acks if cut + 1.0 < a.at]
    assert after_cut == [], f"the isolated primary acknowledged {after_cut}"
    blocked = [(s, f, e) for s, f, e in direct.failed if cut < f <= healed + 1.0 and f - s >= 1.0]
    assert blocked, direct.failed[:20]
    assert direct.acks and {a.by for a in direct.acks} == {old}

    # No moment with two nodes taking writes: every write the old primary acknowledged, from either
    # client, came before the first the new one acknowledged, and each client moved once at most.
    by_node: dict[str, list[float]] = {}
    for ack in named.acks + direct.acks:
        by_node.setdefault(ack.by, []).append(ack.at)
    assert set(by_node) == {old, new}, set(by_node)
    assert max(by_node[old]) < min(by_node[new])
    named_nodes = [a.by for a in named.acks]
    assert named_nodes == sorted(named_nodes, key=[old, new].index)

    # 0 acknowledged writes lost: every id either client was told is committed is on the final primary.
    report = wait_healthy(c, timeout=180)
    assert report["healthy"], [ch for ch in report["checks"] if not ch["ok"]]
    final = c.platform.recorded_primary()
    with c.connect(c.fqdn(final)) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM app.partition")
        present = {r[0] for r in cur.fetchall()}
    acknowledged = {i for w in (named, direct) for i, _ in w.acked}
    assert acknowledged - present == set(), sorted(acknowledged - present)[:20]

    # The old primary came back fenced: killed by the failover (it did not answer), it rebooted
    # read-only, and after the heal it followed the new primary, or was quarantined (its unacknowledged
    # tail is errant) and re-cloned. Never writable again: the samples and the ledger above say so.
    statuses = {p["pod"]: p for p in c.status()["pods"]}
    assert statuses[old]["role"] == "replica", statuses[old]
    log = (c.state / c.name / "controller.log").read_text()
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert [e["to"] for e in events if e["event"] == "failed-over"] == [new], events
