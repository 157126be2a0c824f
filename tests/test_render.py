"""Properties of the rendered chart, for both flavors and non-default values."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml

from mysqlsts.chart import kubeschema, secrets
from mysqlsts.chart import values as chart_values
from mysqlsts.chart.render import render, to_stream

ROOT = Path(__file__).resolve().parent.parent

DATA = Path(__file__).parent / "data"
VARIANTS = {
    "mysql-default": ([], []),
    "mariadb-default": ([], ["flavor=mariadb"]),
    "mariadb-custom": ([str(DATA / "mariadb-custom.yaml")], []),
    "mysql-small": ([str(DATA / "mysql-small.yaml")], []),
    "mysql-84-xtrabackup": ([], ["images.mysql.server=mysql:8.4.7", "mysql.cloneMethod=xtrabackup"]),
    "drills-and-controller": ([], ["drills.schedule=0 3 * * 1", "controller.enabled=true"]),
}
TRICKY = "p'a\"s s$w`o\\r d#1;--"


def build(files, sets):
    values = chart_values.load(files, sets)
    passwords, _ = secrets.merge(values, {})
    return values, passwords, render(values, passwords)


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


@pytest.fixture(params=sorted(VARIANTS), scope="module")
def rendered(request):
    return build(*VARIANTS[request.param])


def test_every_object_is_valid_kubernetes_for_each_version(rendered):
    values, _, objects = rendered
    versions = chart_values.kubernetes_versions(values)
    assert versions
    assert kubeschema.problems(objects, versions) == []


def test_the_stream_is_yaml_that_round_trips(rendered):
    _, _, objects = rendered
    assert list(yaml.safe_load_all(to_stream(objects))) == objects


def test_names_and_labels(rendered):
    values, _, objects = rendered
    name = values["name"]
    services = {s["metadata"]["name"]: s for s in by_kind(objects, "Service")}
    assert set(services) == {name, f"{name}-primary", f"{name}-read"}
    assert services[name]["spec"]["clusterIP"] == "None"
    assert services[name]["spec"]["publishNotReadyAddresses"] is True
    assert services[f"{name}-primary"]["spec"]["selector"]["mysqlsts.io/role"] == "primary"
    assert services[f"{name}-read"]["spec"]["selector"]["mysqlsts.io/role"] == "replica"
    assert "publishNotReadyAddresses" not in services[f"{name}-read"]["spec"]  # ready replicas only
    for obj in objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "mysql-sts"
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == name
        assert obj["metadata"]["namespace"] == values["namespace"]


def test_statefulset_shape(rendered):
    values, _, objects = rendered
    (sts,) = by_kind(objects, "StatefulSet")
    spec = sts["spec"]
    assert spec["podManagementPolicy"] == "Parallel"  # after a full restart any pod may hold the newest data
    assert spec["updateStrategy"] == {"type": "OnDelete"}  # mysqlsts rolls template changes (bootstrap)
    assert spec["replicas"] == values["replicas"]
    assert spec["serviceName"] == values["name"]
    pod = spec["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["install-tools", "init-mysql", "clone-mysql"]
    assert pod["initContainers"][0]["image"] == values["images"]["tools"]
    assert [c["name"] for c in pod["containers"]] == ["mysql", "agent", "clone"]
    server = pod["containers"][0]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert server[probe]["exec"]["command"][-1] in ("startup", "liveness", "readiness")
    assert server["readinessProbe"]["exec"]["command"][-1] == "readiness"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["terminationGracePeriodSeconds"] == values["pod"]["terminationGracePeriodSeconds"]
    anti = pod["affinity"]["podAntiAffinity"]
    key = "requiredDuringSchedulingIgnoredDuringExecution" if values["pod"]["antiAffinity"] == "hard" \
        else "preferredDuringSchedulingIgnoredDuringExecution"
    assert list(anti) == [key]
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == values["storage"]["size"]
    assert claim["spec"].get("storageClassName", "") == values["storage"]["storageClassName"]
    images = values["images"][values["flavor"]]
    assert server["image"] == images["server"]
    agent, clone = pod["containers"][1:]
    assert agent["image"] == values["images"]["tools"] and agent["command"] == ["mysqlsts", "agent"]
    assert agent["resources"] == values["pod"]["resources"]["agent"]
    # The clone init container and listener: the backup tool's image, or the server's with the CLONE plugin.
    clone_image = images["server"] if values["flavor"] == "mysql" and values["mysql"]["cloneMethod"] == \
        "clone-plugin" else images["backup"]
    assert clone["image"] == clone_image and pod["initContainers"][2]["image"] == clone_image
    assert clone["resources"] == values["pod"]["resources"]["clone"]
    assert clone["ports"] == [{"name": "clone", "containerPort": values["mysql"]["clonePort"]}]
    for container in [c for c in pod["initContainers"] + pod["containers"] if c is not agent]:
        assert container["command"][:2] == ["bash", f"/opt/mysqlsts/scripts/{container['command'][1].split('/')[-1]}"]
    for container in pod["containers"]:  # the agent reads the same environment as the scripts
        assert container["env"] == server["env"]
    # The mysqlsts image is installed at /opt/mysqlsts (Dockerfile): nothing may be mounted over it in the
    # agent's container, or `mysqlsts` is gone; what it reads (data, run, secrets, TLS) is mounted.
    installed = "/opt/mysqlsts"
    assert f"python3 -m venv {installed}" in (ROOT / "Dockerfile").read_text()
    paths = [m["mountPath"] for m in agent["volumeMounts"]]
    assert not [p for p in paths if installed == p or installed.startswith(p.rstrip("/") + "/")
                or p.startswith(installed + "/")], paths
    env = {e["name"]: e.get("value") for e in agent["env"]}
    for var in ("PV_DIR", "RUN_DIR", "SECRETS_DIR", "TLS_DIR"):
        assert env[var] in paths, var


def test_a_hung_agent_is_restarted(rendered, tmp_path):
    """The agent container's liveness: its verdict file younger than a minute."""
    import os
    import subprocess
    import time

    _, _, objects = rendered
    (sts,) = by_kind(objects, "StatefulSet")
    agent = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "agent")
    command = agent["livenessProbe"]["exec"]["command"]
    assert command[-1] == "/run/mysqld/agent-ready"
    here = [*command[:-1], str(tmp_path / "verdict")]
    assert subprocess.run(here, capture_output=True).returncode != 0  # no verdict yet
    (tmp_path / "verdict").write_text("lag 40s exceeds 30s")
    assert subprocess.run(here, capture_output=True).returncode == 0  # not ready, but alive
    stale = time.time() - 61
    os.utime(tmp_path / "verdict", (stale, stale))
    assert subprocess.run(here, capture_output=True).returncode == 1


