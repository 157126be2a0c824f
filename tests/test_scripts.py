"""The pod scripts: shellcheck-clean, parse with bash -n, strict mode everywhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).parent.parent / "charts" / "mysql-sts" / "scripts").glob("*.sh"))
RUNNABLE = [s for s in SCRIPTS if s.name != "lib.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_clean(script):
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed (apt-get install shellcheck); .ci/run installs it")
    result = subprocess.run(["shellcheck", "-x", "-P", str(script.parent), str(script)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_parses(script):
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


@pytest.mark.parametrize("script", RUNNABLE, ids=lambda p: p.name)
def test_strict_mode_and_shared_library(script):
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    code = [line for line in lines[1:] if line.strip() and not line.startswith("#")]
    assert code[0] == "set -euo pipefail"
    # install-tools: the mysqlsts image, before the secrets matter; signal-server: an exec that needs RUN_DIR only
    if script.name not in ("install-tools.sh", "signal-server.sh"):
        assert any(line.startswith("source ") and "lib.sh" in line for line in lines)


def test_no_script_puts_a_secret_in_arguments():
    for script in SCRIPTS:
        for n, line in enumerate(script.read_text().splitlines(), 1):
            if "--password" in line or " -p\"$" in line or "-p$" in line:
                pytest.fail(f"{script.name}:{n} passes a password as an argument: {line.strip()}")


def test_the_kind_scripts_preload_the_charts_default_images():
    """The stock kind path preloads (and never pulls at run time) exactly the images the chart defaults to."""
    import yaml

    root = Path(__file__).parent.parent
    values = yaml.safe_load((root / "charts" / "mysql-sts" / "values.yaml").read_text())["images"]
    defaults = {values[f][role] for f in ("mysql", "mariadb") for role in ("server", "backup")}
    listed = subprocess.run(["bash", "-c", 'source scripts/kind/lib.sh && printf "%s\\n" "${STOCK_SERVER_IMAGES[@]}"'],
                            capture_output=True, text=True, cwd=root, check=True).stdout.split()
    assert set(listed) == defaults


def pod_env(home: Path, conf: Path, pv: Path, tmp: Path, flavor: str = "mariadb") -> dict[str, str]:
    """What script_env gives a pod's scripts (mysqlsts/chart/render.py), for pod mysql-1."""
    return {"PATH": "/usr/bin:/bin", "POD_NAME": "mysql-1", "CLUSTER_NAME": "mysql", "HEADLESS_SERVICE": "mysql",
            "POD_NAMESPACE": "default", "CLUSTER_DOMAIN": "cluster.local", "FLAVOR": flavor,
            "SERVER_ID_OFFSET": "100", "MYSQL_PORT": "3306", "CLONE_PORT": "3307", "MAX_LAG_SECONDS": "30",
            "MAX_BEHIND_TRANSACTIONS": "1000", "SEMI_SYNC": "true", "MYSQLSTS_HOME_DIR": str(home),
            "CONF_DIR": str(conf), "PV_DIR": str(pv),
            "RUN_DIR": str(tmp / "run"), "TOOLS_DIR": str(tmp / "tools"), "SECRETS_DIR": str(tmp / "secrets"),
            "TLS_DIR": str(tmp / "tls")}


@pytest.fixture
def pod_user_dir(tmp_path):
    """A folder the pod's (non-root) user owns: root may write into a 0444 file, the pod's user 999 may not.
    Yields the folder and the command prefix that runs as that user."""
    if os.geteuid() != 0:
        yield tmp_path, []
        return
    base = Path(tempfile.mkdtemp(prefix="mysqlsts-pod-"))
    os.chown(base, 65534, 65534)
    try:
        yield base, ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    finally:
        shutil.rmtree(base)


