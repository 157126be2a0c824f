"""Render the chart's Jinja2 templates into Kubernetes objects.

Templates emit YAML whose scalars go through `tojson`, so no value (a password,
a label) can break the document; the objects are parsed back and re-emitted,
which also proves the output is well-formed YAML.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from mysqlsts import flavors
from mysqlsts.chart import secrets, tls
from mysqlsts.chart.paths import chart_dir
from mysqlsts.chart.values import Values
from mysqlsts.errors import BadInput

Obj = dict[str, Any]

# Where things sit inside a pod; the local runtime maps each to a folder of its own.
POD_PATHS = {
    "MYSQLSTS_HOME_DIR": "/opt/mysqlsts",  # ConfigMap: scripts/ and config/
    "CONF_DIR": "/etc/mysql/mysqlsts",  # generated per-pod config (emptyDir)
    "PV_DIR": "/var/lib/mysqlsts",  # the PersistentVolume
    "RUN_DIR": "/run/mysqld",  # socket and pid, the agent's verdict: shared by the containers
    "TMPDIR": "/tmp",
    "TOOLS_DIR": "/usr/local/mysqlsts/bin",  # socat for the clone listener, copied from the mysqlsts image
    "SECRETS_DIR": "/etc/mysqlsts/secrets",  # Secret volume: one file per password, read by the scripts
    "TLS_DIR": "/etc/mysqlsts/tls",  # Secret volume: ca.crt, tls.crt, tls.key
    # ConfigMap volume (optional): `primary`, the recorded primary, once a cluster has one. A cluster that
    # has held data never initializes an empty primary (init-mysql.sh).
    "RECORD_DIR": "/etc/mysqlsts/record",
}
# The pod agent's readiness verdict, rewritten every second (mysqlsts/agent/podenv.py, lib.sh).
AGENT_READY_FILE = f"{POD_PATHS['RUN_DIR']}/agent-ready"
# Secret volumes: files readable by the pod's group (fsGroup) only, never written.
SECRET_FILE_MODE = 0o440
KIND_ORDER = ["ServiceAccount", "Secret", "ConfigMap", "Role", "RoleBinding", "Service", "StatefulSet",
              "PodDisruptionBudget", "NetworkPolicy", "Deployment", "CronJob"]


@dataclass(frozen=True)
class Names:
    sts: str
    headless: str
    primary: str
    read: str
    configmap: str
    secret: str
    serviceaccount: str
    controller: str
    drill: str
    drill_history: str
    record: str  # the recorded primary: a ConfigMap mysqlsts writes, apart from the StatefulSet


    def pods(self, replicas: int) -> list[str]:
        """The StatefulSet's pod names, by ordinal."""
        return [f"{self.sts}-{i}" for i in range(replicas)]

    @classmethod
    def of(cls, name: str) -> Names:
        return cls(sts=name, headless=name, primary=f"{name}-primary", read=f"{name}-read",
                   configmap=f"{name}-config", secret=f"{name}-secret", serviceaccount=f"{name}-mysqlsts",
                   controller=f"{name}-controller", drill=f"{name}-drill", drill_history=f"{name}-drill-history",
                   record=f"{name}-primary-record")


# An isolate drill's pod carries this label: the chart's NetworkPolicy stops selecting it.
ISOLATED_LABEL = "mysqlsts.io/isolated"
# primary | replica | quarantined: what the primary and read Services select on.
ROLE_LABEL = "mysqlsts.io/role"


def labels(values: Values) -> dict[str, str]:
    return {"app.kubernetes.io/name": "mysql-sts", "app.kubernetes.io/instance": values["name"],
            "app.kubernetes.io/managed-by": "mysqlsts"}


def selector(values: Values) -> dict[str, str]:
    return {"app.kubernetes.io/name": "mysql-sts", "app.kubernetes.io/instance": values["name"]}


def tools_selector(values: Values) -> dict[str, str]:
    """Pods of the mysqlsts image: never matched by the StatefulSet's selector, PDB or policies."""
    return {"app.kubernetes.io/name": "mysqlsts", "app.kubernetes.io/instance": values["name"]}


def semi_sync_on(values: Values) -> bool:
    """Whether the servers run semi-sync (their config and the pods' environment): the same at every
    size, so a scale never changes the pod template."""
    return bool(values["mysql"]["semiSync"]["enabled"])


def semi_sync_holds(values: Values) -> bool:
    """Whether the primary holds each commit until a replica acknowledges it: only where one can. A
    one-pod cluster commits unacknowledged (Cluster.match_semi_sync_to_size); once replicas follow again,
    the primary's agent holds for good (agent.hold_once_replicated)."""
    return semi_sync_on(values) and values["replicas"] > 1