def test_configmap_carries_the_scripts_verbatim_and_the_flavor_config(rendered):
    values, _, objects = rendered
    (cm,) = [o for o in by_kind(objects, "ConfigMap")]
    scripts = Path(__file__).parent.parent / "charts" / "mysql-sts" / "scripts"
    for script in scripts.glob("*.sh"):
        assert cm["data"][f"scripts_{script.name}"] == script.read_text()
    flavor_cnf = cm["data"][f"config_{values['flavor']}.cnf"]
    assert f"port = {values['mysql']['port']}" in flavor_cnf
    assert "binlog_format = ROW" in flavor_cnf
    assert "read_only = ON" in flavor_cnf
    if values["flavor"] == "mysql":
        assert "gtid_mode = ON" in flavor_cnf and "super_read_only = ON" in flavor_cnf
        assert "skip_replica_start = ON" in flavor_cnf
    else:
        assert "gtid_strict_mode = ON" in flavor_cnf and "skip_slave_start = ON" in flavor_cnf
    semi = values["mysql"]["semiSync"]["enabled"]  # at every size: a scale never changes the pod template
    assert ("_enabled = ON" in cm["data"]["config_replica.cnf"]) == semi
    # Crash recovery cuts an unacknowledged tail only on a MariaDB pod booting as a replica, and only with
    # semi-sync: an async replica would skip its own transactions coming back (docs/failover.md).
    cut = [line for line in flavor_cnf.splitlines() if line.startswith("init_rpl_role")]
    assert cut == (["init_rpl_role = SLAVE"] if semi and values["flavor"] == "mariadb" else [])