def test_init_mysql_rewrites_the_config_copies_a_failed_attempt_left_read_only(pod_user_dir):
    """ConfigMap files are mode 0444 and `cp` keeps that mode: a retried init container (kind showed it)
    must replace the copies its earlier attempt made, not fail on them."""
    tmp_path, as_pod_user = pod_user_dir
    scripts = Path(__file__).parent.parent / "charts" / "mysql-sts" / "scripts"
    home, conf, pv = tmp_path / "home", tmp_path / "conf", tmp_path / "pv"
    (home / "config").mkdir(parents=True)
    (home / "scripts").symlink_to(scripts)
    for name in ("mariadb", "primary", "replica"):
        (home / "config" / f"{name}.cnf").write_text(f"# {name}\n")
        (home / "config" / f"{name}.cnf").chmod(0o444)
    (pv / "data").mkdir(parents=True)  # data present: init-mysql only writes the config
    conf.mkdir()
    for name in ("flavor", "role"):
        (conf / f"{name}.cnf").write_text("# left by the failed attempt\n")
        (conf / f"{name}.cnf").chmod(0o444)
    env = pod_env(home, conf, pv, tmp_path)
    if as_pod_user:
        for path in tmp_path.rglob("*"):
            os.lchown(path, 65534, 65534)
    result = subprocess.run([*as_pod_user, "bash", str(scripts / "init-mysql.sh")], env=env, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert (conf / "flavor.cnf").read_text() == "# mariadb\n" and (conf / "role.cnf").read_text() == "# replica\n"


class FakeServer:
    """server.sh over a stand-in mariadbd that records its arguments and refuses while told to."""

    def __init__(self, tmp_path: Path):
        scripts = Path(__file__).parent.parent / "charts" / "mysql-sts" / "scripts"
        self.tmp, home, self.conf, self.pv = tmp_path, tmp_path / "home", tmp_path / "conf", tmp_path / "pv"
        home.mkdir()
        (home / "scripts").symlink_to(scripts)
        (self.pv / "data").mkdir(parents=True)
        self.conf.mkdir()
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        server = bin_dir / "mariadbd"
        server.write_text("#!/bin/bash\n"
                          f"echo \"$*\" >> {tmp_path}/args\n"
                          "echo '2026-11-27 21:37:42 0 [Note] Crash table recovery finished.' >&2\n"
                          f"if [[ -e {tmp_path}/refuse ]]; then\n"
                          "  echo '2026-11-27 21:37:42 0 [ERROR] Cannot truncate the binary log to "
                          "file:./mysql-bin.000001 pos:922 as unsafe statement is found at file:./mysql-bin.000001 "
                          "pos:1123 which is beyond the truncation position;all transactions in doubt are left "
                          "intact. ' >&2\n"
                          "  echo '2026-11-27 21:37:42 0 [ERROR] Aborting' >&2; exit 1\n"
                          "fi\n")
        server.chmod(0o755)
        # The peers: the names in `hosts` resolve, and every clone listener answers as `peer-role` says.
        (tmp_path / "hosts").touch()
        (bin_dir / "getent").write_text(f"#!/bin/bash\ngrep -qx \"$2\" {tmp_path}/hosts && echo \"127.0.0.9 $2\"\n")
        (bin_dir / "socat").write_text(f"#!/bin/bash\nread -r _\necho \"0123 $(cat {tmp_path}/peer-role)\"\n")
        for stub in ("getent", "socat"):
            (bin_dir / stub).chmod(0o755)
        self.script = scripts / "server.sh"
        self.env = {**pod_env(home, self.conf, self.pv, tmp_path), "PATH": f"{bin_dir}:/usr/bin:/bin"}

    def start(self) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(self.script)], env=self.env, capture_output=True, text=True, timeout=30)

    def args(self) -> list[list[str]]:
        """Each start's arguments after --defaults-file."""
        lines = (self.tmp / "args").read_text().splitlines()
        assert all(a.split()[0] == f"--defaults-file={self.conf}/my.cnf" for a in lines)
        return [a.split()[1:] for a in lines]


def test_server_recovers_the_tail_as_it_is_once_after_recovery_refused_to_cut_it(tmp_path):
    """MariaDB's crash recovery of a booting replica refuses to cut an unacknowledged tail that has a
    statement it cannot roll back past the cut, and the server exits: the next start must not refuse
    again (a crash loop), but recover the tail as it is, once, for the agent to quarantine."""
    server = FakeServer(tmp_path)
    pv = server.pv
    (tmp_path / "refuse").touch()
    refused = server.start()
    assert refused.returncode == 1
    assert "Cannot truncate the binary log" in refused.stderr  # the server's log still reaches the pod's log
    assert "Crash table recovery finished." in refused.stderr
    deadline = time.monotonic() + 5  # the watcher writes as the line passes; give it the moment it needs
    while not (pv / "truncation-refused").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (pv / "truncation-refused").read_text().startswith("Cannot truncate the binary log to file:")
    (tmp_path / "refuse").unlink()
    recovered = server.start()
    assert recovered.returncode == 0, recovered.stderr
    assert "recovering it as it is" in recovered.stderr
    assert not (pv / "truncation-refused").exists()  # once: the next crash is cut again
    again = server.start()
    assert again.returncode == 0 and "recovering it as it is" not in again.stderr
    assert server.args() == [[], ["--init-rpl-role=MASTER"], []]


