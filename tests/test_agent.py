"""The pod agent (`mysqlsts agent`) against in-memory servers, and what the scripts read from it:
probe.sh readiness and prestop, the file names lib.sh shares with it, the local runtime's rule for
the mysqlsts image's commands."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from test_scripts import pod_env

from mysqlsts.agent.agent import Agent
from mysqlsts.agent.podenv import PodEnv
from mysqlsts.chart import tls
from mysqlsts.chart import values as chart_values
from mysqlsts.model import ServerError, ServerState

SCRIPTS = Path(__file__).parent.parent / "charts" / "mysql-sts" / "scripts"
FENCED = ServerState(read_only=True, super_read_only=None, gtid="", source_host=None, io_running=None,
                     sql_running=None, lag=None, last_error="", semi_sync_source_on=False, semi_sync_replica_on=False)


class FakeServer:
    """One server's state and what it was asked to do."""

    def __init__(self, name: str, state: ServerState = FENCED, booted: float = 1000.0):
        self.name = name
        self.s = state
        self.booted = booted
        self.calls: list[tuple] = []
        self.answers = True
        self.refuses_position = False  # its source answers a join with error 1236

    def state(self) -> ServerState:
        return self.s

    def fence(self, grace: float) -> list[int]:
        self.calls.append(("fence", grace))
        self.s = replace(self.s, read_only=True)
        return []

    def unfence(self) -> None:
        self.calls.append(("unfence",))
        self.s = replace(self.s, read_only=False)

    def stop_replicating(self) -> None:
        self.calls.append(("stop_replicating",))
        self.s = replace(self.s, io_running="No", sql_running="No")

    def replicate_from(self, source_fqdn: str, semi_sync: bool) -> None:
        self.calls.append(("replicate_from", source_fqdn, semi_sync))
        if self.refuses_position:
            self.s = replace(self.s, source_host=source_fqdn, io_running="No", sql_running="Yes", io_errno=1236)
        else:
            self.s = replace(self.s, source_host=source_fqdn, io_running="Yes", sql_running="Yes", lag=0)

    def become_source(self, semi_sync: bool) -> None:
        self.calls.append(("become_source", semi_sync))
        self.s = replace(self.s, source_host=None, io_running=None, sql_running=None, lag=None,
                         semi_sync_source_on=semi_sync, semi_sync_waits_alone=True)

    def wait_alone(self, wait: bool) -> None:
        self.calls.append(("wait_alone", wait))
        self.s = replace(self.s, semi_sync_waits_alone=wait)

    def booted_at(self) -> float:
        return self.booted

    def set_commit_delay(self, usec: int) -> None:
        self.calls.append(("set_commit_delay", usec))


class FakeServers:
    def __init__(self, *servers: FakeServer):
        self.by_host = {f"{s.name}.mysql.default.svc.cluster.local": s for s in servers}

    @contextmanager
    def operator(self, host: str, timeout: float, read_timeout: float | None = None, address: str | None = None):
        server = self.by_host.get(host)
        if server is None or not server.answers:
            raise ServerError(host, "Can't connect", 2002)
        yield server

    def write_probe(self, host: str, timeout: float) -> None:
        raise NotImplementedError


@pytest.fixture
def env(tmp_path) -> PodEnv:
    environ = pod_env(tmp_path / "home", tmp_path / "conf", tmp_path / "pv", tmp_path)  # pod mysql-1, MariaDB
    (tmp_path / "pv").mkdir()
    (tmp_path / "run").mkdir()
    return PodEnv.from_environ(environ)


def agent(env: PodEnv, *servers: FakeServer) -> Agent:
    peers = [s.name for s in servers if s.name != env.pod]
    a = Agent(env, FakeServers(*servers), peers=lambda: peers, sleep=lambda _: None)
    a.start()
    return a


def primary(name: str = "mysql-0", gtid: str = "0-100-9") -> FakeServer:
    return FakeServer(name, replace(FENCED, read_only=False, gtid=gtid))


