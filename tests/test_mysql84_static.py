"""Static check of the MySQL flavor against what MySQL 8.4 removed or renamed.

No MySQL 8.4 server runs here (the real-server tests use MariaDB), so a statement
or option that 8.4 no longer accepts would only show on a real cluster. This
module collects everything the MySQL flavor can send to a server or put in its
configuration, and fails on any item of REMOVED, a table curated from the
MySQL 8.4 reference manual (each entry names its page):

- the MySQL Flavor in mysqlsts/flavors.py;
- SQL in mysqlsts/{mysql,orchestrator,drills,agent}/*.py, with the MariaDB side of
  every flavor branch pruned from the syntax tree (and the statements the
  MySQL branches of mysqlsts/mysql/actions.py and observe.py really execute,
  recorded on a fake connection);
- the rendered chart for flavor=mysql under several values (semi-sync on/off,
  one pod, two acknowledgements): my.cnf files and every other object;
- the pod scripts (charts/mysql-sts/scripts/*.sh) with their MariaDB branches
  pruned, including the backup tool's options (percona-xtrabackup 8.4).

Every flavor branch must be one the pruners understand: an unknown form fails
the test, so nothing MariaDB-only or MySQL-only slips past unseen.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest

from mysqlsts import flavors
from mysqlsts.chart import values as chart_values
from mysqlsts.chart.render import configmap_files, render, to_yaml
from mysqlsts.mysql import actions, observe

ROOT = Path(__file__).parent.parent
SCRIPTS = sorted((ROOT / "charts" / "mysql-sts" / "scripts").glob("*.sh"))
PY_SOURCES = sorted(p for d in ("mysql", "orchestrator", "drills", "agent")
                    for p in (ROOT / "mysqlsts" / d).glob("*.py"))

NUTSHELL = "https://dev.mysql.com/doc/refman/8.4/en/mysql-nutshell.html"  # "Features Removed in MySQL 8.4"
OPTVARS = "https://dev.mysql.com/doc/mysqld-version-reference/en/optvar-changes-8-4.html"
RELNOTES = "https://dev.mysql.com/doc/relnotes/mysql/8.4/en/news-8-4-0.html"


@dataclass(frozen=True)
class Removed:
    pattern: str  # regex, case-insensitive, matched against the item and its '-' -> '_' spelling
    use: str  # what MySQL 8.4 takes instead
    url: str  # where the manual says so
    example: str  # a line it must catch (the check's own test)

    def matches(self, text: str) -> bool:
        return any(re.search(self.pattern, t, re.IGNORECASE) for t in (text, text.replace("-", "_")))


# What MySQL 8.4 removed or renamed, for what this project can emit. Order matters
# only for the message: the first matching entry names the problem.
REMOVED: list[Removed] = [
    # Replication statements, removed in 8.4.0 (nutshell: "SQL statements removed"; release notes 8.4.0).
    Removed(r"\bSTART\s+SLAVE\b", "START REPLICA", "https://dev.mysql.com/doc/refman/8.4/en/start-replica.html",
            "START SLAVE"),
    Removed(r"\bSTOP\s+SLAVE\b", "STOP REPLICA", "https://dev.mysql.com/doc/refman/8.4/en/stop-replica.html",
            "STOP SLAVE IO_THREAD"),
    Removed(r"\bSHOW\s+SLAVE\s+STATUS\b", "SHOW REPLICA STATUS",
            "https://dev.mysql.com/doc/refman/8.4/en/show-replica-status.html", "SHOW SLAVE STATUS\\G"),
    Removed(r"\bSHOW\s+SLAVE\s+HOSTS\b", "SHOW REPLICAS", "https://dev.mysql.com/doc/refman/8.4/en/show-replicas.html",
            "SHOW SLAVE HOSTS"),
    Removed(r"\bRESET\s+SLAVE\b", "RESET REPLICA", "https://dev.mysql.com/doc/refman/8.4/en/reset-replica.html",
            "RESET SLAVE ALL"),
    Removed(r"\bCHANGE\s+MASTER\s+TO\b", "CHANGE REPLICATION SOURCE TO",
            "https://dev.mysql.com/doc/refman/8.4/en/change-replication-source-to.html",
            "CHANGE MASTER TO MASTER_HOST = 'mysql-0'"),
    Removed(r"\bRESET\s+MASTER\b", "RESET BINARY LOGS AND GTIDS",
            "https://dev.mysql.com/doc/refman/8.4/en/reset-binary-logs-and-gtids.html", "RESET MASTER;"),
    Removed(r"\bSHOW\s+MASTER\s+STATUS\b", "SHOW BINARY LOG STATUS",
            "https://dev.mysql.com/doc/refman/8.4/en/show-master-status.html", "SHOW MASTER STATUS"),
    Removed(r"\bSHOW\s+MASTER\s+LOGS\b", "SHOW BINARY LOGS", NUTSHELL, "SHOW MASTER LOGS"),
    Removed(r"\bPURGE\s+MASTER\s+LOGS\b", "PURGE BINARY LOGS", NUTSHELL, "PURGE MASTER LOGS TO 'mysql-bin.000002'"),
    # Statement options, removed in 8.4.0 (nutshell: "Statement options removed").
    Removed(r"\bGET_MASTER_PUBLIC_KEY\b", "GET_SOURCE_PUBLIC_KEY",
            "https://dev.mysql.com/doc/refman/8.4/en/change-replication-source-to.html", "GET_MASTER_PUBLIC_KEY = 1"),
    Removed(r"\bMASTER_(HOST|PORT|USER|PASSWORD|AUTO_POSITION|CONNECT_RETRY|RETRY_COUNT|HEARTBEAT_PERIOD|DELAY"
            r"|LOG_FILE|LOG_POS|BIND|SSL\w*|TLS_\w+|PUBLIC_KEY_PATH|COMPRESSION_ALGORITHMS|ZSTD_COMPRESSION_LEVEL)\b",
            "SOURCE_* (e.g. SOURCE_HOST, SOURCE_AUTO_POSITION)",
            "https://dev.mysql.com/doc/refman/8.4/en/change-replication-source-to.html", "MASTER_AUTO_POSITION = 1"),
    # Server options and variables removed in 8.4.0 (version reference, "Removed in version 8.4.0").
    Removed(r"\bdefault_authentication_plugin\b", "authentication_policy", OPTVARS,
            "default_authentication_plugin = mysql_native_password"),
    Removed(r"\bbinlog_transaction_dependency_tracking\b", "nothing (WRITESET is built in)", OPTVARS,
            "binlog_transaction_dependency_tracking = WRITESET"),
    Removed(r"\bexpire_logs_days\b", "binlog_expire_logs_seconds",
            "https://docs.percona.com/percona-server/8.4/8.4-compatibility-and-removed-items.html",
            "expire_logs_days = 7"),
    Removed(r"\bhave_(open)?ssl\b", "performance_schema.tls_channel_status", OPTVARS, "SELECT @@have_ssl"),
    Removed(r"\b(master|relay_log)_info_repository\b", "nothing (always TABLE)", NUTSHELL,
            "master_info_repository = TABLE"),
    Removed(r"\b(log_bin_use_v1_row_events|transaction_write_set_extraction|avoid_temporal_upgrade"
            r"|character_set_client_handshake)\b", "nothing", NUTSHELL, "transaction_write_set_extraction = XXHASH64"),
    # mysql_native_password is no longer loaded by default in 8.4: accounts default to caching_sha2_password.
    Removed(r"\bmysql_native_password\b", "caching_sha2_password (the default)",
            "https://dev.mysql.com/doc/refman/8.4/en/native-pluggable-authentication.html",
            "CREATE USER 'x'@'%' IDENTIFIED WITH mysql_native_password BY 'p'"),
    # Semi-sync: the source/replica plugins and their variables; the master/slave ones are the old plugins.
    Removed(r"\bsemisync_(master|slave)(\.so)?\b", "semisync_source.so / semisync_replica.so",
            "https://dev.mysql.com/doc/refman/8.4/en/replication-semisync-installation.html",
            "plugin_load_add = semisync_master.so"),
    Removed(r"\brpl_semi_sync_(master|slave)\w*", "rpl_semi_sync_source_* / rpl_semi_sync_replica_*",
            "https://dev.mysql.com/doc/refman/8.4/en/replication-semisync-interface.html",
            "SET GLOBAL rpl_semi_sync_master_enabled = ON"),
    # Replica options and variables renamed (old names deprecated since 8.0.26, see the
    # "Features Deprecated in MySQL 8.4" list and each variable's entry).
    Removed(r"\blog_slave_updates\b", "log_replica_updates",
            "https://dev.mysql.com/doc/refman/8.4/en/replication-options-binary-log.html", "log_slave_updates = ON"),
    Removed(r"\bskip_slave_start\b", "skip_replica_start",
            "https://dev.mysql.com/doc/refman/8.4/en/replication-options-replica.html", "skip-slave-start"),
    Removed(r"\bslave_\w+", "replica_* (e.g. replica_net_timeout)",
            "https://dev.mysql.com/doc/refman/8.4/en/replication-options-replica.html", "slave_net_timeout = 3"),
    # Tables removed in 8.0 (still absent in 8.4): the status and variable tables moved to performance_schema.
    Removed(r"\binformation_schema\s*\.\s*`?(global|session)_(status|variables)\b",
            "performance_schema.global_status (or SHOW GLOBAL STATUS)",
            "https://dev.mysql.com/doc/refman/8.4/en/performance-schema-status-variable-tables.html",
            "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS"),
    # The backup tool: percona-xtrabackup 8.4 follows the server's terminology
    # (--replica-info writes xtrabackup_replica_info with CHANGE REPLICATION SOURCE).
    Removed(r"--(safe-)?slave-(info|backup)", "--replica-info / --safe-replica-backup",
            "https://docs.percona.com/percona-xtrabackup/8.4/xtrabackup-option-reference.html",
            "xtrabackup --backup --slave-info"),
    # MariaDB-only names: on MySQL they are plain errors (a flavor split gone wrong).
    Removed(r"\bMASTER_USE_GTID\b|\bgtid_(slave|current|binlog)_pos\b|\bMASTER_GTID_WAIT\b",
            "SOURCE_AUTO_POSITION, gtid_executed, WAIT_FOR_EXECUTED_GTID_SET",
            "https://mariadb.com/kb/en/gtid/", "SET GLOBAL gtid_slave_pos = ''"),
    # Catch-all: any other identifier with a master/slave component (a SHOW REPLICA STATUS
    # column such as Seconds_Behind_Master reads as empty on 8.4; an option is refused).
    Removed(r"\b\w*_(master|slave)\b|\b(master|slave)_\w+", "the source/replica spelling",
            "https://dev.mysql.com/doc/refman/8.4/en/show-replica-status.html", "Seconds_Behind_Master"),
]
# Not in the table on purpose: the privilege is still named REPLICATION SLAVE in 8.4
# (https://dev.mysql.com/doc/refman/8.4/en/privileges-provided.html#priv_replication-slave),
# and binlog_format is deprecated (8.0.34), not removed.


def problems(items: list[tuple[str, str]]) -> list[str]:
    """One line per (where, text) item that matches an entry of REMOVED."""
    found = []
    for where, text in items:
        for entry in REMOVED:
            if entry.matches(text):
                found.append(f"{where}: {text.strip()!r} -> use {entry.use} ({entry.url})")
                break
    return found


# --- Python: the syntax tree with the MariaDB side of each flavor branch pruned ---

FLAVOR_NAMES = {"mysql", "mariadb"}


def _flavor_test(node: ast.AST) -> bool | None:
    """True: the test holds for MySQL; False: for MariaDB only; None: not a flavor test."""
    if not (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], (ast.Eq, ast.NotEq))):
        return None
    left, right = node.left, node.comparators[0]
    if isinstance(left, ast.Constant):
        left, right = right, left
    if not (isinstance(right, ast.Constant) and right.value in FLAVOR_NAMES):
        return None
    if not (isinstance(left, ast.Attribute) and left.attr == "name"):
        raise AssertionError(f"line {node.lineno}: unknown flavor comparison; teach the pruner")
    return (right.value == "mysql") == isinstance(node.ops[0], ast.Eq)


class _MysqlStrings(ast.NodeVisitor):
    """String constants a MySQL run can reach: docstrings skipped, the MariaDB branch of
    `x.name == "mysql"` tests dropped, and arguments bound to parameters named mariadb_*."""

    def __init__(self, tree: ast.Module) -> None:
        self.found: list[tuple[int, str]] = []
        self.mariadb_params: dict[str, list[str]] = {}
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.mariadb_params[node.name] = [a.arg for a in node.args.args]

    def _branch(self, node: ast.If | ast.IfExp) -> None:
        mysql = _flavor_test(node.test)
        if mysql is None:
            self.generic_visit(node)
            return
        for child in ([node.body] if mysql else [node.orelse]):
            for c in child if isinstance(child, list) else [child]:
                self.visit(c)

    visit_If = _branch
    visit_IfExp = _branch

    def visit_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return  # a docstring
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        _flavor_test(node)  # refuses a flavor comparison outside an if
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        params = self.mariadb_params.get(name or "", [])
        for i, arg in enumerate(node.args):
            if not (i < len(params) and params[i].startswith("mariadb")):
                self.visit(arg)
        for kw in node.keywords:
            if not (kw.arg or "").startswith("mariadb"):
                self.visit(kw.value)
        self.visit(node.func)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            self.found.append((node.lineno, node.value))


def _fold_early_returns(tree: ast.Module) -> None:
    """`if flavor.name == "mysql": ...; return` followed by more code: that code is the
    else branch. Move it there so the pruner sees the split."""
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if not isinstance(block, list):
                continue
            for i, stmt in enumerate(block):
                if (isinstance(stmt, ast.If) and not stmt.orelse and _flavor_test(stmt.test) is not None
                        and isinstance(stmt.body[-1], (ast.Return, ast.Raise)) and i + 1 < len(block)):
                    stmt.orelse = block[i + 1:]
                    del block[i + 1:]
                    break


def python_items(source: str, where: str) -> list[tuple[str, str]]:
    tree = ast.parse(source)
    _fold_early_returns(tree)
    visitor = _MysqlStrings(tree)
    visitor.visit(tree)
    return [(f"{where}:{line}", text) for line, text in visitor.found]


# --- shell: the pod scripts with their MariaDB branches pruned ---

_IF_FLAVOR = re.compile(r"^\s*if \[\[ \$FLAVOR == (mysql|mariadb) \]\]; then\s*$")
_ONE_LINE_IF = re.compile(r"if \[\[ \$FLAVOR == (mysql|mariadb) \]\]; then (.*?); else (.*?); fi")
_AND_FLAVOR = re.compile(r"^\s*\[\[ \$FLAVOR == (mysql|mariadb) \]\] && (.*)$")
_CASE_ARM = re.compile(r"^\s*(mysql|mariadb|\*)\) (.*);;\s*$")
_AWK_TERNARY = re.compile(r'\(flavor == "(mysql|mariadb)"\) \? (\S+) : (\S+)')
_HEREDOC = re.compile(r"<<-?'?([A-Za-z_]+)'?")
_FLAVOR_MENTION = re.compile(r"\$\{?FLAVOR\b|\bflavor ==")


def shell_items(text: str, where: str) -> list[tuple[str, str]]:
    """The lines (comments dropped) a MySQL pod runs, with the MariaDB side of every
    `$FLAVOR` branch removed. An unknown form of flavor branch fails loudly."""
    kept: list[tuple[str, str]] = []
    stack: list[list[Any]] = []  # [kind, keep_now, keep_then]; kind "flavor" or "if"
    heredoc: str | None = None
    in_case = False

    def keeping() -> bool:
        return all(frame[1] for frame in stack)

    for n, line in enumerate(text.splitlines(), 1):
        here = f"{where}:{n}"
        if heredoc is not None:
            if line.strip() == heredoc:
                heredoc = None
            elif keeping():
                kept.append((here, line))
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        line = re.sub(r"\s#\s.*$", "", line)
        if m := _HEREDOC.search(line.replace("<<<", "")):
            heredoc = m.group(1)
        if m := _IF_FLAVOR.match(line):
            stack.append(["flavor", m.group(1) == "mysql", m.group(1) == "mysql"])
            continue
        if re.match(r"^\s*if\s(?!\((?!\())", line) and not re.search(r"\bfi\s*;?\s*(\}\s*)?$", line):
            stack.append(["if", True, True])
        elif re.match(r"^\s*(else|elif)\b", line) and stack:
            if stack[-1][0] == "flavor":
                stack[-1][1] = not stack[-1][2]
                continue
        elif re.match(r"^\s*fi\b", line) and stack and stack.pop()[0] == "flavor":
            continue
        if not keeping():
            continue
        if re.match(r"^\s*case \$FLAVOR in\s*$", line):
            in_case = True
            continue
        if in_case:
            if re.match(r"^\s*esac\b", line):
                in_case = False
            elif m := _CASE_ARM.match(line):
                if m.group(1) != "mariadb":
                    kept.append((here, m.group(2)))
            else:
                raise AssertionError(f"{here}: a multi-line arm of `case $FLAVOR`; teach the pruner")
            continue
        if re.match(r"^\s*\w+_MARIADB=", line):
            assert line.count('"') == 2, f"{here}: a multi-line MariaDB-only assignment; teach the pruner"
            continue
        line = _ONE_LINE_IF.sub(lambda m: m.group(2) if m.group(1) == "mysql" else m.group(3), line)
        line = _AWK_TERNARY.sub(lambda m: m.group(2) if m.group(1) == "mysql" else m.group(3), line)
        if m := _AND_FLAVOR.match(line):
            if m.group(1) == "mariadb":
                continue
            line = m.group(2)
        if re.search(r"\$\{?FLAVOR\}?\"? *[!=]=|\bflavor *[!=]=", line):
            raise AssertionError(f"{here}: unknown form of flavor branch: {line.strip()!r}; teach the pruner")
        kept.append((here, line))
    assert not stack and heredoc is None, f"{where}: unbalanced if/fi or heredoc"
    return kept


# --- what the MySQL flavor emits ---

def flavor_items() -> list[tuple[str, str]]:
    items = []
    for f in fields(flavors.Flavor):
        value = getattr(flavors.MYSQL, f.name)
        if isinstance(value, str) and f.name != "name":
            items.append((f"flavors.MYSQL.{f.name}", value))
        elif isinstance(value, tuple):  # statements run in order
            items += [(f"flavors.MYSQL.{f.name}[{i}]", v) for i, v in enumerate(value) if isinstance(v, str)]
    return items


# SHOW REPLICA STATUS as MySQL 8.4 names its columns, plus what observe() selects.
ROW_84 = dict(ro=1, sro=1, gtid="3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5", Value="ON", v=1, origin="u", alone=1,
              Source_Host="mysql-0.mysql", Replica_IO_Running="Yes", Replica_SQL_Running="Yes",
              Seconds_Behind_Source=0, Retrieved_Gtid_Set="", Last_IO_Error="", Last_SQL_Error="", Last_IO_Errno=0)


class Recorder:
    """A pymysql connection stand-in that records every statement. A dict cursor answers
    with ROW_84; a plain one with two columns (0, 0), or a path for @@ssl_ca."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def cursor(self, kind=None):
        return _RecordingCursor(self, dict_rows=kind is not None)


