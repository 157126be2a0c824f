"""A drill's report in table, JSON and Markdown; its history in the cluster's own database;
its figures in the Prometheus text format."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest, write_to_textfile
from tabulate import tabulate

from mysqlsts import output
from mysqlsts.drills.run import SCHEMA
from mysqlsts.orchestrator.cluster import Cluster

ROWS = [  # key, label, unit
    ("fault", "fault injected", ""),
    ("old_primary", "primary before", ""),
    ("new_primary", "primary after", ""),
    ("detection_seconds", "detection (fault -> failover decision)", "s"),
    ("promotion_seconds", "promotion (fault -> another node writable)", "s"),
    ("rto_seconds", "RTO (last write before -> first write after)", "s"),
    ("rejoin_seconds", "old primary back as a healthy replica", "s"),
    ("writes_acknowledged", "writes acknowledged", ""),
    ("lost_writes", "acknowledged writes lost (RPO)", ""),
    ("split_brain_samples", "moments with two writable nodes", ""),
    ("split_brain_acks", "writes acknowledged by a node after another took over", ""),
    ("healthy_after", "healthy afterwards", ""),
]
ISOLATE_ROWS = [  # after "writes acknowledged", for the isolate fault only
    ("partition_healed_seconds", "partition healed (fault -> cut lifted)", "s"),
    ("side_writes_acknowledged", "writes acknowledged on the old primary's side", ""),
    ("acks_while_isolated", "writes the old primary acknowledged while cut off", ""),
]


def cell(value: Any, unit: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}{unit}"
    return f"{value}{unit}"


def rows(report: dict[str, Any]) -> list[list[str]]:
    shown = ROWS
    if report.get("fault") == "isolate":
        at = [key for key, _, _ in ROWS].index("writes_acknowledged") + 1
        shown = [*ROWS[:at], *ISOLATE_ROWS, *ROWS[at:]]
    out = [[label, cell(report.get(key), unit)] for key, label, unit in shown]
    if report.get("lost_ids"):
        out.append(["lost write ids", ", ".join(map(str, report["lost_ids"][:50]))])
    out.append(["verdict", "PASS" if report["passed"] else "FAIL: " + "; ".join(report["verdict_reasons"])])
    return out


def show(report: dict[str, Any], fmt: str) -> None:
    title = f"drill on {report['cluster']} ({report['target']}), {report['started_at']}, run {report['run_id']}"
    if fmt == "json":
        output.document(report)
    elif fmt == "md":
        output.line(f"## {title}\n")
        output.line(tabulate(rows(report), headers=["measure", "value"], tablefmt="github"))
    else:
        output.table(title, ["measure", "value"], rows(report))


# -- history -----------------------------------------------------------------------------------

HISTORY = f"{SCHEMA}.history"


def store(cluster: Cluster, report: dict[str, Any]) -> None:
    """In the cluster's own replicated database: it survives any failover."""
    with cluster.connect_client(cluster.platform.primary_fqdn()) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE IF NOT EXISTS {HISTORY} (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                    "run_id CHAR(12) NOT NULL, started_at VARCHAR(32) NOT NULL, fault VARCHAR(16) NOT NULL, "
                    "rto_seconds DOUBLE NULL, lost_writes INT NOT NULL, passed BOOLEAN NOT NULL, "
                    "report LONGTEXT NOT NULL)")
        cur.execute(f"INSERT INTO {HISTORY} (run_id, started_at, fault, rto_seconds, lost_writes, passed, report) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (report["run_id"], report["started_at"], report["fault"], report["rto_seconds"],
                     report["lost_writes"], report["passed"], json.dumps(report)))


def history(cluster: Cluster) -> list[dict[str, Any]]:
    with cluster.connect(cluster.platform.primary_fqdn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s "
                    "AND table_name = 'history'", (SCHEMA,))
        if not cur.fetchone()[0]:
            return []
        cur.execute(f"SELECT started_at, run_id, fault, rto_seconds, lost_writes, passed FROM {HISTORY} ORDER BY id")
        keys = ["started_at", "run_id", "fault", "rto_seconds", "lost_writes", "passed"]
        return with_trend([dict(zip(keys, row, strict=True)) for row in cur.fetchall()])


def with_trend(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each run's RTO against the median of the five runs before it."""
    out = []
    for i, run in enumerate(runs):
        before = [r["rto_seconds"] for r in runs[max(0, i - 5):i] if r["rto_seconds"] is not None]
        trend = None
        if before and run["rto_seconds"] is not None:
            trend = round(run["rto_seconds"] - statistics.median(before), 3)
        out.append({**run, "passed": bool(run["passed"]), "rto_vs_recent_median": trend})
    return out


def show_history(runs: list[dict[str, Any]], fmt: str, cluster: str) -> None:
    if fmt == "json":
        output.document({"cluster": cluster, "runs": runs})
        return
    headers = ["started", "run", "fault", "RTO", "vs median of 5 before", "lost writes", "verdict"]
    table = [[r["started_at"], r["run_id"], r["fault"], cell(r["rto_seconds"], "s"),
              "n/a" if r["rto_vs_recent_median"] is None else f"{r['rto_vs_recent_median']:+.3f}s",
              r["lost_writes"], "PASS" if r["passed"] else "FAIL"] for r in runs]
    if fmt == "md":
        output.line(tabulate(table, headers=headers, tablefmt="github"))
    else:
        output.table(f"drill history of {cluster} ({len(runs)} runs)", headers, table)


# -- metrics -------------------------------------------------------------------------------------

def metrics(report: dict[str, Any]) -> CollectorRegistry:
    registry = CollectorRegistry()
    labels = {"cluster": report["cluster"], "fault": report["fault"]}
    figures = [
        ("mysqlsts_drill_rto_seconds", "RTO of the last drill: last write before the fault to the first after",
         report["rto_seconds"]),
        ("mysqlsts_drill_detection_seconds", "Fault to failover decision in the last drill",
         report["detection_seconds"]),
        ("mysqlsts_drill_lost_writes", "Acknowledged writes lost in the last drill", report["lost_writes"]),
        ("mysqlsts_drill_split_brain_samples", "Samples with two writable nodes in the last drill",
         report["split_brain_samples"]),
        ("mysqlsts_drill_split_brain_acks", "Writes acknowledged by a node after another took over, last drill",
         report.get("split_brain_acks")),
        ("mysqlsts_drill_passed", "1 when the last drill passed its thresholds, else 0", int(report["passed"])),
        ("mysqlsts_drill_last_run_timestamp_seconds", "When the last drill ran (Unix time)", report["finished_at"]),
    ]
    for name, help_, value in figures:
        if value is not None:
            Gauge(name, help_, list(labels), registry=registry).labels(**labels).set(value)
    return registry


def write_metrics(report: dict[str, Any], path: Path) -> None:
    """node_exporter's textfile collector format, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), metrics(report))


def metrics_text(report: dict[str, Any]) -> str:
    return generate_latest(metrics(report)).decode()
