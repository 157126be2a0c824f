"""Bad input: exit 2, one line per problem naming its path, no traceback, nothing written."""

from __future__ import annotations

import base64

import pytest

CASES = {
    "negative replicas": (["--set", "replicas=-2"], ["replicas: must be an integer from 1 to 64, got -2"]),
    "non-integer replicas": (["--set", "replicas=three"], ['replicas: must be an integer from 1 to 64, got "three"']),
    "fractional replicas": ("replicas: 2.5\n", ["replicas: must be an integer from 1 to 64, got 2.5"]),
    "unknown flavor": (["--set", "flavor=postgres"], ['flavor: must be one of mysql, mariadb, got "postgres"']),
    "malformed storage size": (["--set", "storage.size=10 GB"], ["storage.size: must be a positive storage size"]),
    "zero storage": (["--set", "storage.size=0"], ["storage.size: must be a positive storage size"]),
    "bad name": (["--set", "name=My_DB"], ["name: must be a DNS-1123 label"]),
    "bad namespace": (["--set", "namespace=-prod"], ["namespace: must be a DNS-1123 label"]),
    "image without tag": ("images:\n  mysql:\n    server: mysql\n", ["images.mysql.server: must be an image reference pinned"]),
    "invalid cron": (["--set", "drills.schedule=every monday"], ["drills.schedule: must be a 5-field cron schedule"]),
    "cron out of range": (["--set", "drills.schedule=61 25 * * *"], ["drills.schedule: is not a valid cron schedule"]),
    "typo top-level key": ("replcias: 3\n", ["replcias: unknown key (did you mean 'replicas'?)"]),
    "typo nested key": ("storage:\n  sise: 1Gi\n", ["storage.sise: unknown key (did you mean 'size'?)"]),
    "typo in --set": (["--set", "storage.sise=1Gi"], ["storage.sise: unknown key (did you mean 'size'?)"]),
    "yaml syntax error": ("name: mysql\nreplicas: [3\nflavor: mysql\n", ["YAML syntax error at line 3, column 7"]),
    "duplicate key": ("replicas: 3\nreplicas: 4\n", ["YAML syntax error at line 2", "duplicate key 'replicas'"]),
    "not a mapping": ("- a\n- b\n", ["must be a mapping of keys to values, got a list"]),
    "missing file": (["-f", "does-not-exist.yaml"], ["does-not-exist.yaml: values file not found"]),
    "set without equals": (["--set", "replicas"], ["--set 'replicas': expected PATH=VALUE"]),
    "short password": (["--set", "auth.rootPassword=short"], ["auth.rootPassword: must be empty (generated) or at least 12"]),
    "same ports": (["--set", "mysql.clonePort=3306"], ["mysql.clonePort: must differ from mysql.port (3306)"]),
    "semi-sync count too high": (["--set", "replicas=2", "--set", "mysql.semiSync.waitForReplicaCount=2"],
                                 ["mysql.semiSync.waitForReplicaCount: 2 acknowledgements can never arrive"]),
    "unknown kubernetes version": (["--set", "kubernetesVersions=1.12"], ["kubernetesVersions[0]: no bundled schema"]),
    "bad anti-affinity": (["--set", "pod.antiAffinity=maybe"], ['pod.antiAffinity: must be one of soft, hard, got "maybe"']),
    "throttle below 2": (["--set", "failover.throttleBehindTransactions=1"],
                         ["failover.throttleBehindTransactions: must be an integer >= 2 or null (off), got 1"]),
    "boolean expected": (["--set", "controller.enabled=yes please"], ['controller.enabled: must be true or false']),
}


