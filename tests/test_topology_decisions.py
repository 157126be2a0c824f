"""Pure verification decisions over synthetic observations: no servers."""

from __future__ import annotations

import dataclasses

from mysqlsts.chart.values import load
from mysqlsts.decisions.lag import LagBound
from mysqlsts.decisions.topology import (
    PodView,
    observed_primary,
    role,
    stale_role_labels,
    unsettled,
    verify_checks,
)
from mysqlsts.model import ServerState

PRIMARY = ServerState(read_only=False, super_read_only=None, gtid="0-100-9", source_host=None, io_running=None,
                      sql_running=None, lag=None, last_error="", semi_sync_source_on=True,
                      semi_sync_replica_on=False)
REPLICA = ServerState(read_only=True, super_read_only=None, gtid="0-100-9",
                      source_host="mysql-0.mysql.default.svc.cluster.local", io_running="Yes", sql_running="Yes",
                      lag=0, last_error="", semi_sync_source_on=False, semi_sync_replica_on=True)


def view(i: int, state: ServerState | None, **kw) -> PodView:
    base = dict(name=f"mysql-{i}", fqdn=f"mysql-{i}.mysql.default.svc.cluster.local", address=f"127.1.1.{10 + i}",
                resolved=f"127.1.1.{10 + i}", running=True, ready=True, state=state)
    return PodView(**{**base, **kw})


def healthy() -> list[PodView]:
    return [view(0, PRIMARY), view(1, REPLICA), view(2, REPLICA)]


def checks(views, recorded="mysql-0", resolves="mysql-0", semi=True):
    return {c.name: c for c in verify_checks(views, recorded, "mysql-primary.default.svc.cluster.local", resolves,
                                             LagBound(seconds=10, transactions=1000), semi_sync=semi)}


def failing(views, **kw) -> set[str]:
    return {name for name, c in checks(views, **kw).items() if not c.ok}


def test_a_healthy_topology_passes_every_check():
    assert failing(healthy()) == set()
    assert observed_primary(healthy()) == "mysql-0"
    assert [role(v, "mysql-0") for v in healthy()] == ["primary", "replica", "replica"]


def test_two_writable_nodes_is_split_brain():
    views = healthy()
    views[2] = view(2, PRIMARY)
    bad = failing(views)
    assert "exactly one writable node" in bad and "writable node is the recorded primary" in bad
    assert observed_primary(views) is None
    assert role(views[2], "mysql-0") == "writable!"


def test_no_writable_node():
    views = [view(0, dataclasses.replace(PRIMARY, read_only=True)), view(1, REPLICA), view(2, REPLICA)]
    assert "exactly one writable node" in failing(views)


def test_writable_node_must_be_the_recorded_primary():
    assert "writable node is the recorded primary" in failing(healthy(), recorded="mysql-1")


def test_stale_dns_is_caught():
    views = healthy()
    views[1] = view(1, REPLICA, resolved="127.1.1.99")
    assert failing(views) == {"dns mysql-1.mysql.default.svc.cluster.local"}
    assert "primary name mysql-primary.default.svc.cluster.local" in failing(healthy(), resolves="mysql-1")


def test_replica_problems_each_fail_the_replica_check():
    name = "replica mysql-1 replicates from the primary"
    for broken in (dict(io_running="Connecting"), dict(sql_running="No"), dict(lag=11), dict(lag=None),
                   dict(last_error="Duplicate entry"), dict(source_host="mysql-2.mysql.default.svc.cluster.local"),
                   dict(source_host=None), dict(semi_sync_replica_on=False)):
        views = healthy()
        views[1] = view(1, dataclasses.replace(REPLICA, **broken))
        assert failing(views) == {name}, broken


def test_a_replica_with_more_received_than_the_bound_unapplied_fails_and_the_count_is_shown():
    name = "replica mysql-1 replicates from the primary"
    views = healthy()
    views[1] = view(1, REPLICA, behind=1001)
    assert failing(views) == {name}
    assert checks(views)[name].detail == "1001 transactions received but not applied exceeds 1000"
    views[1] = view(1, REPLICA, behind=1000)
    assert failing(views) == set() and checks(views)[name].detail.endswith("lag 0s, 1000 received not applied")