@pytest.mark.parametrize(("flavor", "threads", "lines"), [
    ("mariadb", 4, ["slave_parallel_threads = 4", "slave_parallel_mode = optimistic"]),
    ("mariadb", 1, ["slave_parallel_threads = 0"]),
    ("mysql", 4, ["replica_parallel_workers = 4", "replica_preserve_commit_order = ON"]),
    ("mysql", 1, ["replica_parallel_workers = 1", "replica_preserve_commit_order = ON"]),
])
def test_replicas_apply_in_parallel_in_the_primarys_commit_order(flavor, threads, lines):
    _, _, objects = build([], [f"flavor={flavor}", f"mysql.applierThreads={threads}"])
    (cm,) = by_kind(objects, "ConfigMap")
    cnf = cm["data"][f"config_{flavor}.cnf"].splitlines()
    applier = [line for line in cnf if line.startswith(("slave_parallel", "replica_parallel", "replica_preserve"))]
    assert applier == lines


@pytest.mark.parametrize(("sets", "cut"), [(["replicas=3"], True), (["replicas=1"], True),
                                           (["replicas=3", "mysql.semiSync.enabled=false"], False)])
def test_mariadb_pods_cut_an_unacknowledged_tail_only_with_semi_sync(sets, cut):
    """At one pod too (server.sh keeps the tail of a primary restarting in place): the template does not
    change with the size, so a scale rolls no pod."""
    _, _, objects = build([], ["flavor=mariadb", *sets])
    (cm,) = by_kind(objects, "ConfigMap")
    assert ("init_rpl_role = SLAVE" in cm["data"]["config_mariadb.cnf"]) == cut


def test_no_secret_value_outside_the_secret(rendered):
    _, passwords, objects = rendered
    (secret,) = by_kind(objects, "Secret")
    decoded = {base64.b64decode(v).decode() for v in secret["data"].values()}
    assert decoded == set(passwords.values())
    for obj in objects:
        if obj["kind"] == "Secret":
            continue
        text = yaml.safe_dump(obj)
        for pw in passwords.values():
            assert pw not in text, f"{obj['kind']}/{obj['metadata']['name']} holds a password"
            assert base64.b64encode(pw.encode()).decode() not in text


def test_no_container_env_carries_a_secret(rendered):
    """Secrets are files (tests/test_secrets_tls.py): no env var refers to the Secret, none holds a password."""
    _, passwords, objects = rendered
    for obj in by_kind(objects, "StatefulSet") + by_kind(objects, "Deployment") + by_kind(objects, "CronJob"):
        pod = obj["spec"]["template"]["spec"] if obj["kind"] != "CronJob" \
            else obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        for c in pod.get("initContainers", []) + pod["containers"]:
            assert "envFrom" not in c
            for env in c.get("env", []):
                assert "secretKeyRef" not in env.get("valueFrom", {}), (c["name"], env)
                assert env["name"] != "MYSQL_PWD" and env.get("value") not in passwords.values(), (c["name"], env)


def test_optional_objects_follow_values(rendered):
    values, _, objects = rendered
    kinds = {o["kind"] for o in objects}
    assert ("NetworkPolicy" in kinds) == values["networkPolicy"]["enabled"]
    assert ("Deployment" in kinds) == values["controller"]["enabled"]
    assert ("CronJob" in kinds) == bool(values["drills"]["schedule"])
    assert ("PodDisruptionBudget" in kinds) == (values["replicas"] >= 3)  # tests/test_chart_hardening.py
    for always in ("ServiceAccount", "Role", "RoleBinding", "Secret", "ConfigMap"):
        assert always in kinds


def test_network_policy_opens_the_clone_port_only_to_the_set():
    values, _, objects = build([], [])
    (policy,) = by_kind(objects, "NetworkPolicy")
    client_rule, clone_rule = policy["spec"]["ingress"]
    assert client_rule["ports"] == [{"protocol": "TCP", "port": values["mysql"]["port"]}]
    assert "from" not in client_rule
    assert clone_rule["ports"] == [{"protocol": "TCP", "port": values["mysql"]["clonePort"]}]
    assert clone_rule["from"] == [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "mysql-sts", "app.kubernetes.io/instance": values["name"]}}}]