class _RecordingCursor:
    def __init__(self, conn: Recorder, dict_rows: bool) -> None:
        self.conn, self.dict_rows = conn, dict_rows

    def __enter__(self):
        return self

    def __exit__(self, *_):
        return False

    def execute(self, sql: str, args=None) -> None:
        self.conn.statements.append(sql)
        self.last = sql

    def fetchone(self):
        if self.dict_rows:
            return ROW_84
        if "ssl_ca" in self.last:
            return ("/etc/mysql/tls/ca.pem",)
        return ("",) if "gtid_executed" in self.last else (0, 0)

    def fetchall(self) -> list:
        return []


def executed_by_actions() -> tuple[list[tuple[str, str]], observe.ServerState]:
    conn = Recorder()
    m = flavors.MYSQL
    actions.fence(conn, m, 1)
    actions.unfence(conn, m)
    actions.stop_receiving(conn, m)
    actions.wait_applied(conn, m, "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5", 1)
    for semi in (True, False):
        actions.become_source(conn, m, semi)
        actions.wait_alone(conn, m, semi)
        actions.replicate_from(conn, m, "mysql-0.mysql", 3306, "repl", "secret", semi)
    actions.write_probe(conn)
    actions.booted_at(conn, m)
    state = observe.observe(conn, m)
    return [("executed", sql) for sql in conn.statements], state