def test_semi_sync_fallback_to_async_is_reported():
    views = healthy()
    views[0] = view(0, dataclasses.replace(PRIMARY, semi_sync_source_on=False))
    assert failing(views) == {"semi-sync active on the primary"}
    assert failing(views, semi=False) == set()  # a one-pod cluster is async by design


def test_unreachable_and_stopped_pods_fail():
    views = healthy()
    views[2] = view(2, None, running=False, ready=False, address=None, resolved=None)
    bad = failing(views)
    assert {"pod mysql-2 running and ready", "replica mysql-2 replicates from the primary",
            "dns mysql-2.mysql.default.svc.cluster.local"} <= bad


def test_quarantined_pod_is_reported():
    views = healthy()
    views[1] = view(1, REPLICA, quarantined=True)
    assert "replica mysql-1 replicates from the primary" in failing(views)
    assert role(views[1], "mysql-0") == "quarantined"


def test_verify_waits_for_a_new_pods_dns_name_then_gives_up_after_the_settle_window(monkeypatch):
    """A name looked up before its pod had its address stays cached (no address, or the old pod's) for the
    answer's TTL, per DNS replica: verify waits that out instead of reporting a healthy new or restarted pod
    as unreachable (seen on kind after scale 3 -> 5 and after restart-pod)."""
    from mysqlsts.orchestrator import cluster as cluster_module

    stale = [*healthy(), view(3, REPLICA, resolved=None)]
    old_address = [*healthy(), view(3, REPLICA, resolved="127.1.1.99")]  # the pod it replaced
    fresh = [*healthy(), view(3, REPLICA)]
    seen = iter([stale, old_address, fresh])
    c = cluster_module.Cluster.__new__(cluster_module.Cluster)
    c.values = load([], [])
    monkeypatch.setattr(cluster_module.time, "sleep", lambda s: None)
    monkeypatch.setattr(c, "observe", lambda: next(seen))
    assert c.observe_settled() == fresh

    clock = iter(range(0, 1000, 10))
    monkeypatch.setattr(cluster_module.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(c, "observe", lambda: stale)
    assert c.observe_settled() == stale  # past DNS_SETTLE_SECONDS the stale name is reported as it is


def labelled(name: str, label: str | None, quarantined: bool = False) -> PodView:
    return PodView(name=name, fqdn=f"{name}.mysql", address=None, resolved=None, running=True, ready=True,
                   state=None, quarantined=quarantined, role_label=label)


def test_a_re_created_pod_with_the_template_label_is_republished_at_once():
    views = [labelled("mysql-0", "replica"), labelled("mysql-1", "replica"), labelled("mysql-2", "quarantined", True)]
    assert stale_role_labels(views, "mysql-0") == ["mysql-0"]  # the primary, re-created: out of the primary Service
    views[0] = labelled("mysql-0", "primary")
    assert stale_role_labels(views, "mysql-0") == []
    assert stale_role_labels(views, "mysql-1") == ["mysql-0", "mysql-1"]
    assert stale_role_labels([labelled("mysql-0", None)], "mysql-1") == []  # not labelled here (local)


def test_a_replica_applying_what_it_missed_is_waited_for_and_a_broken_one_is_not():
    bound = LagBound(seconds=10, transactions=1000)
    assert unsettled(healthy(), semi_sync=False, acks=1, bound=bound) == []
    views = healthy()
    views[2] = view(2, dataclasses.replace(REPLICA, lag=12))  # back from a stop: lag is the age of what it applies
    assert unsettled(views, semi_sync=False, acks=1, bound=bound) == ["mysql-2 catching up (lag 12s exceeds 10s)"]
    views[2] = view(2, dataclasses.replace(REPLICA, lag=12, sql_running="No", last_error="Duplicate entry"))
    assert unsettled(views, semi_sync=False, acks=1, bound=bound) == []  # not moving: verify says what is wrong