def test_a_fenced_node_joins_the_one_writable_peer_and_turns_ready(env):
    me = FakeServer("mysql-1", replace(FENCED, gtid="0-100-5"))
    a = agent(env, primary(), me, FakeServer("mysql-2"))
    assert a.step() is None
    assert me.calls == [("replicate_from", "mysql-0.mysql.default.svc.cluster.local", True)]
    assert env.ready_file.read_text() == ""
    assert env.role_file.read_text() == "replica"  # a donor for a new pod's clone
    assert env.recorded_primary_file.read_text() == "mysql-0\n"
    a.step()
    assert len(me.calls) == 1  # settled: the next look changes nothing


def test_a_node_holding_transactions_the_primary_lacks_is_quarantined_and_never_joins(env):
    me = FakeServer("mysql-1", replace(FENCED, gtid="0-100-12"))
    a = agent(env, primary(gtid="0-100-9"), me)
    assert a.step() == "quarantined: errant transactions"
    assert me.calls == []
    assert "errant transactions: 0-100-12" in env.quarantine_file.read_text()
    a.booted = None
    me.booted += 60  # a restart: still quarantined, still never joins
    a.step()
    assert me.calls == []


def test_a_join_the_source_refuses_with_error_1236_is_stopped_and_quarantined(env):
    me = FakeServer("mysql-1", replace(FENCED, gtid="0-100-5"))
    me.refuses_position = True
    a = agent(env, primary(), me)
    assert a.step() == "quarantined: errant transactions"
    assert [c[0] for c in me.calls] == ["replicate_from", "stop_replicating"]
    assert "error 1236" in env.quarantine_file.read_text()


def test_the_fresh_first_primary_promotes_itself_once(env):
    env.bootstrap_marker.touch()
    me = FakeServer("mysql-1")
    a = agent(env, me, FakeServer("mysql-2"))
    a.servers.by_host["mysql-2.mysql.default.svc.cluster.local"].answers = False
    assert not env.bootstrap_marker.exists()  # counts for this start only
    assert a.step() is None
    # Its replicas must clone from it first: until they replicate, a commit does not wait for them.
    assert me.calls == [("become_source", True), ("wait_alone", False), ("unfence",)]
    assert env.recorded_primary_file.read_text() == "mysql-1\n"


def test_the_first_primary_holds_every_commit_once_its_replicas_replicate_from_it(env):
    env.bootstrap_marker.touch()
    me, other = FakeServer("mysql-1"), FakeServer("mysql-2")
    a = agent(env, me, other)
    other.answers = False
    a.step()
    other.answers = True
    a.step()  # a peer that does not replicate from it acknowledges nothing
    assert me.calls[-1] == ("unfence",) and not me.s.semi_sync_waits_alone
    other.s = replace(other.s, source_host="mysql-1.mysql.default.svc.cluster.local", io_running="Connecting")
    a.step()  # its receiver is not connected yet
    assert me.calls[-1] == ("unfence",)
    other.s = replace(other.s, io_running="Yes", sql_running="Yes")
    a.step()
    assert me.calls[-1] == ("wait_alone", True) and me.s.semi_sync_waits_alone
    a.step()
    assert me.calls.count(("wait_alone", True)) == 1  # for good: never turned off again


def test_a_restarted_primary_stays_fenced_and_waits(env):
    me = FakeServer("mysql-1", replace(FENCED, gtid="0-100-9"))
    a = agent(env, me, FakeServer("mysql-0", replace(FENCED, gtid="0-100-9")))
    assert a.step() == "read-only and not replicating"
    assert me.calls == [] and a.unsettled


def test_several_writable_peers_are_not_picked_from(env):
    me = FakeServer("mysql-1")
    a = agent(env, primary("mysql-0"), me, primary("mysql-2"))
    a.step()
    assert me.calls == [] and a.unsettled


def test_a_server_restart_settles_the_role_again(env):
    me = FakeServer("mysql-1", replace(FENCED, gtid="0-100-5"))
    a = agent(env, primary(), me)
    a.step()
    me.s, me.booted = replace(me.s, io_running="No", sql_running="No"), me.booted + 30  # back, fenced, stopped
    assert a.step() is None
    assert [c[0] for c in me.calls] == ["replicate_from", "replicate_from"]