@pytest.mark.parametrize("command", ["render", "validate"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_rejected_cleanly(run_cli, tmp_path, case, command):
    given, expected = CASES[case]
    args = list(given) if isinstance(given, list) else ["-f", "values.yaml"]
    if isinstance(given, str):
        (tmp_path / "values.yaml").write_text(given)
    out_dir = tmp_path / "out"
    extra = ["--output-dir", str(out_dir)] if command == "render" else []
    result = run_cli(command, *args, *extra)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    for fragment in expected:
        assert fragment in result.stderr, result.stderr
    for line in result.stderr.strip().splitlines():
        assert line.startswith(f"mysqlsts {command}: "), line
    assert not out_dir.exists()
    assert not (tmp_path / "state").exists()


def test_every_problem_is_reported_at_once(run_cli, tmp_path):
    (tmp_path / "v.yaml").write_text("replicas: -1\nflavor: oracle\nname: Bad_Name\nstorage: {size: lots}\n")
    result = run_cli("validate", "-f", "v.yaml")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 4, lines
    assert [line.split(":")[1].strip() for line in lines] == ["flavor", "name", "replicas", "storage.size"]


def test_bad_arguments_exit_2(run_cli):
    for args in (["render", "--bogus"], ["frobnicate"], ["validate", "-f"]):
        result = run_cli(*args)
        assert result.returncode == 2, args
        assert "Traceback" not in result.stderr


def test_tricky_password_passes_validation(run_cli):
    result = run_cli("validate", "--set", "auth.rootPassword=a'b \"c $d \\e `f` #g")
    assert result.returncode == 0, result.stderr


def test_render_writes_one_file_per_object(run_cli, tmp_path):
    result = run_cli("render", "--set", "flavor=mariadb", "--output-dir", "out")
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "statefulset-mysql.yaml" in files and "secret-mysql-secret.yaml" in files
    assert len(files) == 11


def test_render_touches_nothing_but_its_output(run_cli, tmp_path):
    """A state directory holding a local cluster of the same name: render neither reads its passwords
    nor writes anything there; what it does not get, it generates, and says so."""
    from mysqlsts.state import write_json

    state = tmp_path / "state"
    kept = {"rootPassword": "local-root-password-kept", "cloneSecret": "local-clone-secret-kept"}
    write_json(state / "mysql" / "secret.json", kept, 0o600)
    before = sorted((p.relative_to(state), p.stat().st_mtime_ns) for p in state.rglob("*"))
    first = run_cli("render")
    second = run_cli("render", "--set", "auth.rootPassword=given-root-password-1")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert sorted((p.relative_to(state), p.stat().st_mtime_ns) for p in state.rglob("*")) == before
    for secret in kept.values():
        assert base64.b64encode(secret.encode()).decode() not in first.stdout + second.stdout
    assert first.stdout != second.stdout  # generated anew each time
    assert "generated auth.rootPassword, auth.replicationPassword" in first.stderr
    assert "auth.rootPassword" not in second.stderr and "auth.replicationPassword" in second.stderr
    assert base64.b64encode(b"given-root-password-1").decode() in second.stdout


def test_a_second_bootstrap_refuses_what_the_data_is_tied_to_and_writes_nothing(run_cli, tmp_path):
    from mysqlsts.chart import values as chart_values
    from mysqlsts.platform.local.runtime import LocalPlatform
    from mysqlsts.state import write_json

    values_file = LocalPlatform(tmp_path / "state", "mysql").layout.values_file
    values_file.parent.mkdir(parents=True)
    write_json(values_file, chart_values.load([], ["flavor=mariadb"]))  # an existing cluster, as recorded
    before = values_file.read_text()
    result = run_cli("bootstrap", "--target", "local", "--set", "flavor=mysql", "--set", "storage.size=20Gi",
                     "--set", "clusterDomain=example.org", "--set", "replicas=5")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert [line.split(":")[1].strip() for line in lines] == ["flavor", "clusterDomain", "storage.size"], lines
    assert "'mariadb' -> 'mysql'" in lines[0] and "expand each PersistentVolumeClaim" in lines[2]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert values_file.read_text() == before
    assert sorted(p.name for p in values_file.parent.iterdir()) == [values_file.name]


def test_immutable_keys_unchanged_pass():
    from mysqlsts.chart import values as chart_values

    recorded = chart_values.load([], ["flavor=mariadb"])
    assert chart_values.immutable_changes(recorded, chart_values.load([], ["replicas=5"], base=recorded)) == []
    assert chart_values.immutable_changes({}, recorded) == []  # recorded by a chart without these keys


def test_where_the_cluster_is_may_stand_before_the_command_or_come_from_the_environment(run_cli):
    missing = "--name: no local cluster 'abc' under"
    for args, env in ((["--target", "local", "--name", "abc", "status"], {}),
                      (["status", "--target", "local", "--name", "abc"], {}),
                      (["--name", "other", "status", "--target", "local", "--name", "abc"], {}),  # after wins
                      (["status"], {"MYSQLSTS_TARGET": "local", "MYSQLSTS_NAME": "abc"})):
        result = run_cli(*args, env=env)
        assert result.returncode == 2 and result.stderr.startswith(f"mysqlsts status: {missing}"), (args, result)
    result = run_cli("status", env={"MYSQLSTS_TARGET": "laptop"})
    assert result.returncode == 2
    assert result.stderr == "mysqlsts status: MYSQLSTS_TARGET: must be local or kubernetes, got 'laptop'\n"


def test_a_kubeconfig_whose_api_server_is_gone_is_one_line_that_points_at_the_local_target(run_cli, tmp_path):
    """A kubeconfig left from another job chose kubernetes; its server refuses: say so at once, not after
    a minute of retries, and name the way to the local runtime."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("""
apiVersion: v1
kind: Config
clusters: [{name: gone, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: abc}}]
contexts: [{name: laptop-leftover, context: {cluster: gone, user: u}}]
current-context: laptop-leftover
""")
    result = run_cli("status", env={"KUBECONFIG": str(kubeconfig)})
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    line = result.stderr
    assert line.startswith("mysqlsts status: target: kubernetes, cluster: mysql (namespace default, "
                           "context laptop-leftover), chosen since a kubeconfig names a context")
    assert "https://127.0.0.1:1" in line and line.rstrip().endswith("pass --target local or set MYSQLSTS_TARGET=local")
    result = run_cli("status", "--target", "local", env={"KUBECONFIG": str(kubeconfig)})
    assert result.returncode == 2 and "--name: no local cluster 'mysql'" in result.stderr
