"""GTID arithmetic and failover decisions, exhaustively and without servers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mysqlsts.decisions.failover import (
    Node,
    elect,
    errant,
    primary_lost,
    repoint_order,
    silent_owners,
    switchover_candidate,
)
from mysqlsts.decisions.gtid import GtidError, MariadbGtidPos, MysqlGtidSet, parse

U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
U2 = "4f22ab58-82db-22f2-8f44-d91bb0530673"
U3 = "5a33bc69-93ec-33a3-9a55-ea2cc1641784"

# -- MySQL GTID sets -----------------------------------------------------------------------

uuids = st.sampled_from([U1, U2, U3])
intervals = st.tuples(st.integers(1, 60), st.integers(0, 8)).map(lambda t: (t[0], t[0] + t[1]))
mysql_sets = st.lists(st.tuples(uuids, intervals), max_size=6).map(
    lambda parts: MysqlGtidSet.parse(",".join(f"{u}:{a}-{b}" for u, (a, b) in parts)))


def members(s: MysqlGtidSet) -> set[tuple[str, int]]:
    return {(u, n) for u, iv in s.sets.items() for a, b in iv for n in range(a, b + 1)}


@given(mysql_sets, mysql_sets)
def test_mysql_set_operations_match_plain_sets(a, b):
    assert members(a.union(b)) == members(a) | members(b)
    assert members(a.minus(b)) == members(a) - members(b)
    assert a.contains(b) == (members(b) <= members(a))
    assert a.count() == len(members(a))
    assert members(MysqlGtidSet.parse(str(a))) == members(a)  # round trip through the server's text form


def test_mysql_parse_and_format():
    s = MysqlGtidSet.parse(f"{U1.upper()}:1-5:7,\n{U2}:3")
    assert str(s) == f"{U1}:1-5:7,{U2}:3"
    assert s.contains(MysqlGtidSet.parse(f"{U1}:2-4")) and not s.contains(MysqlGtidSet.parse(f"{U1}:6"))
    assert str(s.originated_by(U2)) == f"{U2}:3"
    assert not MysqlGtidSet.parse("") and MysqlGtidSet.parse("").contains(MysqlGtidSet.parse(""))
    with pytest.raises(GtidError):
        MysqlGtidSet.parse("not-a-gtid")


# -- MariaDB GTID positions ------------------------------------------------------------------

positions = st.dictionaries(st.integers(0, 2), st.tuples(st.sampled_from([100, 101, 102]), st.integers(0, 20)),
                            max_size=3).map(MariadbGtidPos)


@given(positions, positions)
def test_mariadb_positions_contain_what_they_are_at_or_past(a, b):
    diverged = any(d in b.domains and b.domains[d][1] == seq and b.domains[d][0] != server and seq
                   for d, (server, seq) in a.domains.items())
    if not diverged:  # histories that split at one sequence number have no common continuation
        assert a.union(b).contains(a) and a.union(b).contains(b)
        assert b.minus(a.union(b)).count() == 0
    else:
        assert not a.contains(b) and not b.contains(a)
    assert a.contains(a)
    if a.contains(b) and b.contains(a):
        assert {d: v for d, v in a.domains.items() if v[1]} == {d: v for d, v in b.domains.items() if v[1]}


def test_mariadb_divergence_at_the_same_sequence_number_is_not_containment():
    primary = MariadbGtidPos.parse("0-100-50")
    assert primary.contains(MariadbGtidPos.parse("0-100-49"))
    assert not primary.contains(MariadbGtidPos.parse("0-101-50"))  # same seq, other server: diverged
    assert not primary.contains(MariadbGtidPos.parse("0-100-51,1-100-1"))
    assert str(MariadbGtidPos.parse("0-101-51").originated_by("101")) == "0-101-51"
    assert str(parse("mariadb", "1-100-3,0-100-5")) == "0-100-5,1-100-3"



@given(positions, positions)
def test_a_mariadb_position_named_with_another_reads_as_their_union(a, b):
    """What a server holds is read as its binlog's position beside its replication position."""
    assert str(parse("mariadb", f"{a},{b}")) == str(a.union(b))
    assert str(parse("mariadb", "0-100-47,0-100-46")) == str(parse("mariadb", "0-100-46,0-100-47")) == "0-100-47"


# -- decisions ----------------------------------------------------------------------------------