def test_a_starting_agent_replaces_the_verdict_an_earlier_one_left(env):
    env.ready_file.write_text("")  # ready, said the agent before its container restarted
    env.role_file.write_text("replica")
    agent(env, FakeServer("mysql-1"))
    assert env.ready_file.read_text() == "the agent is starting"
    assert env.role_file.read_text() == "none"


def test_a_server_that_does_not_answer_is_not_ready(env):
    me = FakeServer("mysql-1")
    me.answers = False
    a = agent(env, primary(), me)
    assert a.step().startswith("server: Can't connect")
    assert env.ready_file.read_text().startswith("server: ")
    assert env.role_file.read_text() == "none"


def test_a_replica_too_far_behind_in_transactions_is_not_ready(env):
    me = FakeServer("mysql-1", replace(FENCED, gtid="0-100-5"))
    a = agent(env, primary(), me)
    assert a.step() is None
    me.s = replace(me.s, retrieved="0-100-1006")  # the bound of pod_env is 1000
    assert a.step() == "1001 transactions received but not applied exceeds 1000"
    assert env.role_file.read_text() == "none"  # and no donor for a clone either


def replica_of_me(name: str, applied: int, received: int) -> FakeServer:
    return FakeServer(name, replace(FENCED, gtid=f"0-101-{applied}", retrieved=f"0-101-{received}", lag=0,
                                    source_host="mysql-1.mysql.default.svc.cluster.local", io_running="Yes",
                                    sql_running="Yes"))


def delays(server: FakeServer) -> list[int]:
    return [c[1] for c in server.calls if c[0] == "set_commit_delay"]


def test_the_primary_throttles_commits_while_every_replica_is_far_behind_and_lifts_it_after(env, capsys):
    env = replace(env, throttle_behind=1000)
    me = FakeServer("mysql-1", replace(FENCED, read_only=False, gtid="0-101-6000"))
    r0, r2 = replica_of_me("mysql-0", 1000, 6000), replica_of_me("mysql-2", 4000, 6000)
    a = agent(env, me, r0, r2)
    for _ in range(3):
        assert a.step() is None  # the primary stays ready while it throttles
    assert delays(me) == [1000, 2000, 4000]
    assert "throttling commits: every replica has more than 1000 transactions received but not applied " \
           "(mysql-0 5000, mysql-2 2000)" in capsys.readouterr().err
    r2.s = replace(r2.s, gtid="0-101-5600")  # one replica is within half the limit: ease off
    a.step()
    a.step()
    assert delays(me)[3:] == [2000, 1000]
    a.step()
    assert delays(me)[-1] == 0 and "commit throttle lifted" in capsys.readouterr().err
    a.step()
    assert delays(me)[-1] == 0 and len(delays(me)) == 6  # no statement while nothing changes


def test_a_replica_of_another_primary_or_one_not_answering_does_not_count(env):
    env = replace(env, throttle_behind=1000)
    me = FakeServer("mysql-1", replace(FENCED, read_only=False, gtid="0-101-6000"))
    stranger = replica_of_me("mysql-0", 0, 6000)
    stranger.s = replace(stranger.s, source_host="mysql-2.mysql.default.svc.cluster.local")
    silent = replica_of_me("mysql-2", 0, 6000)
    silent.answers = False
    a = agent(env, me, stranger, silent)
    a.step()
    assert delays(me) == [0]  # set once, to nothing: nobody to wait for


def test_a_fenced_node_never_delays_its_commits_and_the_throttle_off_never_touches_the_server(env):
    me = FakeServer("mysql-1", replace(FENCED, gtid="0-100-5"))
    a = agent(replace(env, throttle_behind=1000), primary(), me)
    a.step()
    a.step()
    assert delays(me) == [0]  # once after its boot, in case it was a throttled primary before
    me.booted += 30
    a.step()
    assert delays(me) == [0, 0]
    off = FakeServer("mysql-1", replace(FENCED, read_only=False, gtid="0-101-6000"))
    b = agent(env, off, replica_of_me("mysql-0", 0, 6000))
    b.step()
    assert delays(off) == []