VALUE_SETS = {
    "default": [],
    "semi-sync-off": ["mysql.semiSync.enabled=false"],
    "one-pod": ["replicas=1"],
    "two-acks": ["replicas=5", "mysql.semiSync.waitForReplicaCount=2"],
    "controller-and-drills": ["controller.enabled=true", "drills.schedule=0 3 * * 1"],
}


def config_items(sets: list[str]) -> list[tuple[str, str]]:
    """The rendered my.cnf lines (options as `key = value`) and every other rendered
    object for flavor=mysql; the scripts in the ConfigMap are checked pruned, apart."""
    values = chart_values.load([], ["flavor=mysql", *sets])
    items = []
    for path, content in configmap_files(values).items():
        if path.startswith("config/"):
            items += [(f"{path}:{n}", line) for n, line in enumerate(content.splitlines(), 1)
                      if line.strip() and not line.lstrip().startswith("#")]
    # Any value will do for the secrets: the Secret's data is not SQL (and is skipped).
    for obj in render(values, defaultdict(lambda: "not-a-secret")):
        if obj["kind"] in ("ConfigMap", "Secret"):
            continue
        doc = to_yaml(obj)
        items += [(f"{obj['kind']}/{obj['metadata']['name']}:{n}", line)
                  for n, line in enumerate(doc.splitlines(), 1)]
    return items


