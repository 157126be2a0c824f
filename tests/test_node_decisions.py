"""The pod agent's pure decisions about its own node: which role it settles in (decisions/node.settle)
and whether it can serve it (decisions/node.readiness), table-driven, for both GTID notations."""

from __future__ import annotations

import pytest

from mysqlsts.decisions.failover import Node
from mysqlsts.decisions.gtid import parse
from mysqlsts.decisions.lag import LagBound
from mysqlsts.decisions.node import NodeAction, readiness, serving_role, settle
from mysqlsts.model import ServerState

U0 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"  # mysql-0's server_uuid
U1 = "4f22ab58-82db-22f2-8f44-d91bb0530673"  # mysql-1's


def node(name: str, gtids: str | None = "", flavor: str = "mariadb", **kw) -> Node:
    reachable = kw.pop("reachable", gtids is not None)
    return Node(name=name, reachable=reachable, executed=parse(flavor, gtids) if reachable else None, **kw)


def own(gtids: str = "", flavor: str = "mariadb", **kw) -> Node:
    return node("mysql-1", gtids, flavor, **kw)


def primary(name: str = "mysql-0", gtids: str = "", flavor: str = "mariadb", **kw) -> Node:
    return node(name, gtids, flavor, writable=True, **kw)


def replica(name: str, gtids: str = "", flavor: str = "mariadb", source: str | None = "mysql-0", **kw) -> Node:
    return node(name, gtids, flavor, source=source, **{"io_running": source is not None, **kw})


SILENT = node("mysql-2", None)

# (case, own, peers, fresh_primary, action, primary, words in the reason)
SETTLE = [
    ("writable already", own(writable=True), [], False, NodeAction.PRIMARY, "mysql-1", "primary"),
    ("writable wins over a fresh start", own(writable=True), [primary()], True, NodeAction.PRIMARY, "mysql-1", ""),
    ("following already", own(source="mysql-0", io_running=True), [primary()], False, NodeAction.FOLLOWING,
     "mysql-0", "replicating from mysql-0"),
    ("source set but receiver down: joins the writable peer again", own("0-100-5", source="mysql-0"),
     [primary(gtids="0-100-7")], False, NodeAction.FOLLOW, "mysql-0", "one writable peer"),
    ("one writable peer, behind it", own("0-100-3"), [primary(gtids="0-100-9"), replica("mysql-2", "0-100-9")],
     False, NodeAction.FOLLOW, "mysql-0", ""),
    ("one writable peer, equal", own("0-100-9"), [primary(gtids="0-100-9")], False, NodeAction.FOLLOW, "mysql-0",
     ""),
    ("empty node follows", own(""), [primary(gtids="0-100-9")], False, NodeAction.FOLLOW, "mysql-0", ""),
    ("ahead of the writable peer: errant", own("0-100-12"), [primary(gtids="0-100-9")], False,
     NodeAction.QUARANTINE, "mysql-0", "errant transactions: 0-100-12"),
    ("same sequence, another server: diverged", own("0-101-9"), [primary(gtids="0-100-9")], False,
     NodeAction.QUARANTINE, "mysql-0", "errant"),
    ("a domain the peer lacks", own("0-100-9,1-101-2"), [primary(gtids="0-100-9")], False, NodeAction.QUARANTINE,
     "mysql-0", "1-101-2"),
    ("mysql: contained in the peer's set", own(f"{U0}:1-5", "mysql"), [primary(gtids=f"{U0}:1-9", flavor="mysql")],
     False, NodeAction.FOLLOW, "mysql-0", ""),
    ("mysql: a transaction of its own", own(f"{U0}:1-5,{U1}:1", "mysql"),
     [primary(gtids=f"{U0}:1-9", flavor="mysql")], False, NodeAction.QUARANTINE, "mysql-0", f"{U1}:1"),
    ("mysql: a hole the peer has not", own(f"{U0}:1-5:8", "mysql"), [primary(gtids=f"{U0}:1-6", flavor="mysql")],
     False, NodeAction.QUARANTINE, "mysql-0", f"{U0}:8"),
    ("what the peer received but not applied counts", own("0-100-9"),
     [primary(gtids="0-100-7", retrieved=parse("mariadb", "0-100-9"))], False, NodeAction.FOLLOW, "mysql-0", ""),
    ("two writable peers: refuses to pick", own(), [primary("mysql-0"), primary("mysql-2")], False, NodeAction.WAIT,
     None, "more than one writable peer (mysql-0, mysql-2)"),
    ("two writable peers, even when fresh", own(), [primary("mysql-0"), primary("mysql-2")], True, NodeAction.WAIT,
     None, "refusing"),
    ("a silent writable peer does not count", own(),
     [node("mysql-0", None, writable=True), replica("mysql-2", source="mysql-0")], False, NodeAction.WAIT, None,
     "the peers follow mysql-0"),
    ("fresh first primary, nobody answers: promotes", own(), [SILENT], True, NodeAction.PROMOTE, "mysql-1",
     "first primary"),
    ("fresh first primary, no peers at all", own(), [], True, NodeAction.PROMOTE, "mysql-1", ""),
    ("fresh, but a fenced peer answers: waits", own(), [replica("mysql-2", source=None)], True, NodeAction.WAIT,
     None, "1 answered"),
    ("not fresh, nobody answers: never promotes itself", own("0-100-9"), [SILENT], False, NodeAction.WAIT, None,
     "0 answered"),
    ("restarted old primary among fenced replicas: waits for the orchestrator", own("0-100-9"),
     [replica("mysql-0", "0-100-9", source="mysql-1", io_running=False), replica("mysql-2", "0-100-9",
                                                                                 source="mysql-1")],
     False, NodeAction.WAIT, None, "the peers follow mysql-1; waiting for the orchestrator"),
    ("itself among the peers is ignored", own(), [own(writable=True)], False, NodeAction.WAIT, None, "0 answered"),
]