def test_a_stop_request_fences_answers_and_stops_settling(env):
    me = FakeServer("mysql-1", replace(FENCED, read_only=False))
    a = agent(env, me)
    env.stop_request_file.touch()
    assert a.step() == "read-only and not replicating"
    assert me.calls == [("fence", 2)]
    assert env.fenced_file.read_text() == "" and not env.stop_request_file.exists()
    assert a.stopping


def test_sigterm_ends_the_agent_cleanly(tmp_path):
    environ = pod_env(tmp_path / "home", tmp_path / "conf", tmp_path / "pv", tmp_path)
    environ.update(SECRETS_DIR=str(tmp_path / "secrets"), PYTHONPATH=os.environ.get("PYTHONPATH", ""))
    (tmp_path / "secrets").mkdir()
    for name in ("root-password", "replication-password", "operator-password", "clone-secret"):
        (tmp_path / "secrets" / name).write_text("pw\n")
    (tmp_path / "tls").mkdir(exist_ok=True)  # its peers' certificates are checked against the CA there
    (tmp_path / "tls" / "ca.crt").write_text(tls.generate(chart_values.defaults())["tlsCA"])
    proc = subprocess.Popen([sys.executable, "-m", "mysqlsts", "agent"], env=environ, stderr=subprocess.PIPE,
                            text=True)
    verdict = tmp_path / "run" / "agent-ready"
    deadline = time.monotonic() + 20
    while not (verdict.exists() and verdict.read_text().startswith("server: ")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert verdict.read_text().startswith("server: ")  # no server here
    proc.terminate()
    assert proc.wait(timeout=10) == 0
    assert "stopped" in proc.stderr.read()


# -- what the scripts share with it ---------------------------------------------------------------


def test_lib_sh_names_the_files_the_agent_uses(env, tmp_path):
    environ = pod_env(tmp_path / "home", tmp_path / "conf", tmp_path / "pv", tmp_path)
    names = {"SOCKET": env.socket, "QUARANTINE_FILE": env.quarantine_file,
             "RECORDED_PRIMARY_FILE": env.recorded_primary_file, "BOOTSTRAP_MARKER": env.bootstrap_marker,
             "AGENT_READY_FILE": env.ready_file, "STOP_REQUEST_FILE": env.stop_request_file,
             "FENCED_FILE": env.fenced_file, "DATA_DIR": env.data_dir, "SELF_FQDN": env.own_fqdn}
    script = f"source {SCRIPTS}/lib.sh; " + "; ".join(f'echo "${name}"' for name in names)
    out = subprocess.run(["bash", "-c", script], env=environ, capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [str(v) for v in names.values()]


def probe(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPTS / "probe.sh"), *args], env=env, capture_output=True, text=True,
                          timeout=30)


def test_readiness_is_the_agents_fresh_verdict(tmp_path):
    environ = pod_env(tmp_path / "home", tmp_path / "conf", tmp_path / "pv", tmp_path)
    verdict = tmp_path / "run" / "agent-ready"
    verdict.parent.mkdir()
    result = probe(environ, "readiness")
    assert result.returncode == 1 and "no verdict from the agent yet" in result.stderr
    verdict.write_text("")
    assert probe(environ, "readiness").returncode == 0
    verdict.write_text("lag 40s exceeds 30s")
    result = probe(environ, "readiness")
    assert result.returncode == 1 and "lag 40s exceeds 30s" in result.stderr
    verdict.write_text("")
    stale = time.time() - 11
    os.utime(verdict, (stale, stale))
    result = probe(environ, "readiness")
    assert result.returncode == 1 and "the agent is not running" in result.stderr