# --- the tests ---

def test_the_mysql_flavor_definition():
    assert problems(flavor_items()) == []


@pytest.mark.parametrize("path", PY_SOURCES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_python_sql_reached_with_the_mysql_flavor(path):
    assert problems(python_items(path.read_text(), str(path.relative_to(ROOT)))) == []


def test_statements_the_mysql_actions_execute_and_the_columns_observe_reads():
    executed, state = executed_by_actions()
    assert problems(executed) == []
    sql = "\n".join(text for _, text in executed)
    for must in ("CHANGE REPLICATION SOURCE TO", "START REPLICA", "RESET REPLICA ALL", "STOP REPLICA IO_THREAD",
                 "WAIT_FOR_EXECUTED_GTID_SET", "SHOW REPLICA STATUS", "rpl_semi_sync_source_enabled"):
        assert must in sql
    # Every field came from an 8.4 column name: none reads as empty.
    assert (state.source_host, state.io_running, state.sql_running, state.lag) == ("mysql-0.mysql", "Yes", "Yes", 0)


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_rendered_configuration_for_flavor_mysql(name):
    items = config_items(VALUE_SETS[name])
    assert any("rpl_semi_sync_source_wait_point" in text for _, text in items)
    assert problems(items) == []


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_mysql_branches_of_the_pod_scripts(script):
    assert problems(shell_items(script.read_text(), f"scripts/{script.name}")) == []


def test_the_pruners_keep_the_mysql_side():
    """Pruning that dropped the MySQL side too would make every check above pass vacuously."""
    lib = "\n".join(t for _, t in shell_items((ROOT / "charts/mysql-sts/scripts/lib.sh").read_text(), "l"))
    init = "\n".join(t for _, t in shell_items((ROOT / "charts/mysql-sts/scripts/init-mysql.sh").read_text(), "i"))
    assert "SERVER_BIN=mysqld" in lib
    server = "\n".join(t for _, t in shell_items((ROOT / "charts/mysql-sts/scripts/server.sh").read_text(), "s"))
    assert "RESET BINARY LOGS AND GTIDS" in server and "gtid_slave_pos" not in server
    assert "--initialize-insecure" in init and "ALTER USER 'root'@'localhost'" in init
    actions_py = "\n".join(t for _, t in python_items((ROOT / "mysqlsts/mysql/actions.py").read_text(), "a"))
    assert "CHANGE REPLICATION SOURCE TO" in actions_py and "CHANGE MASTER TO" not in actions_py


# --- the check can fail ---

@pytest.mark.parametrize("entry", REMOVED, ids=lambda e: e.example)
def test_every_entry_catches_its_example(entry):
    assert problems([("example", entry.example)]) == [f"example: {entry.example!r} -> use {entry.use} ({entry.url})"]


@pytest.mark.parametrize("ok", [
    "START REPLICA", "SHOW REPLICA STATUS", "CHANGE REPLICATION SOURCE TO SOURCE_HOST = 'x', SOURCE_AUTO_POSITION = 1",
    "RESET BINARY LOGS AND GTIDS", "SHOW BINARY LOG STATUS", "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'",
    "log_replica_updates = ON", "plugin_load_add = semisync_source.so", "SELECT @@GLOBAL.gtid_executed",
    "SHOW GLOBAL STATUS LIKE 'Uptime'", "xtrabackup --backup --stream=xbstream",
])
def test_what_mysql_84_accepts_passes(ok):
    assert problems([("ok", ok)]) == []


BAD_SCRIPT = """\
#!/usr/bin/env bash
if [[ $FLAVOR == mysql ]]; then
  sql_local -e "SHOW SLAVE STATUS"
else
  sql_local -e "SHOW SLAVE STATUS"
fi
[[ $FLAVOR == mysql ]] && extra+=(--slave-info)
"""


def test_a_known_bad_statement_in_a_mysql_branch_is_caught_and_the_mariadb_branch_is_not():
    found = problems(shell_items(BAD_SCRIPT, "bad.sh"))
    assert [f.split(":")[1] for f in found] == ["3", "7"], found


def test_a_known_bad_statement_in_python_is_caught_only_on_the_mysql_side():
    source = ('def f(conn, flavor):\n'
              '    execute(conn, "STOP REPLICA" if flavor.name == "mariadb" else "CHANGE MASTER TO MASTER_HOST = %s")\n'
              '    if flavor.name != "mysql":\n'
              '        execute(conn, "RESET MASTER")\n')
    found = problems(python_items(source, "bad.py"))
    assert len(found) == 1 and "CHANGE REPLICATION SOURCE TO" in found[0]


def test_a_known_bad_option_in_the_rendered_config_is_caught():
    items = config_items(["mysql.extraConfig=log_slave_updates = ON\nexpire_logs_days = 7"])
    found = problems(items)
    assert len(found) == 2 and "log_replica_updates" in found[0] and "binlog_expire_logs_seconds" in found[1]


def test_an_unknown_flavor_branch_is_refused():
    with pytest.raises(AssertionError, match="teach the pruner"):
        shell_items('x=1\n[[ "$FLAVOR" != mariadb ]] && echo "SHOW SLAVE STATUS"\n', "odd.sh")
    with pytest.raises(AssertionError, match="teach the pruner"):
        python_items('def f(kind):\n    return "a" if kind == "mysql" else "b"\n', "odd.py")

