"""Which binary logs a pod may purge (decisions/binlogs.py), without servers: never what a peer
still lacks, never while a peer is silent, never before the retention."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mysqlsts.decisions.binlogs import Binlog, purge_to
from mysqlsts.decisions.gtid import MariadbGtidPos, MysqlGtidSet

P = MariadbGtidPos.parse
U = "3e11fa47-71ca-11e1-9e33-c80aa9429562"


def logs(*starts: int, idle: float = 3600) -> list[Binlog]:
    """Binary logs whose first transactions follow 0-100-<start>, the last one active."""
    return [Binlog(f"mysql-bin.{i + 1:06d}", idle, P(f"0-100-{s}") if s else P("")) for i, s in enumerate(starts)]


def test_a_log_goes_once_every_peer_holds_it():
    assert purge_to(logs(0, 10, 20, 30), {"a": P("0-100-30"), "b": P("0-100-35")}, 60) == (
        "mysql-bin.000004", "all but the active binary log go")


def test_a_lagging_peer_keeps_the_log_it_still_needs_and_every_later_one():
    keep, why = purge_to(logs(0, 10, 20, 30), {"a": P("0-100-30"), "lagging": P("0-100-15")}, 60)
    assert keep == "mysql-bin.000002" and why == "lagging lacks some of mysql-bin.000002"


def test_nothing_goes_while_a_peer_does_not_answer():
    assert purge_to(logs(0, 10, 20), {"a": P("0-100-20"), "cloning": None}, 60) == (None, "cloning does not answer")


def test_nothing_goes_before_the_retention():
    keep, why = purge_to(logs(0, 10, 20, idle=59), {"a": P("0-100-20")}, 60)
    assert keep is None and "within the retention (60s)" in why


def test_a_log_whose_predecessors_are_unknown_stops_the_purge():
    unread = [*logs(0, 10), Binlog("mysql-bin.000003", 3600, None)]
    assert purge_to(unread, {"a": P("0-100-40")}, 0)[0] == "mysql-bin.000002"


def test_mysql_sets_too():
    m = MysqlGtidSet.parse
    binlogs = [Binlog("b.1", 99, m("")), Binlog("b.2", 99, m(f"{U}:1-10")), Binlog("b.3", 99, m(f"{U}:1-20"))]
    assert purge_to(binlogs, {"a": m(f"{U}:1-20")}, 0)[0] == "b.3"
    assert purge_to(binlogs, {"a": m(f"{U}:1-9,{U}:11-20")}, 0)[0] is None  # a gap: it lacks 10


@given(st.lists(st.integers(0, 50), min_size=1, max_size=6).map(sorted),
       st.dictionaries(st.sampled_from(["a", "b", "c"]), st.none() | st.integers(0, 60), max_size=3),
       st.floats(0, 100), st.floats(0, 100))
def test_never_purges_what_a_peer_lacks(starts, held, idle, retention):
    binlogs = logs(*starts, idle=idle)
    peers = {k: None if v is None else P(f"0-100-{v}") for k, v in held.items()}
    keep, why = purge_to(binlogs, peers, retention)
    assert why
    if keep is None:
        return
    names = [b.name for b in binlogs]
    assert keep in names[1:]  # the active log is never purged
    assert all(v is not None for v in peers.values()) and idle >= retention
    kept_from = names.index(keep)
    for peer in peers.values():  # everything logged before the first kept log, every peer holds
        assert peer.contains(binlogs[kept_from].preceded_by)
