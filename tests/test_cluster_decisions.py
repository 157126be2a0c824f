"""The controller's one decision step (decisions/cluster.py), table-driven and without servers:
observed nodes + recorded primary + what the controller remembers -> a named state and one action."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mysqlsts.decisions.cluster import Action, Memory, State, decide
from mysqlsts.decisions.failover import Node, short_of
from mysqlsts.decisions.gtid import MariadbGtidPos

P = MariadbGtidPos.parse


def primary(name="mysql-0", gtid="0-100-10", **kw) -> Node:
    return Node(name, True, writable=True, executed=P(gtid), origin="100", owns_data=True, **kw)


def replica(name, gtid="0-100-10", source="mysql-0", io=True, **kw) -> Node:
    return Node(name, True, executed=P(gtid), origin=str(100 + int(name[-1])), source=source, io_running=io,
                owns_data=True, **kw)


def down(name, owns_data=True) -> Node:
    return Node(name, False, owns_data=owns_data)


HEALTHY = [primary(), replica("mysql-1"), replica("mysql-2")]
STRAY = [primary(), replica("mysql-1", source=None, io=False), replica("mysql-2")]
ERRANT_STRAY = [primary(), replica("mysql-1", gtid="0-101-11", source=None, io=False), replica("mysql-2")]

CASES = {
    # name: (nodes, recorded, memory, stale labels, autoReclone) -> (state, action, pod, reason contains)
    "healthy": (HEALTHY, "mysql-0", Memory(), (), False, State.HEALTHY, Action.NONE, None, "mysql-0 is the primary"),
    "two writable, recorded kept": ([primary(), primary("mysql-1"), replica("mysql-2")], "mysql-0", Memory(), (),
                                    False, State.SPLIT_BRAIN, Action.FENCE, "mysql-1", "besides the recorded"),
    "two writable, none recorded": ([primary(), primary("mysql-1"), replica("mysql-2")], "mysql-2", Memory(), (),
                                    False, State.SPLIT_BRAIN, Action.WAIT, None, "fencing none"),
    "dead primary": ([down("mysql-0"), replica("mysql-1", io=False), replica("mysql-2", io=False)], "mysql-0",
                     Memory(), (), False, State.PRIMARY_LOST, Action.FAILOVER, None, "no replica receives"),
    "dead primary, blocked": ([down("mysql-0"), replica("mysql-1", io=False), replica("mysql-2", io=False)],
                              "mysql-0", Memory(blocked_for=42), (), False, State.PRIMARY_LOST, Action.BLOCKED,
                              None, "blocked for another 42s"),
    "primary unreachable here, replicas still receive": (
        [down("mysql-0"), replica("mysql-1"), replica("mysql-2", io=False)], "mysql-0", Memory(), (), False,
        State.NO_PRIMARY, Action.WAIT, None, "still receive"),
    "restarted primary, fenced": ([replica("mysql-0", source=None, io=False), replica("mysql-1", io=False),
                                   replica("mysql-2", io=False)], "mysql-0", Memory(), (), False,
                                  State.PRIMARY_LOST, Action.FAILOVER, None, "answers but is fenced"),
    "silent data owner blocks election": ([down("mysql-0"), down("mysql-1"), replica("mysql-2", io=False)],
                                          "mysql-0", Memory(), (), False, State.NO_PRIMARY, Action.WAIT, None,
                                          "mysql-1 holds data but does not answer"),
    "diverged replica": ([primary(), replica("mysql-1", io=False, diverged=True), replica("mysql-2")], "mysql-0",
                         Memory(), (), False, State.DEGRADED, Action.QUARANTINE, "mysql-1", "error 1236"),
    "failover comes before quarantining a diverged node": (
        [down("mysql-0"), replica("mysql-1", io=False, diverged=True), replica("mysql-2", io=False)], "mysql-0",
        Memory(), (), False, State.PRIMARY_LOST, Action.FAILOVER, None, "does not answer"),
    "stray, first look": (STRAY, "mysql-0", Memory(), (), False, State.HEALTHY, Action.NONE, None, ""),
    "stray, second look": (STRAY, "mysql-0", Memory(strays=frozenset({"mysql-1"})), (), False, State.DEGRADED,
                           Action.REJOIN, "mysql-1", "following no one"),
    "stray following the wrong node": ([primary(), replica("mysql-1", source="mysql-2"), replica("mysql-2")],
                                       "mysql-0", Memory(strays=frozenset({"mysql-1"})), (), False,
                                       State.DEGRADED, Action.REJOIN, "mysql-1", "following mysql-2"),
    "errant stray": (ERRANT_STRAY, "mysql-0", Memory(strays=frozenset({"mysql-1"})), (), False, State.DEGRADED,
                     Action.QUARANTINE, "mysql-1", "holds 0-101-11 that mysql-0 lacks"),
    "stale labels before strays": (STRAY, "mysql-0", Memory(strays=frozenset({"mysql-1"})), ("mysql-2",), False,
                                   State.DEGRADED, Action.PUBLISH, "mysql-2", "role labels"),
    "quarantined, autoReclone on": ([primary(), replica("mysql-1", quarantined=True), replica("mysql-2")],
                                    "mysql-0", Memory(), (), True, State.DEGRADED, Action.RECLONE, "mysql-1",
                                    "autoReclone"),
    "quarantined, autoReclone off": ([primary(), replica("mysql-1", quarantined=True), replica("mysql-2")],
                                     "mysql-0", Memory(), (), False, State.HEALTHY, Action.NONE, None, ""),
    "writable but not recorded": ([primary("mysql-1"), replica("mysql-0", source="mysql-1"),
                                   replica("mysql-2", source="mysql-1")], "mysql-0", Memory(), ("mysql-1",), False,
                                  State.UNRECORDED_PRIMARY, Action.RECORD, "mysql-1", "recorded primary is mysql-0"),
    # An empty pod initialized over the cluster's data (server_id 100 again: pod 0) must never be recorded,
    # nor the nodes holding the data quarantined and recloned from it.
    "writable but short of the data": ([primary("mysql-0", gtid="0-100-2"), replica("mysql-1", gtid="0-100-50",
                                                                                     source=None, io=False),
                                        replica("mysql-2", gtid="0-100-50", source=None, io=False)], "mysql-1",
                                       Memory(), (), False, State.UNRECORDED_PRIMARY, Action.WAIT, "mysql-0",
                                       "lacks 0-100-50 that mysql-1 holds"),
    "stray the primary is short of": ([primary(gtid="0-100-2"), replica("mysql-1", gtid="0-100-50", source=None,
                                                                        io=False), replica("mysql-2", gtid="0-100-2")],
                                      "mysql-0", Memory(strays=frozenset({"mysql-1"})), (), True, State.DEGRADED,
                                      Action.WAIT, "mysql-1", "not quarantining mysql-1"),
    "quarantined, autoReclone on, primary short of it": (
        [primary(gtid="0-100-2"), replica("mysql-1", gtid="0-100-50", quarantined=True), replica("mysql-2",
                                                                                                 gtid="0-100-2")],
        "mysql-0", Memory(), (), True, State.DEGRADED, Action.WAIT, "mysql-1", "not recloning it from mysql-0"),
    "nothing answers": ([down("mysql-0", owns_data=False), down("mysql-1", owns_data=False)], "mysql-0", Memory(),
                        (), False, State.NO_PRIMARY, Action.WAIT, None, "neither does any replica"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_decide(case):
    nodes, recorded, memory, stale, reclone, state, action, pod, reason = CASES[case]
    d = decide(nodes, recorded, memory, stale, reclone)
    assert (d.state, d.action, d.pod) == (state, action, pod), d
    assert reason in d.reason
    if action is Action.REJOIN:
        assert d.source == recorded


def hung(name="mysql-0") -> Node:
    return Node(name, False, owns_data=True, timed_out=True)


LOST_REPLICAS = [replica("mysql-1", io=False), replica("mysql-2", io=False)]
SILENCE = [
    # primary, seconds it has timed out for, budget -> state, action
    pytest.param(hung(), 0.4, 1.3, State.PRIMARY_SILENT, Action.WAIT, id="timing-out-briefly-is-slow"),
    pytest.param(hung(), 1.29, 1.3, State.PRIMARY_SILENT, Action.WAIT, id="just-under-the-budget"),
    pytest.param(hung(), 1.3, 1.3, State.PRIMARY_LOST, Action.FAILOVER, id="silent-for-the-budget-is-hung"),
    pytest.param(down("mysql-0"), 0.0, 1.3, State.PRIMARY_LOST, Action.FAILOVER, id="refusing-is-down-at-once"),
    pytest.param(hung(), 0.0, 0.0, State.PRIMARY_LOST, Action.FAILOVER, id="no-budget"),
]


@pytest.mark.parametrize("lost, silent_for, budget, state, action", SILENCE)
def test_a_primary_that_times_out_is_hung_only_after_the_budget(lost, silent_for, budget, state, action):
    """Slow and hung look the same to one probe: only how long the silence lasts tells them apart.
    A refused connection (nothing listens) needs no wait."""
    d = decide([lost, *LOST_REPLICAS], "mysql-0", Memory(silent_for=silent_for), hung_after=budget)
    assert (d.state, d.action) == (state, action), d
    if action is Action.WAIT:
        assert "slow or hung" in d.reason and f"{budget:g}s" in d.reason


def test_a_silent_primary_whose_replicas_still_receive_is_not_even_a_candidate_for_failover():
    d = decide([hung(), replica("mysql-1"), replica("mysql-2", io=False)], "mysql-0", Memory(silent_for=60),
               hung_after=1.3)
    assert (d.state, d.action) == (State.NO_PRIMARY, Action.WAIT) and "still receive" in d.reason


def test_strays_are_remembered_only_while_the_primary_is_healthy():
    assert decide(STRAY, "mysql-0").strays == {"mysql-1"}
    lost = [down("mysql-0"), replica("mysql-1", source=None, io=False), replica("mysql-2", io=False)]
    assert decide(lost, "mysql-0", Memory(strays=frozenset({"mysql-1"}))).strays == frozenset()


names = st.sampled_from(["mysql-0", "mysql-1", "mysql-2"])
node = st.builds(
    lambda name, reachable, writable, seq, source, io, quarantined, diverged, timed_out: Node(
        name, reachable, writable=reachable and writable, executed=P(f"0-100-{seq}") if reachable else None,
        source=source, io_running=io, quarantined=quarantined, diverged=diverged, owns_data=True,
        timed_out=timed_out and not reachable),
    names, st.booleans(), st.booleans(), st.integers(0, 5), st.none() | names, st.booleans(), st.booleans(),
    st.booleans(), st.booleans())


@given(st.lists(node, min_size=1, max_size=3, unique_by=lambda n: n.name), st.none() | names,
       st.frozensets(names), st.floats(0, 100), st.booleans(), st.floats(0, 3), st.floats(0, 3))
def test_decide_is_total_and_never_acts_against_the_invariants(nodes, recorded, strays, blocked, reclone,
                                                               silent_for, hung_after):
    """Whatever is observed: exactly one action; never fence the recorded primary; never fail over
    while a node is writable, nor on a primary that has timed out for less than the budget; a pod
    named for every action that needs one."""
    d = decide(nodes, recorded, Memory(strays, blocked, silent_for), (), reclone, hung_after)
    writable = [n.name for n in nodes if n.reachable and n.writable]
    if d.action is Action.FAILOVER and any(n.name == recorded and n.timed_out for n in nodes):
        assert silent_for >= hung_after
    if d.action is Action.FENCE:
        assert d.pod != recorded and d.pod in writable and recorded in writable
    if d.action in (Action.FAILOVER, Action.BLOCKED):
        assert not writable
    if d.action is Action.BLOCKED:
        assert blocked > 0
    if d.action in (Action.FENCE, Action.QUARANTINE, Action.REJOIN, Action.RECLONE, Action.PUBLISH):
        assert d.pod is not None
    if d.action in (Action.REJOIN, Action.RECLONE):
        assert writable == [recorded]
    if d.action is Action.RECORD:
        assert writable == [d.pod] and d.pod != recorded
        assert not short_of(next(n for n in nodes if n.name == d.pod), nodes)  # it holds all a node has
    if d.action is Action.RECLONE:
        assert not short_of(next(n for n in nodes if n.name == recorded), [n for n in nodes if n.name == d.pod])
    assert d.reason


def test_what_a_primary_is_short_of_leaves_out_what_each_node_wrote_itself():
    from mysqlsts.decisions.gtid import MysqlGtidSet
    a, b, c = "3e11fa47-71ca-11e1-9e33-c80aa9429562", "4e11fa47-71ca-11e1-9e33-c80aa9429562", \
        "5e11fa47-71ca-11e1-9e33-c80aa9429562"
    m = MysqlGtidSet.parse

    def node(name, gtids, origin):
        return Node(name, True, executed=m(gtids), origin=origin)

    fresh = node("mysql-0", f"{c}:1-3", c)  # an empty pod 0 initialized anew: a new server_uuid
    holder = node("mysql-1", f"{a}:1-50,{b}:1-2", b)  # the history, and two errant writes of its own
    assert {k: str(v) for k, v in short_of(fresh, [fresh, holder]).items()} == {"mysql-1": f"{a}:1-50"}
    caught_up = node("mysql-2", f"{a}:1-50", a)
    assert short_of(caught_up, [caught_up, holder]) == {}  # its own errant writes are no shortage