@pytest.mark.parametrize(("case", "me", "peers", "fresh", "action", "primary_", "words"), SETTLE,
                         ids=[c[0] for c in SETTLE])
def test_settle(case, me, peers, fresh, action, primary_, words):
    decision = settle(me, peers, fresh)
    assert decision.action is action
    assert decision.primary == primary_
    assert words in decision.reason


@pytest.mark.parametrize(("published", "gtids", "action"), [
    ("mysql-0", "0-100-3", NodeAction.FOLLOW),  # the primary name reaches the writable peer
    (None, "0-100-3", NodeAction.FOLLOW),  # it reaches no pod: nothing published yet (a first primary)
    ("mysql-2", "0-100-3", NodeAction.WAIT),  # it reaches another pod: the writable one is not recorded
    ("mysql-1", "0-100-3", NodeAction.WAIT),  # it reaches this very pod, back fenced: not moved yet
    ("mysql-2", "0-100-12", NodeAction.WAIT),  # ahead of an unrecorded writable peer: not judged against it
    ("mysql-0", "0-100-12", NodeAction.QUARANTINE),
])
def test_only_the_recorded_primary_is_followed(published, gtids, action):
    decision = settle(own(gtids), [primary(gtids="0-100-9"), replica("mysql-2", "0-100-9", source=None)], False,
                      published)
    assert decision.action is action
    if action is NodeAction.WAIT:
        assert f"the primary name reaches {published}" in decision.reason


def test_only_wait_leaves_the_role_unsettled():
    assert [a for a in NodeAction if not a.settled] == [NodeAction.WAIT]


def state(read_only: bool = True, source: str | None = "mysql-0.mysql", io: str | None = "Yes",
          sql: str | None = "Yes", lag: int | None = 0) -> ServerState:
    return ServerState(read_only=read_only, super_read_only=None, gtid="", source_host=source, io_running=io,
                       sql_running=sql, lag=lag, last_error="", semi_sync_source_on=False,
                       semi_sync_replica_on=True)


BOUND = LagBound(seconds=30, transactions=500)

# (case, state, quarantined, transactions received not applied, verdict: None = ready)
READINESS = [
    ("the primary", state(read_only=False, source=None, io=None, sql=None, lag=None), False, None, None),
    ("a replica within the lag limit", state(lag=30), False, 500, None),
    ("quarantined, whatever it does", state(), True, 0, "quarantined: errant transactions"),
    ("a quarantined writable node", state(read_only=False), True, None, "quarantined: errant transactions"),
    ("fenced and following no one", state(source=None, io=None, sql=None, lag=None), False, None,
     "read-only and not replicating"),
    ("receiver connecting", state(io="Connecting", lag=None), False, 0, "replication threads: io=Connecting sql=Yes"),
    ("applier stopped", state(sql="No", lag=None), False, 9000, "replication threads: io=Yes sql=No"),
    ("threads unknown", state(io=None, sql=None), False, 0, "replication threads: io=- sql=-"),
    ("lag over the limit", state(lag=31), False, 0, "lag 31s exceeds 30s"),
    ("lag unknown", state(lag=None), False, 0, "lag -s exceeds 30s"),
    ("too many transactions not applied yet", state(lag=0), False, 501,
     "501 transactions received but not applied exceeds 500"),
    ("backlog unknown (unreadable GTIDs): seconds decide", state(lag=3), False, None, None),
]


@pytest.mark.parametrize(("case", "s", "quarantined", "pending", "verdict"), READINESS,
                         ids=[c[0] for c in READINESS])
def test_readiness(case, s, quarantined, pending, verdict):
    assert readiness(s, quarantined, BOUND, pending) == verdict


@pytest.mark.parametrize(("case", "s", "quarantined", "pending", "verdict"), READINESS,
                         ids=[c[0] for c in READINESS])
def test_a_pod_offers_itself_as_a_clone_donor_only_when_ready(case, s, quarantined, pending, verdict):
    """What the clone listener tells a new pod choosing its donor, from the same verdict."""
    role = serving_role(s, readiness(s, quarantined, BOUND, pending))
    assert role == ("none" if verdict is not None else "primary" if s.writable else "replica")
    assert serving_role(None, "server: gone") == "none"