def test_cronjob_and_rbac_are_least_privilege():
    _, _, objects = build([], ["drills.schedule=*/30 * * * *"])
    (cron,) = by_kind(objects, "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["successfulJobsHistoryLimit"] >= 1
    (role,) = by_kind(objects, "Role")
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        if rule["resources"] == ["secrets"]:
            assert rule["verbs"] == ["get"] and rule["resourceNames"] == ["mysql-secret"]


def test_default_flavor_is_mysql():
    values, _, _ = build([], [])
    assert values["flavor"] == "mysql"


def test_tricky_password_is_kept_exactly():
    _values, passwords, objects = build([], [f"auth.rootPassword={TRICKY}"])
    assert passwords["rootPassword"] == TRICKY
    (secret,) = by_kind(objects, "Secret")
    assert base64.b64decode(secret["data"]["root-password"]).decode() == TRICKY


def test_passwords_are_strong_and_stable_across_renders(tmp_path):
    store = tmp_path / "secret.json"
    values = chart_values.load([], [])
    first, changed = secrets.merge(values, secrets.stored(store))
    assert changed
    secrets.save(store, first)
    assert store.stat().st_mode & 0o777 == 0o600
    again, changed = secrets.merge(values, secrets.stored(store))
    assert again == first and not changed
    passwords = [first[k] for k in secrets.KEYS]
    assert len(set(passwords)) == 4
    for pw in passwords:
        assert len(pw) == 32 and pw.isalnum()
    supplied, changed = secrets.merge(chart_values.load([], [f"auth.rootPassword={TRICKY}"]), secrets.stored(store))
    assert changed and supplied["rootPassword"] == TRICKY
    assert supplied["operatorPassword"] == first["operatorPassword"]


def test_server_ids_differ_per_ordinal_via_offset():
    _values, _, objects = build([str(DATA / "mariadb-custom.yaml")], [])
    (sts,) = by_kind(objects, "StatefulSet")
    env = {e["name"]: e.get("value") for e in sts["spec"]["template"]["spec"]["initContainers"][1]["env"]}
    assert env["SERVER_ID_OFFSET"] == "1000"
    init = (Path(__file__).parent.parent / "charts/mysql-sts/scripts/init-mysql.sh").read_text()
    assert "server_id = $((SERVER_ID_OFFSET + ORDINAL))" in init


def test_mysqlsts_image_pods_are_never_selected_by_the_statefulset(rendered):
    """Controller and drill pods must not count as database pods (selector, PDB, policies)."""
    _, _, objects = rendered
    (sts,) = by_kind(objects, "StatefulSet")
    db_selector = sts["spec"]["selector"]["matchLabels"]
    templates = [o["spec"]["template"] for o in by_kind(objects, "Deployment")]
    templates += [o["spec"]["jobTemplate"]["spec"]["template"] for o in by_kind(objects, "CronJob")]
    for template in templates:
        labels = template["metadata"]["labels"]
        assert not all(labels.get(k) == v for k, v in db_selector.items()), labels
        assert template["spec"]["serviceAccountName"].endswith("-mysqlsts")


def test_the_in_cluster_job_is_a_valid_least_privilege_job():
    from mysqlsts.chart.render import render_job

    values = chart_values.load([], ["namespace=db"])
    job = render_job(values, "mysql-verify-abc123", ["verify", "-o", "json"], 300)
    assert kubeschema.problems([job], chart_values.kubernetes_versions(values)) == []
    spec = job["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "mysql-mysqlsts" and spec["restartPolicy"] == "Never"
    assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert job["spec"]["activeDeadlineSeconds"] == 300 and job["spec"]["backoffLimit"] == 0


def test_the_default_tools_image_is_the_one_a_release_publishes():
    """.github/workflows/release.yml pushes ghcr.io/mysqlsts/mysqlsts:<package version> for tag v<version>."""
    import mysqlsts

    assert chart_values.load([], [])["images"]["tools"] == f"ghcr.io/mysqlsts/mysqlsts:{mysqlsts.__version__}"


def test_values_recorded_before_the_pod_agent_still_load_and_render(tmp_path):
    """A cluster bootstrapped by 0.1 recorded pod.resources.sidecar and no mysql.cloneThrottle: its values
    load on top (bootstrap on an existing cluster) and render, the clone listener keeping the sidecar's
    resources and its clones unthrottled."""
    import copy

    from mysqlsts.platform.local.runtime import LocalPlatform
    from mysqlsts.state import write_json

    old = copy.deepcopy(chart_values.defaults())
    resources = old["pod"]["resources"]
    del resources["agent"], resources["clone"]
    resources["sidecar"] = {"requests": {"cpu": "70m", "memory": "80Mi"}, "limits": {"memory": "1Gi"}}
    del old["mysql"]["cloneThrottle"]
    platform = LocalPlatform(tmp_path, "mysql")
    write_json(platform.layout.values_file, old)
    recorded = platform.values()
    assert "sidecar" not in recorded["pod"]["resources"]
    values = chart_values.load([], ["replicas=4"], base=recorded)
    assert values["pod"]["resources"]["clone"] == old["pod"]["resources"]["sidecar"]
    assert values["pod"]["resources"]["agent"] == chart_values.defaults()["pod"]["resources"]["agent"]
    passwords, _ = secrets.merge(values, {})
    (sts,) = by_kind(render(values, passwords), "StatefulSet")
    clone = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "clone")
    assert clone["resources"] == old["pod"]["resources"]["sidecar"]
    assert {"name": "CLONE_THROTTLE", "value": "0"} in clone["env"]


def test_values_recorded_before_the_apply_and_backlog_settings_take_todays_defaults(tmp_path):
    """A cluster bootstrapped before mysql.applierThreads, health.maxBehindTransactions and
    failover.throttleBehindTransactions: its commands still load its values, with today's defaults."""
    import copy

    from mysqlsts.platform.local.runtime import LocalPlatform
    from mysqlsts.state import write_json

    old = copy.deepcopy(chart_values.defaults())
    del old["mysql"]["applierThreads"], old["health"]["maxBehindTransactions"]
    del old["failover"]["throttleBehindTransactions"]
    platform = LocalPlatform(tmp_path, "mysql")
    write_json(platform.layout.values_file, old)
    assert chart_values.check(platform.values()) == chart_values.defaults()


@pytest.mark.parametrize(("throttle", "value"), [("null", ""), ("5000", "5000")])
def test_the_backlog_bound_and_the_throttle_reach_every_container(throttle, value):
    _, _, objects = build([], [f"failover.throttleBehindTransactions={throttle}"])
    (sts,) = by_kind(objects, "StatefulSet")
    for c in sts["spec"]["template"]["spec"]["containers"]:
        assert {"name": "MAX_BEHIND_TRANSACTIONS", "value": "10000"} in c["env"]
        assert {"name": "THROTTLE_BEHIND_TRANSACTIONS", "value": value} in c["env"]


@pytest.mark.parametrize("flavor", ["mysql", "mariadb"])
def test_a_scale_changes_neither_the_pod_template_nor_the_config(flavor):
    """Scaling must not roll the pods (the primary among them): what changes with the size is done to
    the running servers (Cluster.match_semi_sync_to_size, the agent's hold)."""
    _, passwords, _ = build([], [f"flavor={flavor}"])

    def template_and_config(replicas: int):
        objects = render(chart_values.load([], [f"flavor={flavor}", f"replicas={replicas}"]), passwords)
        (sts,) = by_kind(objects, "StatefulSet")
        (cm,) = by_kind(objects, "ConfigMap")
        return sts["spec"]["template"], cm["data"]

    one, three, five = (template_and_config(n) for n in (1, 3, 5))
    assert one == three == five


def test_values_recorded_before_a_key_existed_take_its_default():
    recorded = chart_values.defaults()
    for section, key in (("mysql", "binlogRetentionHours"), ("mysql", "applierThreads"),
                         ("health", "maxBehindTransactions")):
        del recorded[section][key]
    upgraded = chart_values.upgrade(recorded)
    assert chart_values.check({**upgraded, "auth": {k: "" for k in upgraded["auth"]}})
    assert upgraded["mysql"]["binlogRetentionHours"] == chart_values.defaults()["mysql"]["binlogRetentionHours"]


def test_pods_restart_on_changed_passwords_and_their_template_tells_none():
    values, passwords, _ = build([], [])
    template = by_kind(render(values, passwords), "StatefulSet")[0]["spec"]["template"]
    changed = by_kind(render(values, {**passwords, "replicationPassword": "another-one-entirely"}),
                      "StatefulSet")[0]["spec"]["template"]
    assert template != changed
    assert template == by_kind(render(values, dict(passwords)), "StatefulSet")[0]["spec"]["template"]
    assert not any(pw in json.dumps(template) for pw in passwords.values())