def test_prestop_has_the_agent_fence_the_server_then_sleeps(env, tmp_path):
    environ = pod_env(tmp_path / "home", tmp_path / "conf", tmp_path / "pv", tmp_path)
    me = FakeServer("mysql-1", replace(FENCED, read_only=False))
    a = agent(env, me)
    stop = threading.Event()
    loop = threading.Thread(target=a.run, args=(stop,), kwargs={"interval": 0.2}, daemon=True)
    loop.start()
    try:
        started = time.monotonic()
        result = probe(environ, "prestop", "1")
    finally:
        stop.set()
        loop.join(5)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 1  # then it waits for the Services to drop the pod
    assert ("fence", 2) in me.calls and me.s.read_only
    assert "fenced before the stop" in result.stderr


def test_prestop_without_an_agent_gives_up_after_five_seconds(tmp_path):
    environ = pod_env(tmp_path / "home", tmp_path / "conf", tmp_path / "pv", tmp_path)
    (tmp_path / "run").mkdir()
    started = time.monotonic()
    result = probe(environ, "prestop", "0")
    assert result.returncode == 0
    assert 5 <= time.monotonic() - started < 10
    assert "did not fence the server within 5s" in result.stderr


def test_no_script_holds_sql_that_moves_a_role():
    """Roles move in Python only (the agent and the orchestrator, with mysql/actions.py). Where a fresh
    clone's data starts (its GTID position) is set by server.sh, in a boot nobody can reach."""
    for script in SCRIPTS.glob("*.sh"):
        text = script.read_text()
        for sql in ("CHANGE MASTER", "CHANGE REPLICATION SOURCE", "read_only = O", "START SLAVE", "START REPLICA"):
            assert sql not in text, f"{script.name}: {sql}"
        if script.name != "server.sh":
            assert "gtid_purged" not in text and "gtid_slave_pos" not in text, script.name


def test_the_local_runtime_runs_the_mysqlsts_images_commands_with_this_mysqlsts(tmp_path):
    from mysqlsts.platform.local.supervisor import Pod

    pod = Pod.__new__(Pod)
    pod.pod = None
    container = {"name": "agent", "command": ["mysqlsts", "agent"], "volumeMounts": []}
    assert pod.command(container, container["command"]) == [sys.executable, "-m", "mysqlsts", "agent"]
    script = {"name": "clone", "command": ["bash", "/x/clone-listen.sh"], "volumeMounts": []}
    assert pod.command(script, script["command"]) == ["bash", "/x/clone-listen.sh"]


def test_sql_servers_reach_a_mapped_host_through_its_socket_and_others_by_name(monkeypatch):
    from mysqlsts import flavors
    from mysqlsts.mysql import server as server_module

    seen = []

    @contextmanager
    def connect(host, port, password, flavor, **kw):
        seen.append((host, kw.get("unix_socket")))
        yield object()

    monkeypatch.setattr(server_module, "connect", connect)
    servers = server_module.SqlServers(flavors.MYSQL, 3306, {"operatorPassword": "o", "replicationPassword": "r"},
                                       sockets={"mysql-1.mysql": "/run/mysqld/mysqld.sock"})
    for host in ("mysql-1.mysql", "mysql-0.mysql"):
        with servers.operator(host, timeout=1):
            pass
    assert seen == [("mysql-1.mysql", "/run/mysqld/mysqld.sock"), ("mysql-0.mysql", None)]


def test_connect_over_a_socket_never_asks_for_tls(monkeypatch):
    import pymysql

    from mysqlsts import flavors
    from mysqlsts.mysql import observe

    calls = []
    monkeypatch.setattr(pymysql, "connect", lambda **kw: calls.append(kw))
    observe.connect("mysql-1.mysql", 3306, "pw", flavors.MYSQL, unix_socket="/run/mysqld/mysqld.sock")
    observe.connect("mysql-0.mysql", 3306, "pw", flavors.MYSQL)
    assert calls[0]["unix_socket"] == "/run/mysqld/mysqld.sock" and calls[0]["ssl_disabled"] is True
    assert calls[1]["unix_socket"] is None and calls[1]["ssl_disabled"] is False