def test_a_primary_restarting_in_place_keeps_its_binlog_tail_unless_a_peer_serves_as_primary(tmp_path):
    """Booting as a replica cuts what the binlog holds past the engine's commits, acknowledged commits
    among them: a pod that was the primary keeps that tail, unless another pod is the primary now and
    the tail is what the pod must lose to rejoin it."""
    server = FakeServer(tmp_path)
    (server.pv / "recorded-primary").write_text("mysql-1\n")  # this pod (pod_env: mysql-1)
    started = server.start()
    assert started.returncode == 0, started.stderr
    assert "no peer serves as one: crash recovery keeps the binlog's tail" in started.stderr
    (tmp_path / "hosts").write_text("mysql-0.mysql.default.svc.cluster.local\n")
    (tmp_path / "peer-role").write_text("replica\n")  # a peer that answers, but follows
    assert server.start().returncode == 0
    (tmp_path / "peer-role").write_text("primary\n")  # a failover made mysql-0 the primary
    moved = server.start()
    assert moved.returncode == 0 and "mysql-0 is now: crash recovery cuts the tail" in moved.stderr
    (server.pv / "recorded-primary").write_text("mysql-0\n")  # a replica: cut, peers not asked
    (tmp_path / "peer-role").write_text("none\n")
    assert server.start().returncode == 0
    assert server.args() == [["--init-rpl-role=MASTER"], ["--init-rpl-role=MASTER"], [], []]


MULTI_UUID = ("mysql-bin.000002\t1232\t3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,\n"
              "4b2d1c3a-71ca-11e1-9e33-c80aa9429562:1-20,\n"
              "5c3e2d4b-71ca-11e1-9e33-c80aa9429562:1-7\n")


@pytest.mark.parametrize(("name", "content", "gtid"), [
    ("xtrabackup_binlog_info", MULTI_UUID,  # a set after failovers: wrapped over lines by xtrabackup
     "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,4b2d1c3a-71ca-11e1-9e33-c80aa9429562:1-20,"
     "5c3e2d4b-71ca-11e1-9e33-c80aa9429562:1-7"),
    ("xtrabackup_binlog_info", "mysql-bin.000001\t157\t3e11fa47-71ca-11e1-9e33-c80aa9429562:1-3\n",
     "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-3"),
    ("xtrabackup_binlog_info", "mariadb-bin.000003 3302 0-100-12,1-101-4\n", "0-100-12,1-101-4"),
    ("mariadb_backup_binlog_info", "mariadb-bin.000003 3302 0-100-12\n", "0-100-12"),  # MariaDB 11.1 and later
    ("xtrabackup_binlog_info", "mysql-bin.000001\t157\t\n", ""),  # no transaction yet
])
def test_the_clone_reads_the_whole_gtid_set_from_either_binlog_info_file(tmp_path, name, content, gtid):
    scripts = Path(__file__).parent.parent / "charts" / "mysql-sts" / "scripts"
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / name).write_text(content)
    env = pod_env(tmp_path, tmp_path / "conf", tmp_path / "pv", tmp_path)
    result = subprocess.run(["bash", "-c", f'source {scripts}/lib.sh && backup_gtid "$1"', "-", str(tmp_path / "copy")],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == gtid


def test_the_clone_fails_clearly_without_a_binlog_info_file(tmp_path):
    scripts = Path(__file__).parent.parent / "charts" / "mysql-sts" / "scripts"
    env = pod_env(tmp_path, tmp_path / "conf", tmp_path / "pv", tmp_path)
    result = subprocess.run(["bash", "-c", f'source {scripts}/lib.sh && backup_gtid "$1"', "-", str(tmp_path)],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 1


def test_signal_server_stops_resumes_and_kills_the_server_named_in_its_pid_file(tmp_path):
    """What the kill and hang faults run in the server container (by exec)."""
    script = next(s for s in SCRIPTS if s.name == "signal-server.sh")
    server = tmp_path / "mariadbd"  # the server's process name is what the script checks
    shutil.copy(shutil.which("sleep"), server)
    proc = subprocess.Popen([str(server), "60"])
    env = {"PATH": os.environ["PATH"], "RUN_DIR": str(tmp_path)}

    def signal(name: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(script), name], env=env, capture_output=True, text=True, timeout=10)

    def state(want: str | None = None) -> str:
        """The process state letter; a signal lands asynchronously, so wait a little for `want`."""
        deadline = time.monotonic() + 5
        while True:
            now = Path(f"/proc/{proc.pid}/stat").read_text().split(") ", 1)[1][0]
            if want is None or (now == "T") == (want == "T") or time.monotonic() > deadline:
                return now
            time.sleep(0.01)

    try:
        assert signal("STOP").returncode == 3  # no pid file yet: no server running
        (tmp_path / "mysqld.pid").write_text(f"{proc.pid}\n")
        assert signal("STOP").returncode == 0 and state("T") == "T"
        assert signal("CONT").returncode == 0 and state("R") != "T"
        assert signal("KILL").returncode == 0
        assert proc.wait(timeout=5) == -9
        stale = signal("KILL")  # the pid file outlives the server: never signal whatever has that pid now
        assert stale.returncode == 3 and "no server is running" in stale.stderr
        assert signal("CONT").returncode == 0  # a hung server killed to fence it: nothing to resume
    finally:
        proc.kill()
