"""Secrets as files, and the TLS that protects replication and the clone stream (issue 11, row 14).

Rendered chart: no container environment carries a secret, the Secret volumes
are mounted read-only, the generated certificate names every pod, a user's
Secret can replace it. Scripts: passwords come from the secret files, and the
backup tool gets its password through a 0600 option file, not MYSQL_PWD.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from test_scripts import pod_env

from mysqlsts.chart import kubeschema, secrets, tls
from mysqlsts.chart import values as chart_values
from mysqlsts.chart.render import render
from mysqlsts.errors import BadInput

SCRIPTS = Path(__file__).parent.parent / "charts" / "mysql-sts" / "scripts"
SECRET_CONTAINERS = {"init-mysql", "clone-mysql", "mysql", "agent", "clone"}


def build(*sets: str):
    values = chart_values.load([], list(sets))
    passwords, _ = secrets.merge(values, {})
    return values, passwords, render(values, passwords)


def pod_spec(objects) -> dict:
    (sts,) = [o for o in objects if o["kind"] == "StatefulSet"]
    return sts["spec"]["template"]["spec"]


def containers(objects) -> list[dict]:
    spec = pod_spec(objects)
    return spec["initContainers"] + spec["containers"]


@pytest.mark.parametrize("flavor", ["mysql", "mariadb"])
def test_no_container_environment_holds_or_refers_to_a_secret(flavor):
    _, passwords, objects = build(f"flavor={flavor}")
    for c in containers(objects):
        for env in c.get("env", []):
            assert "secretKeyRef" not in env.get("valueFrom", {}), (c["name"], env)
            assert env["name"] != "MYSQL_PWD"
            assert env.get("value") not in passwords.values()
        assert "envFrom" not in c


@pytest.mark.parametrize("flavor", ["mysql", "mariadb"])
def test_secrets_are_read_only_files_of_secret_volumes(flavor):
    values, _, objects = build(f"flavor={flavor}")
    volumes = {v["name"]: v for v in pod_spec(objects)["volumes"]}
    own = f"{values['name']}-secret"
    assert volumes["secrets"]["secret"]["secretName"] == own
    assert {i["key"] for i in volumes["secrets"]["secret"]["items"]} == \
        {"root-password", "replication-password", "operator-password", "clone-secret"}
    assert volumes["tls"]["secret"]["secretName"] == own
    assert {i["key"] for i in volumes["tls"]["secret"]["items"]} == {"ca.crt", "tls.crt", "tls.key"}
    for name in ("secrets", "tls"):
        mode = volumes[name]["secret"]["defaultMode"]
        assert mode & 0o440 == 0o440 and mode & 0o337 == 0, oct(mode)  # read by owner and fsGroup only
    assert volumes["run"]["emptyDir"]["medium"] == "Memory"  # where the backup tool's option file lives
    for c in containers(objects):
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        if c["name"] in SECRET_CONTAINERS:
            assert mounts["secrets"]["readOnly"] is True and mounts["tls"]["readOnly"] is True
            env = {e["name"]: e.get("value") for e in c["env"]}
            assert env["SECRETS_DIR"] == mounts["secrets"]["mountPath"]
            assert env["TLS_DIR"] == mounts["tls"]["mountPath"]
        else:
            assert "secrets" not in mounts and "tls" not in mounts  # install-tools needs none


def certificate(objects) -> tuple[x509.Certificate, x509.Certificate]:
    (secret,) = [o for o in objects if o["kind"] == "Secret"]
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    return x509.load_pem_x509_certificate(data["ca.crt"]), x509.load_pem_x509_certificate(data["tls.crt"])


def covers(names: list[str], host: str) -> bool:
    """RFC 6125 matching: exact, or a leftmost-label wildcard."""
    return any(n == host or (n.startswith("*.") and host.split(".", 1)[1] == n[2:]) for n in names)


@pytest.mark.parametrize("sets", [[], ["name=db", "namespace=prod", "clusterDomain=k8s.example", "replicas=5"]])
def test_the_generated_certificate_names_every_pod_and_chains_to_the_ca(sets):
    values, _, objects = build(*sets)
    ca, cert = certificate(objects)
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)
    name, ns, domain = values["name"], values["namespace"], values["clusterDomain"]
    for i in range(values["replicas"]):
        assert f"{name}-{i}.{name}.{ns}.svc.{domain}" in names  # per-pod, by name
    assert covers(names, f"{name}-{values['replicas'] + 3}.{name}.{ns}.svc.{domain}")  # a later scale-out
    assert f"{name}-primary.{ns}.svc.{domain}" in names
    assert not covers(names, f"{name}-0.other.{ns}.svc.{domain}")
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)  # both clone ends


def test_tls_material_is_generated_once_and_kept(tmp_path):
    store = tmp_path / "secret.json"
    values = chart_values.load([], [])
    first, changed = secrets.merge(values, secrets.stored(store))
    assert changed and set(tls.DATA_KEYS) <= set(first)
    secrets.save(store, first)
    again, changed = secrets.merge(chart_values.load([], ["replicas=7"]), secrets.stored(store))
    assert not changed and {k: again[k] for k in tls.DATA_KEYS} == {k: first[k] for k in tls.DATA_KEYS}
    # Kubernetes: what the Secret already holds (platform.stored_passwords) is kept the same way.
    kept, changed = secrets.merge(values, first)
    assert kept == first and not changed


def test_a_user_secret_replaces_the_generated_pair():
    values, _, objects = build("tls.existingSecret=db-tls")
    volumes = {v["name"]: v for v in pod_spec(objects)["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "db-tls"
    assert {i["key"] for i in volumes["tls"]["secret"]["items"]} == {"ca.crt", "tls.crt", "tls.key"}
    assert volumes["secrets"]["secret"]["secretName"] == "mysql-secret"  # passwords stay in the cluster's own
    assert kubeschema.problems(objects, chart_values.kubernetes_versions(values)) == []


def test_a_user_secret_name_is_checked():
    with pytest.raises(BadInput, match=r"tls\.existingSecret"):
        chart_values.load([], ["tls.existingSecret=Not A Name"])


def test_the_local_runtime_refuses_a_user_secret(tmp_path):
    from mysqlsts.platform.local.runtime import LocalPlatform

    values = chart_values.load([], ["tls.existingSecret=db-tls"])
    with pytest.raises(BadInput, match=r"tls\.existingSecret"):
        LocalPlatform(tmp_path, "mysql").apply(values, {}, [])
    assert not (tmp_path / "mysql").exists()


# --- the scripts -----------------------------------------------------------------------------

PASSWORDS = {"root-password": "r00t 'pw' $x", "replication-password": "repl\\pw",
             "operator-password": 'op "pw" #1', "clone-secret": "clone secret"}


def secret_files(tmp_path: Path) -> dict[str, str]:
    env = pod_env(tmp_path / "home", tmp_path / "conf", tmp_path / "pv", tmp_path)
    (tmp_path / "secrets").mkdir()
    for name, value in PASSWORDS.items():
        (tmp_path / "secrets" / name).write_text(value + "\n")  # a hand-made file's newline is dropped
        (tmp_path / "secrets" / name).chmod(0o440)
    for d in ("run", "tools", "tmp", "conf"):
        (tmp_path / d).mkdir(exist_ok=True)
    return env


def lib(env: dict[str, str], code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f"source {SCRIPTS}/lib.sh && {code}", "-", *args], env=env,
                          capture_output=True, text=True)


def test_the_scripts_read_passwords_from_the_secret_files(tmp_path):
    env = secret_files(tmp_path)
    assert not any(v in PASSWORDS.values() for v in env.values())
    result = lib(env, "client_cnf mysqlsts operator-password")
    assert result.returncode == 0, result.stderr
    assert result.stdout == '[client]\nuser=mysqlsts\npassword="op \\"pw\\" #1"\n'
    result = lib(env, "clone_answer abc")
    expected = hashlib.sha256(f"abc:{PASSWORDS['clone-secret']}".encode()).hexdigest()
    assert result.stdout.strip() == expected
    result = lib(env, 'redact "$1"', "ERROR near 'repl\\\\pw' for 'root' (op \"pw\" #1)")
    assert result.stdout == "ERROR near '<redacted>' for 'root' (<redacted>)\n"  # as SQL literal and verbatim


def test_a_missing_secret_file_stops_the_script(tmp_path):
    env = secret_files(tmp_path)
    (tmp_path / "secrets" / "clone-secret").unlink()
    result = lib(env, "set -e; a=$(clone_answer abc); echo reached")
    assert result.returncode != 0 and "reached" not in result.stdout
    assert "secret clone-secret missing" in result.stderr


def test_no_script_takes_a_secret_from_the_environment():
    for script in SCRIPTS.glob("*.sh"):
        text = script.read_text()
        assert "MYSQL_PWD" not in text, script.name
        assert "MYSQLSTS_ROOT_PASSWORD" not in text and "MYSQLSTS_OPERATOR_PASSWORD" not in text, script.name
        assert "MYSQLSTS_REPLICATION_PASSWORD" not in text and "MYSQLSTS_CLONE_SECRET" not in text, script.name


FAKE_BACKUP = """#!/usr/bin/env bash
# Records how it was called: arguments, environment, the option file and its mode.
out=$RECORD
printf '%s\\n' "$@" >"$out.args"
env >"$out.env"
cnf=${1#--defaults-file=}
stat -c %a "$cnf" >"$out.mode"
cp "$cnf" "$out.cnf"
"""


def test_the_backup_tool_gets_its_password_from_a_0600_option_file(tmp_path):
    """clone-serve.sh, driven like a clone client: no MYSQL_PWD, no password argument; the option
    file (on RUN_DIR, mode 0600) holds it and is gone afterwards."""
    env = secret_files(tmp_path)
    record = tmp_path / "record"
    tools = tmp_path / "tools"
    (tools / "mariabackup").write_text(FAKE_BACKUP)
    (tools / "mbstream").write_text("#!/usr/bin/env bash\ncat >/dev/null\n")
    for tool in ("mariabackup", "mbstream"):
        (tools / tool).chmod(0o755)
    proc = subprocess.Popen(["bash", str(SCRIPTS / "clone-serve.sh")], env={**env, "RECORD": str(record)},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout and proc.stdin
    nonce, role = proc.stdout.readline().decode().split()
    assert role == "none"  # no agent verdict here
    answer = hashlib.sha256(f"{nonce}:{PASSWORDS['clone-secret']}".encode()).hexdigest()
    proc.stdin.write(f"{answer} mysql-2\n".encode())
    proc.stdin.close()
    proc.stdout.read()
    assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    args = Path(f"{record}.args").read_text().splitlines()
    assert args[0].startswith(f"--defaults-file={tmp_path / 'run'}/")
    assert not any(pw in a for a in args for pw in PASSWORDS.values())
    environment = Path(f"{record}.env").read_text()
    assert "MYSQL_PWD" not in environment
    assert not any(pw in environment for pw in PASSWORDS.values())
    assert Path(f"{record}.mode").read_text().strip() == "600"
    cnf = Path(f"{record}.cnf").read_text()
    assert cnf.startswith(f"!include {tmp_path / 'conf'}/my.cnf\n")
    assert 'password="op \\"pw\\" #1"' in cnf and "user=mysqlsts" in cnf
    assert not list((tmp_path / "run").iterdir())  # removed once the backup is done


def test_replication_and_the_clone_stream_are_configured_for_verified_tls():
    init = (SCRIPTS / "init-mysql.sh").read_text()
    for key in ("ssl_ca = $TLS_CA", "ssl_cert = $TLS_CERT", "ssl_key = $TLS_KEY"):
        assert key in init
    assert "IDENTIFIED BY $(sql_quote \"$replication_password\") REQUIRE SSL" in init
    # Joining a primary is the agent's, with the orchestrator's code: see the test below.
    assert not any("CHANGE MASTER" in s.read_text() or "CHANGE REPLICATION SOURCE" in s.read_text()
                   for s in SCRIPTS.glob("*.sh"))
    listener = (SCRIPTS / "clone-listen.sh").read_text()
    assert "OPENSSL-LISTEN:$CLONE_PORT" in listener and "TCP-LISTEN" not in listener
    assert "cafile=$TLS_CA,verify=1" in listener
    lib = (SCRIPTS / "lib.sh").read_text()
    assert "printf 'OPENSSL:%s:%s,cafile=%s,cert=%s,key=%s,verify=1," in lib
    assert '"$(pod_fqdn "$1")" "$CLONE_PORT" "$TLS_CA" "$TLS_CERT" "$TLS_KEY"' in lib
    # Every connection to a peer's listener (the role probe and the stream) goes through tls_to.
    for script in SCRIPTS.glob("*.sh"):
        text = script.read_text()
        assert len(re.findall(r"(?m)^[^#]*\bsocat -", text)) == text.count("\"$(tls_to \""), script.name
        assert "/dev/tcp" not in text, script.name
    assert "\"$(tls_to \"" in (SCRIPTS / "clone-mysql.sh").read_text()


def test_the_orchestrator_replicates_over_verified_tls():
    from mysqlsts import flavors
    from mysqlsts.mysql import actions

    class Conn:
        def __init__(self):
            self.sql: list[tuple[str, tuple | None]] = []

        def cursor(self, *_):
            return self

        def __enter__(self):
            return self

        def __exit__(self, *_):
            return False

        def execute(self, sql, args=None):
            self.sql.append((sql, args))

        def fetchone(self):
            return ("" if "gtid" in self.sql[-1][0] else "/etc/mysqlsts/tls/ca.crt",)

    for flavor, prefix in ((flavors.get("mysql"), "SOURCE"), (flavors.get("mariadb"), "MASTER")):
        conn = Conn()
        actions.replicate_from(conn, flavor, "mysql-0.mysql", 3306, "repl", "pw", True)
        (change, args), = [(s, a) for s, a in conn.sql if s.startswith("CHANGE")]
        assert f"{prefix}_SSL = 1, {prefix}_SSL_CA = %s, {prefix}_SSL_VERIFY_SERVER_CERT = 1" in change
        assert "/etc/mysqlsts/tls/ca.crt" in args


def test_secret_volume_files_on_the_local_runtime_are_read_only(tmp_path):
    """The local kubelet writes the Secret volumes' items with the volume's mode, fresh at every pod start."""
    from mysqlsts.platform.local.layout import ClusterLayout
    from mysqlsts.platform.local.supervisor import Pod
    from mysqlsts.state import write_json

    _, passwords, objects = build("flavor=mariadb")
    layout = ClusterLayout(root=tmp_path / "mysql", name="mysql")
    write_json(layout.objects_file, [o for o in objects if o["kind"] != "Secret"])
    write_json(layout.secret_file, passwords, mode=0o600)
    pod = Pod(layout, layout.pod("mysql-1"), "127.0.0.2")
    pod.mount_secrets()
    pod.mount_secrets()  # a restarted pod: written afresh, not refused
    files = {p.name: p for p in (layout.pod("mysql-1").dir / "secrets").iterdir()}
    assert files["operator-password"].read_text() == passwords["operatorPassword"]
    assert (layout.pod("mysql-1").dir / "tls" / "tls.key").read_text() == passwords["tlsKey"]
    for p in [*files.values(), *(layout.pod("mysql-1").dir / "tls").iterdir()]:
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o440
    container = next(c for c in pod.spec["containers"] if c["name"] == "agent")
    env = pod.env(container)
    assert env["SECRETS_DIR"] == str(layout.pod("mysql-1").dir / "secrets")
    assert not any(v in passwords.values() for v in env.values())


def test_a_role_probe_gets_the_agents_fresh_verdict_and_no_backup(tmp_path):
    """clone-serve.sh says what the pod can serve as with its challenge (clone-mysql.sh chooses its
    donor by it) and ends at once, with no backup, for a peer that only probes."""
    env = secret_files(tmp_path)
    record = tmp_path / "record"
    tools = tmp_path / "tools"
    (tools / "mariabackup").write_text(FAKE_BACKUP)
    (tools / "mariabackup").chmod(0o755)
    role_file = tmp_path / "run" / "agent-role"

    def probe() -> str:
        result = subprocess.run(["bash", str(SCRIPTS / "clone-serve.sh")], env={**env, "RECORD": str(record)},
                                input=b"probe mysql-3\n", capture_output=True, timeout=30)
        assert result.returncode == 0, result.stderr
        nonce, role = result.stdout.decode().split()
        assert len(nonce) == 32
        return role

    assert probe() == "none"  # no verdict: the agent is not running
    role_file.write_text("replica")
    assert probe() == "replica"
    os.utime(role_file, (time.time() - 60, time.time() - 60))
    assert probe() == "none"  # a stale verdict is no verdict
    assert not Path(f"{record}.args").exists()  # the backup tool never ran