def semi_sync_acks(values: Values) -> int:
    """How many replicas acknowledge each commit (MariaDB: always one)."""
    return int(values["mysql"]["semiSync"]["waitForReplicaCount"]) if values["flavor"] == "mysql" else 1


def clone_method(values: Values) -> str:
    """How an empty pod copies its data: MariaDB's backup tool, or MySQL's CLONE plugin or xtrabackup."""
    return "mariabackup" if values["flavor"] == "mariadb" else values["mysql"]["cloneMethod"]


def clone_image(values: Values) -> str:
    """The image of the clone init container and the clone listener: the server itself clones with the
    CLONE plugin; a backup tool comes in the backup image."""
    images = values["images"][values["flavor"]]
    return images["server"] if clone_method(values) == "clone-plugin" else images["backup"]


def script_env(values: Values) -> list[Obj]:
    """The environment every script runs with, in the pod and in the local runtime alike."""
    plain = {
        "CLUSTER_NAME": values["name"],
        "POD_NAMESPACE": values["namespace"],
        "HEADLESS_SERVICE": Names.of(values["name"]).headless,
        "PRIMARY_SERVICE": Names.of(values["name"]).primary,
        "CLUSTER_DOMAIN": values["clusterDomain"],
        "FLAVOR": values["flavor"],
        "SERVER_ID_OFFSET": str(values["mysql"]["serverIdOffset"]),
        "MYSQL_PORT": str(values["mysql"]["port"]),
        "CLONE_PORT": str(values["mysql"]["clonePort"]),
        "CLONE_METHOD": clone_method(values),
        "CLONE_THROTTLE": str(values["mysql"]["cloneThrottle"]),
        "MAX_LAG_SECONDS": str(values["health"]["maxLagSeconds"]),
        "MAX_BEHIND_TRANSACTIONS": str(values["health"]["maxBehindTransactions"]),
        "THROTTLE_BEHIND_TRANSACTIONS": str(values["failover"]["throttleBehindTransactions"] or ""),
        "SEMI_SYNC": "true" if semi_sync_on(values) else "false",
        "SEMI_SYNC_ACKS": str(semi_sync_acks(values)),
        "BINLOG_RETENTION_SECONDS": str(round(float(values["mysql"]["binlogRetentionHours"]) * 3600)),
        **POD_PATHS,
    }
    env: list[Obj] = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    env += [{"name": k, "value": v} for k, v in plain.items()]
    return env  # no secret: the scripts read them from SECRETS_DIR, so no process environment holds one


def secret_volumes(values: Values) -> list[Obj]:
    """The passwords and the TLS pair as read-only files, the TLS pair from the user's Secret when named."""
    own = Names.of(values["name"]).secret

    def volume(name: str, secret: str, keys: Iterable[str]) -> Obj:
        return {"name": name, "secret": {"secretName": secret, "defaultMode": SECRET_FILE_MODE,
                                         "items": [{"key": k, "path": k} for k in keys]}}

    return [volume("secrets", own, secrets.PASSWORD_FILES.values()),
            volume("tls", values["tls"]["existingSecret"] or own, tls.DATA_KEYS.values())]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(chart_dir() / "templates")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["tojson"] = lambda v: json.dumps(v, ensure_ascii=False)
    env.filters["b64"] = lambda s: base64.b64encode(s.encode()).decode()
    return env


def configmap_files(values: Values, env: jinja2.Environment | None = None) -> dict[str, str]:
    """Pod path (under MYSQLSTS_HOME_DIR) -> content: the scripts verbatim and the rendered my.cnf files."""
    env = env or _environment()
    ctx = {"v": values, "flavor": flavors.get(values["flavor"]), "semi_sync": semi_sync_on(values)}
    files = {}
    for name in (f"{values['flavor']}.cnf", "primary.cnf", "replica.cnf"):
        files[f"config/{name}"] = env.get_template(f"config/{name}.j2").render(ctx)
    for script in sorted((chart_dir() / "scripts").glob("*.sh")):
        files[f"scripts/{script.name}"] = script.read_text()
    return files


