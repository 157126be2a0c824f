"""Values: chart defaults, then `-f` files, then `--set` overrides, checked against the schema.

Every problem found is reported at once, one line each, prefixed by the dotted
path of the offending key, so a user fixes a values file in one pass.
"""

from __future__ import annotations

import copy
import difflib
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate.utils as kv
import yaml
from croniter import croniter

from mysqlsts.chart.paths import chart_dir
from mysqlsts.errors import BadInput

Values = dict[str, Any]


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate keys: the last one silently winning hides typos."""

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_schema() -> dict[str, Any]:
    return json.loads((chart_dir() / "values.schema.json").read_text())


def defaults() -> Values:
    return yaml.load((chart_dir() / "values.yaml").read_text(), Loader=_UniqueKeyLoader)


def _read_file(path: str) -> tuple[Values | None, str | None]:
    p = Path(path)
    if not p.is_file():
        return None, f"{path}: values file not found"
    try:
        data = yaml.load(p.read_text(), Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        return None, f"{path}: YAML syntax error at {where}: {e.problem or e.context}"
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
        return None, f"{path}: cannot read values: {e}"
    if data is None:
        return {}, None
    if not isinstance(data, dict):
        return None, f"{path}: must be a mapping of keys to values, got {_kind(data)}"
    return data, None


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def merge(base: Values, override: Values) -> Values:
    """Deep-merge mappings; any other value in `override` replaces the base value."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _subschema(schema: dict[str, Any], path: list[str]) -> dict[str, Any] | None:
    node = schema
    for part in path:
        props = node.get("properties", {})
        if part in props:
            node = props[part]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return None
    return node


def _coerce(raw: str, node: dict[str, Any]) -> Any:
    """Turn a `--set` string into the type the schema expects; leave it a string when it does not parse,
    so the schema check reports it with its path."""
    kind = node.get("type")
    if isinstance(kind, list):  # a nullable setting: "null" turns it off
        if raw == "null" and "null" in kind:
            return None
        kind = next((k for k in kind if k != "null"), None)
    if kind == "integer":
        try:
            return int(raw)
        except ValueError:
            return raw
    if kind == "number":
        try:
            return float(raw) if any(c in raw for c in ".eE") else int(raw)
        except ValueError:
            return raw
    if kind == "boolean":
        return {"true": True, "false": False}.get(raw.lower(), raw)
    if kind == "array":
        inner = raw.strip()
        if inner.startswith("{") and inner.endswith("}"):
            inner = inner[1:-1]
        items = [s.strip() for s in inner.split(",") if s.strip()]
        return [_coerce(s, node.get("items", {})) for s in items]
    if kind == "object":
        try:
            parsed = yaml.safe_load(raw)
        except yaml.YAMLError:
            return raw
        return parsed if isinstance(parsed, dict) else raw
    return raw  # strings (passwords included) are taken verbatim


def parse_set(expr: str, schema: dict[str, Any]) -> tuple[list[str], Any] | str:
    """Parse PATH=VALUE; return (path, value) or a problem line."""
    key, sep, raw = expr.partition("=")
    if not sep or not key.strip():
        return f"--set {expr!r}: expected PATH=VALUE, for example replicas=3"
    path = key.strip().split(".")
    if any(not part for part in path):
        return f"--set {expr!r}: empty key in path {key!r}"
    node = _subschema(schema, path)
    if node is None:
        return _unknown_key(schema, path)
    return path, _coerce(raw, node)


def _unknown_key(schema: dict[str, Any], path: list[str]) -> str:
    for depth in range(len(path)):
        parent = _subschema(schema, path[:depth]) or {}
        known = list(parent.get("properties", {}))
        if path[depth] not in known and not isinstance(parent.get("additionalProperties"), dict):
            where = ".".join(path[: depth + 1])
            hint = difflib.get_close_matches(path[depth], known, n=1)
            return f"{where}: unknown key" + (f" (did you mean {hint[0]!r}?)" if hint else "")
    return f"{'.'.join(path)}: unknown key"


def _set_path(values: Values, path: list[str], value: Any) -> None:
    node = values
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[path[-1]] = value