def node(name, executed, retrieved=None, **kw) -> Node:
    flavor = "mysql" if ":" in (executed or "") else "mariadb"
    return Node(name=name, reachable=kw.pop("reachable", True), executed=parse(flavor, executed),
                retrieved=parse(flavor, retrieved) if retrieved is not None else None, **kw)


def test_a_replica_with_its_own_stray_writes_is_errant_and_never_elected():
    nodes = [node("mysql-1", f"{U1}:1-10,{U2}:1-2", origin=U2, source="mysql-0"),
             node("mysql-2", f"{U1}:1-10", origin=U3, source="mysql-0")]
    assert str(errant(nodes[0], nodes)) == f"{U2}:1-2"
    assert errant(nodes[1], nodes) is None
    result = elect(nodes)
    assert result.candidate == "mysql-2" and "errant" in result.excluded["mysql-1"]
    assert result.lost == {}  # the stray writes are not counted as lost: they were never acknowledged


def test_the_most_advanced_replica_counting_its_relay_log_is_elected_and_nothing_is_lost():
    nodes = [node("mysql-0", None, reachable=False),
             node("mysql-1", "0-100-40", retrieved="0-100-42", origin="101", source="mysql-0"),
             node("mysql-2", "0-100-41", origin="102", source="mysql-0")]
    result = elect(nodes)
    assert result.candidate == "mysql-1" and result.safe
    assert result.excluded == {"mysql-0": "does not answer"}


def test_among_replicas_holding_as_much_the_one_that_applied_the_most_is_elected():
    """Both received everything; one still has thousands of transactions to apply (it rejoined a moment
    ago): promoting it would add their apply time to the outage."""
    nodes = [node("mysql-0", None, reachable=False),
             node("mysql-1", "0-100-31000", retrieved="0-100-42000", origin="101", source="mysql-0"),
             node("mysql-2", "0-100-41990", retrieved="0-100-42000", origin="102", source="mysql-0")]
    assert elect(nodes).candidate == "mysql-2"
    assert elect(nodes, avoid="mysql-2").candidate == "mysql-1"  # a primary back from a crash still loses ties
    mysql = [node("mysql-1", f"{U1}:1-100", retrieved=f"{U1}:1-500", origin=U2, source="mysql-0", io_running=True),
             node("mysql-2", f"{U1}:1-480", retrieved=f"{U1}:1-500", origin=U3, source="mysql-0", io_running=True)]
    assert elect(mysql).candidate == "mysql-2"
    assert switchover_candidate([node("mysql-0", f"{U1}:1-500", origin=U1), *mysql], "mysql-0").candidate == "mysql-2"


def test_replicas_ahead_of_a_primary_back_from_a_crash_are_not_diverged_when_it_refuses_them():
    """MariaDB commits in the engine after the binlog; a primary killed before that commit was durable,
    restarted as a replica (init_rpl_role), cuts the transaction from its binlog although a replica
    acknowledged it. The replicas reconnect to it and are refused (error 1236): they are ahead, not
    diverged, and one of them is elected; a refusal by a source that holds more stays divergence."""
    back = node("mysql-0", "0-100-24", origin="100", owns_data=True)
    ahead = [node(f"mysql-{i}", "0-100-25", origin=f"10{i}", source="mysql-0", diverged=True) for i in (1, 2)]
    result = elect([back, *ahead], avoid=None)
    assert result.candidate == "mysql-1" and result.safe and result.excluded == {}
    from mysqlsts.decisions.cluster import decide
    assert decide([back, *ahead], "mysql-0").action.value == "failover"  # never a quarantine of the replicas
    mixed = [node("mysql-0", "0-100-25", origin="100"),  # a source that is not behind: a real divergence
             node("mysql-1", "0-101-25", origin="101", source="mysql-0", diverged=True)]
    assert "diverged" in elect(mixed).excluded["mysql-1"]
    writable = [node("mysql-0", "0-100-24", origin="100", writable=True),  # a promoted source refusing: diverged
                node("mysql-1", "0-100-25", origin="101", source="mysql-0", diverged=True)]
    assert decide(writable, "mysql-0").action.value == "quarantine"


def test_forcing_a_lagging_candidate_reports_exactly_what_is_lost():
    nodes = [node("mysql-1", f"{U1}:1-20", origin=U2), node("mysql-2", f"{U1}:1-17", origin=U3)]
    result = elect(nodes, to="mysql-2")
    assert result.candidate == "mysql-2" and not result.safe
    assert result.lost == {"mysql-1": f"{U1}:18-20"}