def _context(values: Values, passwords: dict[str, str], env: jinja2.Environment) -> dict[str, Any]:
    files = configmap_files(values, env)
    keys = {path: path.replace("/", "_") for path in files}  # ConfigMap keys cannot hold '/'
    configmap_data = {keys[p]: files[p] for p in files}
    checksum = hashlib.sha256(json.dumps(configmap_data, sort_keys=True).encode()).hexdigest()
    mounts = [
        {"name": "config", "mountPath": POD_PATHS["MYSQLSTS_HOME_DIR"], "readOnly": True},
        {"name": "conf", "mountPath": POD_PATHS["CONF_DIR"]},
        {"name": "data", "mountPath": POD_PATHS["PV_DIR"]},
        {"name": "run", "mountPath": POD_PATHS["RUN_DIR"]},
        {"name": "tmp", "mountPath": POD_PATHS["TMPDIR"]},
        {"name": "tools", "mountPath": POD_PATHS["TOOLS_DIR"]},
        {"name": "record", "mountPath": POD_PATHS["RECORD_DIR"], "readOnly": True},
    ]
    secret_mounts = [{"name": "secrets", "mountPath": POD_PATHS["SECRETS_DIR"], "readOnly": True},
                     {"name": "tls", "mountPath": POD_PATHS["TLS_DIR"], "readOnly": True}]
    return {
        "v": values,
        "flavor": flavors.get(values["flavor"]),
        "images": values["images"][values["flavor"]],
        "clone_image": clone_image(values),
        "names": Names.of(values["name"]),
        "labels": labels(values),
        "selector": selector(values),
        "tools_selector": tools_selector(values),
        "isolated_label": ISOLATED_LABEL,
        "role_label": ROLE_LABEL,
        "passwords": passwords,
        "configmap_data": configmap_data,
        "configmap_items": [{"key": keys[p], "path": p} for p in files],
        "config_checksum": checksum,
        # Pods restart on changed passwords (orchestrator/passwords.py). The TLS key in the hash keeps it
        # from telling anything about a password.
        "secret_checksum": hashlib.sha256(json.dumps(passwords, sort_keys=True).encode()).hexdigest(),
        "script_env": script_env(values),
        "mounts": mounts,
        "secret_mounts": mounts + secret_mounts,
        # The agent runs from the mysqlsts image, whose own installation is at /opt/mysqlsts: the ConfigMap
        # mounted there would hide it. It needs none of the scripts, the config or the tools.
        "agent_mounts": [m for m in mounts + secret_mounts if m["name"] not in ("config", "conf", "tools")],
        "secret_volumes": secret_volumes(values),
        "record_volume": {"name": "record", "configMap": {"name": Names.of(values["name"]).record, "optional": True,
                                                          "defaultMode": 0o444,
                                                          "items": [{"key": "primary", "path": "primary"}]}},
        "tools_dir": POD_PATHS["TOOLS_DIR"],
        "agent_ready_file": AGENT_READY_FILE,
        "container_security": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                               "capabilities": {"drop": ["ALL"]}},
    }


def _render_template(env: jinja2.Environment, name: str, ctx: dict[str, Any]) -> list[Obj]:
    try:
        text = env.get_template(name).render(ctx)
        return [d for d in yaml.safe_load_all(text) if d]
    except jinja2.UndefinedError as e:
        raise BadInput(f"templates/{name}: {e.message}") from e
    except yaml.YAMLError as e:
        raise BadInput(f"templates/{name}: rendered invalid YAML: {e}") from e


def render(values: Values, passwords: dict[str, str]) -> list[Obj]:
    env = _environment()
    ctx = _context(values, passwords, env)
    objects: list[Obj] = []
    for template in sorted((chart_dir() / "templates").glob("*.yaml.j2")):
        objects.extend(_render_template(env, template.name, ctx))
    objects.sort(key=lambda o: (KIND_ORDER.index(o["kind"]) if o["kind"] in KIND_ORDER else 99,
                                o["metadata"]["name"]))
    return objects


def render_job(values: Values, job_name: str, args: list[str], deadline: int) -> Obj:
    """A one-off Job running `mysqlsts ARGS` in the cluster, from the mysqlsts image."""
    env = _environment()
    ctx = {**_context(values, {}, env), "job_name": job_name, "args": args, "deadline": deadline}
    (job,) = _render_template(env, "runtime/job.yaml.j2", ctx)
    return job


class _Dumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_presenter)


def to_yaml(obj: Obj) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)


def to_stream(objects: list[Obj]) -> str:
    return "".join(f"---\n{to_yaml(o)}" for o in objects)


def file_name(obj: Obj) -> str:
    return f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


def write_dir(objects: list[Obj], out: Path) -> list[Path]:
    """One file per object, written only after every object rendered."""
    from mysqlsts.state import write_atomic

    written = []
    for obj in objects:
        path = out / file_name(obj)
        write_atomic(path, to_yaml(obj))
        written.append(path)
    return written