def _describe(schema: dict[str, Any]) -> str:
    if "x-message" in schema:
        return schema["x-message"]
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    off = " or null (off)" if "null" in kinds else ""
    kind = next((k for k in kinds if k != "null"), None)
    if "enum" in schema:
        return "must be one of " + ", ".join(str(v) for v in schema["enum"])
    noun = {"integer": "an integer", "number": "a number", "boolean": "true or false",
            "string": "a string", "object": "a mapping", "array": "a list"}.get(kind, "valid")
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    op = ">=" if "minimum" in schema else ">"
    high = schema.get("maximum")
    if low is not None and high is not None and op == ">=":
        return f"must be {noun} from {low} to {high}{off}"
    if low is not None:
        return f"must be {noun} {op} {low}{off}"
    if high is not None:
        return f"must be {noun} <= {high}{off}"
    return f"must be {noun}{off}"


def _path_str(path) -> str:
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in path).replace(".[", "[") or "(top level)"


def _problem(error: jsonschema.ValidationError, schema: dict[str, Any]) -> list[str]:
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        known = list(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in known]
        out = []
        for key in extra:
            hint = difflib.get_close_matches(str(key), known, n=1)
            out.append(f"{_path_str([*path, key])}: unknown key" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        return out
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "?"
        return [f"{_path_str([*path, missing])}: missing"]
    if error.validator == "uniqueItems":
        return [f"{_path_str(path)}: must not list the same item twice"]
    if error.validator == "format" and error.validator_value == "cron":
        return [f"{_path_str(path)}: {error.cause or error.message}"]
    got = json.dumps(error.instance)
    return [f"{_path_str(path)}: {_describe(error.schema)}, got {got}"]


_format_checker = jsonschema.FormatChecker()


@_format_checker.checks("cron", raises=ValueError)
def _is_cron(value: object) -> bool:
    if not isinstance(value, str) or value == "":
        return True
    if len(value.split()) != 5:
        raise ValueError(f"must be a 5-field cron schedule such as \"0 3 * * 1\", got {json.dumps(value)}")
    if not croniter.is_valid(value):
        raise ValueError(f"is not a valid cron schedule, got {json.dumps(value)}")
    return True


def _semantic_problems(values: Values) -> list[str]:
    """Checks that span several keys, which the schema cannot express."""
    problems = []
    m = values["mysql"]
    if m["port"] == m["clonePort"]:
        problems.append(f"mysql.clonePort: must differ from mysql.port ({m['port']})")
    semi = m["semiSync"]
    if semi["enabled"] and values["replicas"] > 1 and semi["waitForReplicaCount"] > values["replicas"] - 1:
        problems.append(
            f"mysql.semiSync.waitForReplicaCount: {semi['waitForReplicaCount']} acknowledgements can never "
            f"arrive with {values['replicas'] - 1} replica(s); lower it or raise replicas"
        )
    pod = values["pod"]
    probe = pod["readinessProbe"]
    if probe["timeoutSeconds"] >= probe["periodSeconds"]:
        problems.append(f"pod.readinessProbe.timeoutSeconds: must be below periodSeconds ({probe['periodSeconds']}), "
                        "or a slow run overlaps the next")
    if pod["preStopSleepSeconds"] >= pod["terminationGracePeriodSeconds"]:
        problems.append(f"pod.preStopSleepSeconds: must be below terminationGracePeriodSeconds "
                        f"({pod['terminationGracePeriodSeconds']}), which also covers the server's shutdown")
    acks = semi["waitForReplicaCount"] if semi["enabled"] else 0
    spare = values["replicas"] - 1 - acks
    if values["replicas"] >= 3 and values["podDisruptionBudget"]["maxUnavailable"] > spare:
        problems.append(f"podDisruptionBudget.maxUnavailable: at most {spare} with {values['replicas']} replicas and "
                        f"{acks} semi-sync acknowledgement(s), or evictions stall writes")
    known = {kv.major_minor(v) for v in kv.all_versions()}
    for i, version in enumerate(values["kubernetesVersions"]):
        if isinstance(version, str) and version.lstrip("v") not in known:
            problems.append(
                f"kubernetesVersions[{i}]: no bundled schema for Kubernetes {version}; "
                f"known: {min(known, key=_vkey)} to {max(known, key=_vkey)}"
            )
    return problems


def _vkey(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.lstrip("v").split("."))


def kubernetes_versions(values: Values) -> list[str]:
    listed = [v.lstrip("v") for v in values["kubernetesVersions"]]
    if listed:
        return listed
    known = sorted({kv.major_minor(v) for v in kv.all_versions()}, key=_vkey)
    return known[-3:]


def upgrade(recorded: Values) -> Values:
    """Values an earlier mysqlsts recorded for a cluster, in today's shape (a copy).
    0.1: pod.resources.sidecar, for the container that settled the role and served clones; since,
    the pod agent (`agent`, defaults) and the clone listener (`clone`, which runs the backup tool and
    keeps the sidecar's resources). Before mysql.cloneThrottle: clones were not throttled (0); before
    mysql.cloneMethod, MySQL cloned with xtrabackup. Keys
    added since take today's defaults, as a chart upgrade does (mysql.applierThreads,
    mysql.binlogRetentionHours, health.maxBehindTransactions, failover.throttleBehindTransactions); they
    reach the pods when the cluster is next rendered."""
    values = copy.deepcopy(recorded)
    today = defaults()
    for section, key in (("mysql", "applierThreads"), ("mysql", "binlogRetentionHours"),
                         ("health", "maxBehindTransactions"), ("failover", "throttleBehindTransactions")):
        if isinstance(values.get(section), dict):
            values[section].setdefault(key, today[section][key])
    resources = values.get("pod", {}).get("resources", {})
    if "sidecar" in resources:
        sidecar = resources.pop("sidecar")
        resources.setdefault("clone", sidecar)
        resources.setdefault("agent", defaults()["pod"]["resources"]["agent"])
    if isinstance(values.get("mysql"), dict):
        values["mysql"].setdefault("cloneThrottle", 0)
        # Before mysql.cloneMethod, MySQL pods cloned with xtrabackup (MySQL 8.4 images).
        values["mysql"].setdefault("cloneMethod", "xtrabackup")
    return values


def load(files: list[str] | None = None, sets: list[str] | None = None, base: Values | None = None) -> Values:
    """Build the effective values (on the chart's defaults, or on `base`: an existing cluster's
    values), or raise BadInput listing every problem."""
    schema = load_schema()
    values = copy.deepcopy(base) if base is not None else defaults()
    problems: list[str] = []
    for path in files or []:
        data, problem = _read_file(path)
        if problem:
            problems.append(problem)
        elif data is not None:
            values = merge(values, data)
    for expr in sets or []:
        parsed = parse_set(expr, schema)
        if isinstance(parsed, str):
            problems.append(parsed)
        else:
            _set_path(values, *parsed)
    if problems:
        raise BadInput(problems)
    return check(values, schema)


def check(values: Values, schema: dict[str, Any] | None = None) -> Values:
    """Validate complete values against the schema and the cross-key rules."""
    schema = schema or load_schema()
    problems: list[str] = []
    validator = jsonschema.Draft202012Validator(schema, format_checker=_format_checker)
    for error in sorted(validator.iter_errors(values), key=lambda e: [str(p) for p in e.absolute_path]):
        problems.extend(_problem(error, schema))
    if problems:
        raise BadInput(problems)
    problems = _semantic_problems(values)
    if problems:
        raise BadInput(problems)
    return values


# Keys an existing cluster's data is tied to: the key and what to do instead of changing it.
IMMUTABLE = {
    "flavor": "its data directories belong to this server; bootstrap a new cluster of the other flavor and "
              "move the data with a dump",
    "namespace": "the pods' names, in their data and in replication, carry it; bootstrap a new cluster there",
    "clusterDomain": "the pods' names, in their data and in replication, carry it; bootstrap a new cluster",
    "mysql.serverIdOffset": "server IDs name the transactions in the binary logs; keep it",
    "storage.size": "volumes keep the size they were made with; expand each PersistentVolumeClaim where the "
                    "StorageClass allows it, and keep the recorded size here",
    "storage.storageClassName": "volumes keep the class they were made with; bootstrap a new cluster",
}


def immutable_changes(recorded: Values, wanted: Values) -> list[str]:
    """One line per key that an existing cluster cannot take a new value for."""
    problems = []
    for key, instead in IMMUTABLE.items():
        old, new = recorded, wanted
        for part in key.split("."):
            old = old.get(part) if isinstance(old, dict) else None
            new = new.get(part) if isinstance(new, dict) else None
        if old is not None and old != new:
            problems.append(f"{key}: cannot change on an existing cluster ({old!r} -> {new!r}): {instead}")
    return problems