def test_lagging_and_quarantined_nodes_are_excluded_with_their_reason():
    nodes = [node("mysql-1", "0-100-9", origin="101", lag=120), node("mysql-2", "0-100-9", origin="102",
                                                                   quarantined=True)]
    result = elect(nodes, max_lag=10)
    assert result.candidate is None
    assert result.excluded == {"mysql-1": "lags 120s (limit 10s)", "mysql-2": "quarantined"}
    assert "cannot be promoted: quarantined" in elect(nodes, to="mysql-2").reason


def test_a_restarted_primary_holding_everything_is_promoted_back():
    nodes = [node("mysql-0", "0-100-30", origin="100"),
             node("mysql-1", "0-100-30", origin="101", source="mysql-0"),
             node("mysql-2", "0-100-29", origin="102", source="mysql-0")]
    assert elect(nodes).candidate == "mysql-0"


def test_a_crashed_primary_with_an_unacknowledged_tail_is_errant_and_a_replica_takes_over():
    nodes = [node("mysql-0", "0-100-31", origin="100"),
             node("mysql-1", "0-100-30", origin="101", source="mysql-0"),
             node("mysql-2", "0-100-30", origin="102", source="mysql-0")]
    result = elect(nodes)
    assert result.candidate == "mysql-1" and result.safe
    assert "errant" in result.excluded["mysql-0"]


def test_the_recorded_primary_back_from_a_crash_keeps_what_it_alone_holds():
    """No failover moved the role since it wrote its tail: the replicas' copies may have gone in their
    own crash recovery (MariaDB cuts a booting replica's binlog tail), so the tail is history, not
    errant. The same tail on a node that is not the recorded primary is errant."""
    nodes = [node("mysql-0", "0-100-45", origin="100", owns_data=True),
             node("mysql-1", "0-100-44", origin="101", source="mysql-0"),
             node("mysql-2", "0-100-44", origin="102", source="mysql-0")]
    for avoid in (None, "mysql-0"):  # recovery, and the controller's failover of a fenced primary
        result = elect(nodes, avoid=avoid, primary="mysql-0")
        assert result.candidate == "mysql-0" and result.safe and result.excluded == {}
    moved = elect(nodes, avoid="mysql-0", primary="mysql-1")  # mysql-1 took over meanwhile
    assert moved.candidate == "mysql-1" and "errant" in moved.excluded["mysql-0"]
    assert moved.errant == frozenset({"mysql-0"}) and moved.lost == {}


@pytest.mark.parametrize("case, expected", [
    ("writable", False), ("unreachable-replicas-connected", False), ("unreachable-replicas-lost-it", True),
    ("fenced-after-restart", True), ("everyone-down", False),
])
def test_the_primary_is_declared_lost_only_when_the_replicas_confirm(case, expected):
    p = {"writable": node("mysql-0", "0-100-1", writable=True),
         "unreachable-replicas-connected": node("mysql-0", None, reachable=False),
         "unreachable-replicas-lost-it": node("mysql-0", None, reachable=False),
         "fenced-after-restart": node("mysql-0", "0-100-1"),
         "everyone-down": node("mysql-0", None, reachable=False)}[case]
    connected = case == "unreachable-replicas-connected"
    replicas = [node(f"mysql-{i}", "0-100-1", source="mysql-0", io_running=connected,
                     reachable=case != "everyone-down") for i in (1, 2)]
    verdict = primary_lost([p, *replicas], "mysql-0")
    assert verdict.act is expected, verdict.reason
    assert verdict.reason


def test_one_replica_still_connected_is_enough_to_wait():
    nodes = [node("mysql-0", None, reachable=False),
             node("mysql-1", "0-100-1", source="mysql-0", io_running=True),
             node("mysql-2", "0-100-1", source="mysql-0", io_running=False)]
    verdict = primary_lost(nodes, "mysql-0")
    assert not verdict.act and "mysql-1 still receive" in verdict.reason


def test_after_a_full_restart_a_stale_node_that_answers_first_is_not_elected_while_others_with_data_are_silent():
    """Pods 1 and 2 hold writes pod 0 never got; pod 0 starts first. Electing it would lose them."""
    nodes = [node("mysql-0", "0-100-5", owns_data=True),
             node("mysql-1", None, reachable=False, owns_data=True),
             node("mysql-2", None, reachable=False, owns_data=True)]
    assert silent_owners(nodes, "mysql-1") == ["mysql-2"]
    verdict = primary_lost(nodes, "mysql-1")
    assert not verdict.act
    assert verdict.reason.startswith("mysql-2 holds data but does not answer: no election")
    nodes[2] = node("mysql-2", "0-100-9", owns_data=True)  # it answers: now the election may run, and picks it
    assert primary_lost(nodes, "mysql-1").act
    assert elect(nodes).candidate == "mysql-2"


@pytest.mark.parametrize(("silent", "waits"), [
    ({"owns_data": True}, True),  # may hold acknowledged writes no one else has
    ({"owns_data": False}, False),  # never got data (a pod still cloning): nothing to lose
    ({"owns_data": True, "quarantined": True}, False),  # errant: out of elections anyway
])
def test_only_a_silent_replica_that_holds_data_holds_up_a_failover(silent, waits):
    nodes = [node("mysql-0", None, reachable=False, owns_data=True),  # the lost primary itself never does
             node("mysql-1", None, reachable=False, **silent),
             node("mysql-2", "0-100-9", source="mysql-0", owns_data=True)]
    verdict = primary_lost(nodes, "mysql-0")
    assert verdict.act is not waits, verdict.reason
    assert ("mysql-1 holds data but does not answer" in verdict.reason) is waits


@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()), min_size=1, max_size=5),
       st.integers(0, 4))
def test_no_failover_is_ever_decided_while_a_node_with_data_other_than_the_primary_is_silent(shapes, p):
    nodes = [node(f"mysql-{i}", "0-100-3" if up else None, reachable=up, owns_data=data, quarantined=q,
                  source=None if i == p else f"mysql-{p}", io_running=io)
             for i, (up, data, q, io) in enumerate(shapes)]
    primary = f"mysql-{p}"
    if primary_lost(nodes, primary).act:
        assert all(n.reachable or not n.owns_data or n.quarantined or n.name == primary for n in nodes)


def test_a_switchover_picks_the_replica_with_least_left_to_apply_even_if_another_received_more():
    """Under load one replica acknowledged the newest commits but rejoined a moment ago and is thousands
    behind; the primary answers, so whoever takes over receives the rest from it first: only the
    applying is outage. A failover (the primary gone) must still take the one holding the most."""
    nodes = [node("mysql-0", "0-100-42010", writable=True),
             node("mysql-1", "0-100-31000", retrieved="0-100-42010", origin="101", source="mysql-0", io_running=True),
             node("mysql-2", "0-100-42000", retrieved="0-100-42000", origin="102", source="mysql-0", io_running=True)]
    result = switchover_candidate(nodes, "mysql-0")
    assert result.candidate == "mysql-2" and result.reason == "mysql-2 has the least left to apply"
    assert result.lost == {}
    lost_primary = [node("mysql-0", None, reachable=False), *nodes[1:]]
    assert elect(lost_primary).candidate == "mysql-1"


def test_switchover_picks_a_caught_up_replica_of_the_primary():
    nodes = [node("mysql-0", "0-100-9", writable=True),
             node("mysql-1", "0-100-8", source="mysql-0", io_running=True),
             node("mysql-2", "0-100-9", source="mysql-0", io_running=True),
             node("mysql-3", "0-100-9", source=None)]
    result = switchover_candidate(nodes, "mysql-0")
    assert result.candidate == "mysql-2"
    assert result.excluded["mysql-3"] == "not replicating from the primary"
    assert switchover_candidate(nodes, "mysql-0", to="mysql-1").candidate == "mysql-1"
    assert switchover_candidate(nodes, "mysql-0", to="mysql-0").candidate is None
    assert "cannot take over" in switchover_candidate(nodes, "mysql-0", to="mysql-3").reason


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 5), st.booleans()), min_size=1, max_size=5))
def test_an_elected_candidate_loses_nothing_unless_the_election_says_so(specs):
    nodes = [node(f"mysql-{i}", f"0-100-{e}", retrieved=f"0-100-{e + r}", origin=str(200 + i), reachable=up)
             for i, (e, r, up) in enumerate(specs)]
    result = elect(nodes)
    if result.candidate is None:
        assert not any(n.reachable for n in nodes)
        return
    chosen = next(n for n in nodes if n.name == result.candidate)
    for n in nodes:
        if n.reachable:
            assert chosen.known.contains(n.known) or n.name in result.lost


def test_rto_runs_from_the_old_primarys_last_ack_to_the_first_ack_elsewhere():
    from mysqlsts.decisions.drill import Ack, rto, verdict

    acks = [Ack(1, 9.0, "mysql-0"), Ack(2, 10.05, "mysql-0"),  # in flight at the fault, acknowledged after it
            Ack(3, 12.5, "mysql-1"), Ack(4, 12.6, "mysql-1")]
    assert rto(acks, 10.0, "mysql-0") == pytest.approx(2.45)
    assert rto(acks[:2], 10.0, "mysql-0") is None  # writes never resumed elsewhere
    assert verdict(2.45, 0, 0, True, max_rto=3, max_lost=0).passed
    failed = verdict(None, 3, 1, False, max_rto=3, max_lost=0)
    assert not failed.passed and len(failed.reasons) == 4


def test_a_node_acknowledging_after_another_took_writes_over_is_split_brain_as_clients_see_it():
    from mysqlsts.decisions.drill import Ack, acks_after_handover, verdict

    handover = [Ack(1, 1.0, "mysql-0"), Ack(1_000_000_001, 1.1, "mysql-0"), Ack(2, 4.0, "mysql-1"),
                Ack(3, 4.1, "mysql-1")]
    assert acks_after_handover(handover) == []  # one node after the other, whichever client wrote
    isolated = [*handover, Ack(1_000_000_002, 4.05, "mysql-0")]  # the isolated side acknowledged one meanwhile
    assert acks_after_handover(isolated) == [Ack(1_000_000_002, 4.05, "mysql-0")]
    assert acks_after_handover(list(reversed(isolated))) == [Ack(1_000_000_002, 4.05, "mysql-0")]  # by time
    failed = verdict(1.0, 0, 0, True, max_rto=3, max_lost=0, split_brain_acks=1)
    assert not failed.passed and failed.reasons == ["1 write(s) acknowledged by a node after another had taken "
                                                    "writes over"]


@given(st.lists(st.tuples(st.floats(0, 100), st.sampled_from(["mysql-0", "mysql-1", "mysql-2"])), max_size=30))
def test_acks_in_runs_one_node_after_another_are_never_split_brain(specs):
    from mysqlsts.decisions.drill import Ack, acks_after_handover

    acks = [Ack(i, at, by) for i, (at, by) in enumerate(specs)]
    order = sorted(acks, key=lambda a: a.at)
    runs = [a.by for i, a in enumerate(order) if i == 0 or order[i - 1].by != a.by]
    assert (acks_after_handover(acks) == []) == (len(runs) == len(set(runs)))


def test_a_lost_primary_back_from_a_crash_is_promoted_again_only_when_no_replica_holds_as_much():
    back = node("mysql-0", "0-100-9", owns_data=True)  # restarted, fenced, lost nothing
    replicas = [node(f"mysql-{i}", "0-100-9", source="mysql-0") for i in (1, 2)]
    assert elect([back, *replicas]).candidate == "mysql-0"  # recovery after restarts: no repointing
    assert elect([back, *replicas], avoid="mysql-0").candidate == "mysql-1"  # failover: move on
    behind = [node(f"mysql-{i}", "0-100-7", source="mysql-0") for i in (1, 2)]
    assert elect([back, *behind], avoid="mysql-0").candidate == "mysql-0"  # the only one holding everything


@pytest.mark.parametrize(("replicas", "old", "acks", "first", "last"), [
    (["m-1", "m-2"], "m-0", 1, ["m-1", "m-2"], []),  # a failover: no old primary to repoint
    (["m-0", "m-2"], "m-0", 1, ["m-2"], ["m-0"]),  # a switchover: the old primary after the writes resume
    (["m-0", "m-2"], "m-0", 0, ["m-2"], ["m-0"]),  # semi-sync off
    (["m-0"], "m-0", 1, ["m-0"], []),  # two pods: its acknowledgement is the one the first commit needs
    (["m-0"], "m-0", 0, [], ["m-0"]),  # two pods, semi-sync off: nobody needs it first
    (["m-0", "m-2", "m-3"], "m-0", 2, ["m-2", "m-3"], ["m-0"]),
    (["m-0", "m-2"], "m-0", 2, ["m-0", "m-2"], []),  # two acknowledgements from two replicas: both first
    (["m-2"], None, 1, ["m-2"], []),
])
def test_a_switchovers_old_primary_follows_after_the_writes_resume_unless_its_ack_is_needed(
        replicas, old, acks, first, last):
    assert repoint_order(replicas, old, acks) == (first, last)
