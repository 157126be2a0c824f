"""Switchover, failover, recovery and the controller against the in-memory fake (tests/fakeservers.py):
scenario tables, in the manner of Patroni's test_ha.py and MOCO's manager_test.go. Each scenario
asserts who ends up primary, what is recorded and quarantined, the order of the role moves, that no
acknowledged commit is lost and that two nodes were never writable at once. Both flavors run every
scenario; the fake clock makes the waits instant."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fakeservers import Crash, World, patch_time

from mysqlsts.errors import OperationFailed
from mysqlsts.model import ServerError
from mysqlsts.orchestrator.cluster import Cluster
from mysqlsts.orchestrator.controller import Controller
from mysqlsts.orchestrator.failover import Roles

P0, P1, P2 = "mysql-0", "mysql-1", "mysql-2"


@dataclass
class Env:
    world: World
    cluster: Cluster

    def roles(self) -> Roles:
        return Roles(self.cluster)

    def controller(self) -> Controller:
        settings = self.world.values["controller"]
        return Controller(self.cluster, float(settings["checkIntervalSeconds"]),
                          float(settings["blockPeriodSeconds"]), bool(settings["autoReclone"]),
                          float(settings["hungAfterSeconds"]), log=self.world.controller_log)


@pytest.fixture(params=["mysql", "mariadb"])
def flavor(request) -> str:
    return request.param


@pytest.fixture
def make(monkeypatch, flavor):
    def build(**kwargs) -> Env:
        world = World(flavor, **kwargs)
        patch_time(monkeypatch, world.clock, world)
        return Env(world, Cluster(world.platform, world.values, passwords={}, servers=world.seam))

    return build


@pytest.fixture
def env(make) -> Env:
    return make()


def tick(controller: Controller, times: int = 1) -> None:
    for _ in range(times):
        controller.tick()


def assert_healthy(world: World, primary: str, quarantined: frozenset[str] = frozenset()) -> None:
    """One writable node, recorded and reached through the primary name; every other healthy node
    follows it and holds everything it has; nothing acknowledged lost; never two writable nodes."""
    assert world.violations == []
    assert world.writable() == {primary}
    assert world.platform.primary == primary
    assert {s.name for s in world.servers.values() if s.quarantined} == set(quarantined)
    assert world.lost(primary) == [], "acknowledged commits lost"
    for s in world.servers.values():
        if s.name == primary or s.quarantined or s.status != "up":
            continue
        assert world.source_of(s.name) == primary, f"{s.name} follows {world.source_of(s.name)}"
        assert s.connected and s.sql_on, f"{s.name} is not replicating"
        assert world.has(s.name, world[primary].applied), f"{s.name} has not caught up"
    world.commit()  # a client write through the recorded primary is taken
    assert world.acked[-1] in world[primary].applied


def kinds_in_order(world: World, *steps: tuple[str, str | None], since: int = 0) -> None:
    positions = [world.index(kind, pod, since) for kind, pod in steps]
    assert positions == sorted(positions), f"order {steps} not kept: {world.kinds(since)}"


# -- the controller fails over a lost primary -----------------------------------------------------------

LOST_PRIMARY = [
    # id, fault on mysql-0, replicas that miss the last two commits, expected primary, old primary's fate
    pytest.param("kill", (P2,), P1, "rejoins", id="dead-primary-mysql-1-most-caught-up"),
    pytest.param("kill", (P1,), P2, "rejoins", id="dead-primary-mysql-2-most-caught-up"),
    pytest.param("hang", (P2,), P1, "rejoins", id="hung-primary-is-killed-first"),
    pytest.param("kill-with-tail", (P2,), P1, "quarantined", id="dead-primary-with-unacknowledged-tail"),
]


@pytest.mark.parametrize(("fault", "behind", "expected", "old_fate"), LOST_PRIMARY)
def test_controller_fails_over_a_lost_primary_to_the_most_caught_up_replica(env, fault, behind, expected,
                                                                            old_fate):
    world = env.world
    world.commit(n=3)
    with world.not_receiving(*behind):
        world.commit(n=2)
    if fault == "kill-with-tail":
        with world.not_receiving(P1, P2):
            tail = world.commit()
        assert world.unacked == tail  # semi-sync without fallback: nobody received it, nobody was told OK
    if fault == "hang":
        world.hang(P0)
    else:
        world.kill(P0)
    acked = list(world.acked)
    controller = env.controller()
    start = world.mark()
    silent_from = world.clock.now

    tick(controller)
    if fault == "hang":  # slow or hung: only an unbroken silence of hungAfterSeconds tells, looked at back to back
        assert world.happened("controller:waiting", since=start) and controller.hurry
        while not world.happened("controller:failing-over", since=start):
            tick(controller)
        assert world.clock.now - silent_from >= world.values["controller"]["hungAfterSeconds"]

    assert world.index("controller:failing-over", since=start) < world.index("controller:failed-over", since=start)
    if fault == "hang":  # it does not answer: killed through the platform before anyone is promoted
        kinds_in_order(world, ("kill_server", P0), ("stop_receiving", None), ("become_source", expected),
                       since=start)
        assert world[P0].status == "dead"
    kinds_in_order(world, ("stop_receiving", None), ("wait_applied", expected), ("become_source", expected),
                   ("unfence", expected), ("set_primary", expected), ("write_probe", expected), since=start)
    assert world.has(expected, acked)
    assert_healthy(world, expected)

    # The old primary comes back fenced; the controller never makes it writable again.
    world.restart(P0)
    back = world.mark()
    tick(controller)
    assert not world.happened("replicate_from", P0, since=back) and not world.happened("quarantine", P0, since=back)
    tick(controller, 3)
    assert not world.was_writable(P0, since=start)
    if old_fate == "rejoins":
        assert world.index("controller:rejoining", P0, since=back) >= 0
        assert_healthy(world, expected)
    else:
        assert world.index("controller:quarantining", P0, since=back) >= 0
        assert world[P0].quarantined and world[P0].read_only
        assert_healthy(world, expected, quarantined=frozenset({P0}))


# -- the controller does not fail over, or not yet -------------------------------------------------------

NO_FAILOVER_YET = [
    # id, how the primary is lost, what else is silent, what the controller must say, what makes it go on
    pytest.param("partition", None, "still receive from it", "kill", P1, id="replicas-still-receive"),
    pytest.param("kill", "stop-pod", "holds data but does not answer", "restart", P2, id="stopped-pod-with-data"),
    pytest.param("kill", "kill", "holds data but does not answer", "restart", P2, id="dead-replica-with-data"),
]


@pytest.mark.parametrize(("fault", "silent", "says", "then", "expected"), NO_FAILOVER_YET)
def test_no_election_while_the_evidence_is_incomplete(env, fault, silent, says, then, expected):
    world = env.world
    world.commit(n=2)
    with world.not_receiving(P1):  # mysql-2 alone holds the last acknowledged commit
        world.commit()
    getattr(world, fault)(P0)
    if silent == "stop-pod":
        world.stop_pod(P2)
    elif silent == "kill":
        world.kill(P2)
    controller = env.controller()
    start = world.mark()

    tick(controller, 3)

    waiting = [e for e in world.events[start:] if e.kind == "controller:waiting"]
    assert len(waiting) == 1 and says in waiting[0].detail["reason"]  # said once, not at every check
    for kind in ("controller:failing-over", "kill_server", "stop_receiving", "become_source", "set_primary"):
        assert not world.happened(kind, since=start), kind
    assert world.platform.primary == P0

    if then == "kill":  # the replicas lose it too: now it is lost
        world.kill(P0)
    else:
        world.restart(P2)
    tick(controller)
    assert world.happened("controller:failed-over", since=start)
    assert_healthy(world, expected)


def test_forced_failover_elects_among_the_nodes_that_answer(env):
    world = env.world
    world.commit(n=2)
    world.kill(P0)
    world.stop_pod(P2)
    with pytest.raises(OperationFailed, match="mysql-2 holds data but does not answer"):
        env.roles().failover()
    assert not world.happened("become_source")

    report = env.roles().failover(force=True)
    assert report["to"] == P1 and report["lost"] == {}
    assert world.writable() == {P1} and world.platform.primary == P1 and world.violations == []


# -- errant transactions --------------------------------------------------------------------------------


def test_an_errant_replica_is_never_elected_and_is_quarantined(env):
    world = env.world
    world.commit(n=3)
    stray = world.errant_write(P2)  # it now holds more than mysql-1: it would win on count alone
    world.kill(P0)
    controller = env.controller()

    tick(controller)

    report = next(e.detail for e in world.events if e.kind == "controller:failed-over")
    assert report["to"] == P1 and report["lost"] == {}
    assert "errant" in report["excluded"][P2]
    assert world[P2].quarantined and world[P2].read_only and not world[P2].io_on and not world[P2].sql_on
    kinds_in_order(world, ("become_source", P1), ("quarantine", P2), ("unfence", P1))
    assert stray not in world[P1].applied
    assert_healthy(world, P1, quarantined=frozenset({P2}))


STRAYS = [
    # id, errant write on the stray, primary commits after it, ticks until acted on, expected action
    pytest.param(False, 0, 2, "rejoining", id="healthy-stray-rejoins"),
    pytest.param(True, 0, 2, "quarantining", id="errant-stray-quarantined"),
    pytest.param(True, 2, 3, "quarantining", id="errant-stray-behind-the-primary"),
]


@pytest.mark.parametrize(("errant", "later", "ticks", "action"), STRAYS)
def test_a_stray_is_acted_on_only_at_its_second_sighting(env, flavor, errant, later, ticks, action):
    world = env.world
    world.commit(n=2)
    world.detach(P2)
    if errant:
        world.errant_write(P2)
    world.commit(n=later)
    controller = env.controller()
    start = world.mark()

    tick(controller)  # first sighting: maybe it is between two steps of its own rejoin
    assert not world.happened("replicate_from", P2, since=start)
    assert not world.happened("quarantine", P2, since=start)

    tick(controller, ticks - 1)
    quarantined = frozenset({P2}) if action == "quarantining" else frozenset()
    assert world.happened(f"controller:{action}", P2, since=start)
    if errant and later and flavor == "mariadb":
        # A position cannot show the errant write once the primary is past it: the rejoin is tried,
        # and the primary's refusal (1236) quarantines it at the next check.
        kinds_in_order(world, ("controller:rejoining", P2), ("controller:quarantining", P2), since=start)
    else:
        assert not world.happened(f"controller:{'rejoining' if errant else 'quarantining'}", P2, since=start)
    assert_healthy(world, P0, quarantined=quarantined)


# -- split brain ----------------------------------------------------------------------------------------

SPLIT_BRAIN = [
    # id, recorded primary, dead nodes, nodes made writable by hand, expected fenced, writable after
    pytest.param(P0, (), (P2,), P2, {P0}, id="fence-the-unrecorded-one"),
    pytest.param(None, (), (P2,), None, {P0, P2}, id="none-recorded-fence-nobody"),
    pytest.param(P0, (P0,), (P1, P2), None, {P1, P2}, id="recorded-one-dead-fence-nobody"),
]


@pytest.mark.parametrize(("recorded", "dead", "writable", "fenced", "after"), SPLIT_BRAIN)
def test_two_writable_nodes(env, recorded, dead, writable, fenced, after):
    world = env.world
    world.commit(n=2)
    for pod in dead:
        world.kill(pod)
    for pod in writable:
        world.make_writable(pod)
    world.platform.primary = recorded
    controller = env.controller()
    start = world.mark()

    tick(controller, 2)

    assert world.writable() == after
    assert world.platform.primary == recorded
    if fenced:
        assert [e.pod for e in world.events[start:] if e.kind == "controller:fenced"] == [fenced]
        assert world.index("fence", fenced, since=start) >= 0
    else:
        said = [e for e in world.events[start:] if e.kind == "controller:split-brain"]
        assert len(said) == 1 and "a person must choose" in said[0].detail["reason"]
        assert not world.happened("fence", since=start)
    assert not world.happened("controller:failing-over", since=start)
    assert world.violations == []


# -- lagging candidates and what would be lost ----------------------------------------------------------

LAGGING = [
    # id, seconds the candidate needs to apply its relay log, does the failover succeed
    pytest.param(5.0, True, id="candidate-drains-its-relay-log"),
    pytest.param(120.0, False, id="candidate-cannot-apply-within-applyTimeoutSeconds"),
]


@pytest.mark.parametrize(("apply_seconds", "succeeds"), LAGGING)
def test_the_candidate_applies_its_relay_log_first(env, apply_seconds, succeeds):
    world = env.world
    world.commit(n=2)
    world.hold_relay(P1, apply_seconds=apply_seconds)
    with world.not_receiving(P2):
        pending = world.commit(n=3)  # acknowledged by mysql-1, which has them only in its relay log
    assert not world.has(P1, pending) and set(pending) <= set(world[P1].relay)
    world.kill(P0)
    controller = env.controller()
    began = world.clock.now

    tick(controller)

    timeout = world.values["failover"]["applyTimeoutSeconds"]
    if succeeds:
        assert world.clock.now - began >= apply_seconds
        kinds_in_order(world, ("stop_receiving", P1), ("wait_applied", P1), ("become_source", P1),
                       ("unfence", P1))
        assert world.has(P1, pending)
        assert_healthy(world, P1)
        # What the candidate had to apply, said before (the controller's estimate) and after (the report).
        deciding = next(e.detail for e in world.events if e.kind == "controller:failing-over")
        assert deciding["catch_up"][P1]["behind"] == len(pending)
        report = next(e.detail for e in world.events if e.kind == "controller:failed-over")
        assert report["applied"]["transactions"] == len(pending)
        assert report["applied"]["seconds"] >= apply_seconds
    else:
        refused = next(e.detail for e in world.events if e.kind == "controller:failover-refused")
        assert f"did not apply its relay log within {timeout}s" in refused["reason"]
        for kind in ("become_source", "unfence", "set_primary", "replicate_from"):
            assert not world.happened(kind), kind
        assert world.writable() == set() and world.platform.primary == P0
        assert set(pending) <= set(world[P1].relay)  # nothing thrown away: the next check tries again
        assert world.violations == []


NOTHING_HOLDS_EVERYTHING = [
    # id, how: mysql-1 holds the last commits but lags too far, or the operator names the stale mysql-2
    pytest.param("lag", None, id="most-caught-up-lags-beyond-maxLagSeconds"),
    pytest.param("to", P2, id="operator-names-a-stale-node"),
]


@pytest.mark.parametrize(("how", "to"), NOTHING_HOLDS_EVERYTHING)
def test_failover_refuses_to_lose_transactions_unless_forced(env, flavor, how, to):
    world = env.world
    world.commit(n=2)
    if how == "lag":
        world.hold_relay(P1)
        world[P1].lag_seconds = world.values["failover"]["maxLagSeconds"] + 15
    with world.not_receiving(P2):
        extra = world.commit(n=2)
    world.kill(P0)
    start = world.mark()

    with pytest.raises(OperationFailed) as refused:
        env.roles().failover(to=to)
    assert "--force promotes it and loses" in refused.value.problems[0]
    assert any(line.startswith(f"{P1}: ") for line in refused.value.problems[1:])
    for kind in ("become_source", "unfence", "set_primary"):
        assert not world.happened(kind, since=start), kind

    report = env.roles().failover(to=to, force=True)
    assert report["to"] == P2 and set(report["lost"]) == {P1}
    assert world.writable() == {P2} and world.platform.primary == P2 and world.violations == []
    assert not world.has(P2, extra)
    # No node left in service holds what the new primary lacks: on MariaDB the source refuses its
    # position (1236) and it is quarantined; a relay log that held them is dropped by the repoint.
    for s in world.servers.values():
        if s.status == "up" and not s.quarantined:
            assert set(s.applied) <= set(world[P2].applied), f"{s.name} keeps transactions the primary lacks"


# -- planned switchover ---------------------------------------------------------------------------------

SWITCHOVER = [
    # id, target, mysql-1's relay log (seconds to apply it, or None: applied), open writers on the old
    pytest.param(None, None, [11, 12], P1, id="most-caught-up-with-writers-killed"),
    pytest.param(P2, None, [], P2, id="to-mysql-2"),
    pytest.param(P1, 5.0, [], P1, id="candidate-drains-its-relay-log"),
    pytest.param(None, 5.0, [], P2, id="the-replica-with-less-to-apply-is-chosen"),
]


@pytest.mark.parametrize(("to", "apply_seconds", "writers", "expected"), SWITCHOVER)
def test_switchover(env, to, apply_seconds, writers, expected):
    world = env.world
    world.commit(n=3)
    if apply_seconds is not None:
        world.hold_relay(P1, apply_seconds=apply_seconds)
        world.commit(n=2)
    world[P0].open_writers = list(writers)
    start = world.mark()

    report = env.roles().switchover(to=to)

    assert report["to"] == expected and report["killed_connections"] == len(writers)
    (other,) = [p for p in (P1, P2) if p != expected]
    # The old primary follows once the new one took a write: that needs the other replica's
    # acknowledgement, not its own (decisions.failover.repoint_order).
    kinds_in_order(world, ("fence", P0), ("executed", P0), ("wait_applied", expected), ("become_source", expected),
                   ("replicate_from", other), ("unfence", expected), ("set_primary", expected),
                   ("write_probe", expected), ("replicate_from", P0), since=start)
    assert not world.was_writable(P0, since=start)
    if apply_seconds is not None and expected != P1:
        world.apply_relay(P1)  # the replica left behind catches up in its own time
    assert_healthy(world, expected)


def test_a_switchover_reaches_a_replica_whose_name_is_still_settling_at_its_address(env):
    """A replica re-created a moment ago (a template roll) is ready, but its name does not reach it
    everywhere yet (a DNS cache still holds the old pod's address, seen on kind): the switchover goes
    to the pod's own address at once, and the replica is repointed with the others."""
    world = env.world
    world.commit(n=2)
    world.unresolved[P1] = world.clock.now + 30
    report = env.roles().switchover(to=P2)
    assert report["to"] == P2
    assert world.clock.now < world.unresolved[P1]  # nothing waited for the name
    assert_healthy(world, P2)  # mysql-1 follows the new primary


SWITCHOVER_FAILS = [
    # id, what happens to the candidate while it should catch up
    pytest.param("slow", id="candidate-cannot-catch-up-in-time"),
    pytest.param("dies", id="candidate-dies-while-catching-up"),
]


@pytest.mark.parametrize("what", SWITCHOVER_FAILS)
def test_a_failed_switchover_gives_writes_back_to_the_old_primary(env, what):
    world = env.world
    world.commit(n=2)
    world.hold_relay(P1, apply_seconds=120.0)
    world.commit(n=2)
    if what == "dies":
        world.before("wait_applied", P1, lambda w: w.kill(P1))
    start = world.mark()

    with pytest.raises((OperationFailed, ServerError)):
        env.roles().switchover(to=P1)

    kinds_in_order(world, ("fence", P0), ("unfence", P0), since=start)
    assert world.writable() == {P0} and world.platform.primary == P0
    for kind in ("become_source", "replicate_from", "set_primary"):
        assert not world.happened(kind, since=start), kind
    assert world.violations == []
    world.commit()


def test_a_candidate_that_dies_as_it_becomes_the_source_gives_writes_back_to_the_old_primary(env):
    """Caught up, then gone before it took a write: the old primary is the only safe writer left."""
    world = env.world
    world.commit(n=2)
    world.before("become_source", P1, lambda w: w.kill(P1))
    start = world.mark()

    with pytest.raises(OperationFailed, match="mysql-0 is writable again"):
        env.roles().switchover(to=P1)

    kinds_in_order(world, ("fence", P0), ("wait_applied", P1), ("unfence", P0), since=start)
    assert world.writable() == {P0} and world.platform.primary == P0
    assert not world.happened("set_primary", since=start)
    assert world.violations == []
    world.commit()


@pytest.mark.parametrize("op", ["switchover", "failover"])
def test_a_replica_that_dies_before_it_is_repointed_does_not_stop_the_promotion(env, op):
    """One replica gone mid-change (or its name cached at an old address, as on kind) must not leave the
    cluster with no writable node: the others go on, and the report names the one left behind."""
    world = env.world
    world.commit(n=2)
    if op == "failover":
        world.kill(P0)
    world.before("replicate_from", P2, lambda w: w.kill(P2))
    start = world.mark()

    roles = env.roles()
    report = roles.switchover(to=P1) if op == "switchover" else roles.failover()

    assert report["to"] == P1 and list(report["not_repointed"]) == [P2]
    assert world.writable() == {P1} and world.platform.primary == P1
    kinds_in_order(world, ("become_source", P1), ("unfence", P1), ("set_primary", P1), since=start)
    assert world.violations == []
    world.commit()


def test_a_primary_that_stalls_for_less_than_the_budget_is_slow_not_hung(env):
    """A 1 s stall (a slow disk, a stop-the-world moment): the controller waits, never fails over,
    and the primary goes on with every acknowledged write."""
    world = env.world
    world.commit(n=3)
    controller = env.controller()
    tick(controller)
    start, stalled = world.mark(), world.clock.now
    world.hang(P0)
    while world.clock.now - stalled < 1.0:
        tick(controller)
    world.resume(P0)
    tick(controller, 3)

    assert world.happened("controller:waiting", since=start)
    assert not world.happened("controller:failing-over", since=start) and not world.happened("kill_server")
    assert not controller.hurry and controller.silent_since is None
    acked = list(world.acked)
    world.commit()
    assert world.has(P0, acked) and world.writable() == {P0}
    assert_healthy(world, P0)


# -- the controller dies halfway through a failover -----------------------------------------------------

CRASH_POINTS = [
    # id, the operation the first controller dies just before, does the old primary restart meanwhile
    pytest.param("stop_receiving", P2, False, id="after-killing-the-old-primary"),
    pytest.param("become_source", P1, False, id="receivers-stopped-nobody-promoted"),
    pytest.param("become_source", P1, True, id="receivers-stopped-old-primary-back-fenced"),
    pytest.param("replicate_from", P2, False, id="candidate-is-source-others-not-repointed"),
    pytest.param("unfence", P1, False, id="everyone-repointed-candidate-still-fenced"),
    pytest.param("set_primary", P1, False, id="candidate-writable-not-yet-recorded"),
]


@pytest.mark.parametrize(("crash_before", "pod", "old_restarts"), CRASH_POINTS)
def test_a_fresh_controller_finishes_an_interrupted_failover(env, crash_before, pod, old_restarts):
    world = env.world
    world.commit(n=3)
    with world.not_receiving(P2):
        world.commit(n=2)
    world.hang(P0)
    acked = list(world.acked)
    world.crash_before(crash_before, pod)

    first = env.controller()
    with pytest.raises(Crash):  # it waits out hungAfterSeconds of silence, then fails over
        tick(first, 100)
    assert not world.platform.locked  # the lock dies with its holder
    if old_restarts:
        world.restart(P0)
    start = world.mark()

    fresh = env.controller()
    tick(fresh, 6)

    assert not world.was_writable(P0)
    assert world.has(P1, acked)
    assert world.happened("set_primary", P1, since=start)
    assert_healthy(world, P1)


# -- leadership, block period ---------------------------------------------------------------------------


@pytest.mark.parametrize("lease_lost", [pytest.param(True, id="lease-lost"), pytest.param(False, id="lease-kept")])
def test_a_controller_that_loses_its_lease_acts_no_more(env, lease_lost):
    world = env.world
    world.commit(n=2)
    world.kill(P0)
    controller = env.controller()
    # Between the first and the second check, someone unfences mysql-2: the next check would fence it.
    def second_check(w: World) -> None:
        w.make_writable(P2)
        if not lease_lost:  # stop the loop once it has fenced mysql-2
            w.before("fence", P2, lambda w: setattr(controller, "stopping", True))

    world.before("renew", None, lambda w: None)
    world.before("renew", None, second_check)
    if lease_lost:
        world.platform.renewals_left = 1

    if lease_lost:
        with pytest.raises(OperationFailed, match="lost the lease"):
            controller.run()
        lost = world.index("renew_failed")
        assert world.index("controller:failed-over") < lost  # the first check did its one action
        assert not any(e.kind.startswith("controller:") or e.kind in ("fence", "unfence", "set_primary")
                       for e in world.events[lost:])
        assert world.writable() == {P1, P2}  # left for the controller that holds the lease now
    else:
        controller.run()
        assert world.index("controller:fenced", P2) > world.index("controller:failed-over")
        assert world.writable() == {P1}
    assert world.index("unlead") > world.index("lead")  # the lease is let go either way
    assert world.platform.primary == P1


LOCK_LOST = [
    # id, the operation during which the lock is taken over, the step the action then stops before
    pytest.param("failover", "wait_applied", P1, "making mysql-1 the source", id="failover-catching-up"),
    pytest.param("failover", "replicate_from", P2, "making mysql-1 writable", id="failover-repointing"),
    pytest.param("failover", "unfence", P1, "publishing mysql-1 as the primary", id="failover-unfencing"),
    pytest.param("switchover", "wait_applied", P1, "making mysql-1 the source", id="switchover-catching-up"),
]
MOVES = ("fence", "unfence", "stop_receiving", "become_source", "replicate_from", "set_primary", "quarantine",
         "kill_server")


@pytest.mark.parametrize(("op", "during", "pod", "stopped_before"), LOCK_LOST)
def test_an_action_that_loses_its_lock_stops_before_its_next_step(env, op, during, pod, stopped_before):
    """Its Lease taken over midway (Kubernetes), a role change moves nothing more: whoever holds the
    lock now finishes, with never two writable nodes and nothing acknowledged lost."""
    world = env.world
    world.commit(n=3)
    if op == "failover":
        world.kill(P0)
    acked = list(world.acked)
    world.before(during, pod, lambda w: setattr(w.platform, "lock_lost", True))

    if op == "failover":
        tick(env.controller())
        refused = [e for e in world.events if e.kind == "controller:failover-refused"]
        assert [e.detail["reason"] for e in refused] == [f"lost the lock on cluster mysql: stopping before "
                                                         f"{stopped_before}"]
    else:
        with pytest.raises(OperationFailed, match=f"stopping before {stopped_before}$"), world.platform.lock():
            env.roles().switchover(to=P1)
    lost = world.index("lock_lost")
    assert not [e for e in world.events[lost:] if e.kind in MOVES]
    assert len(world.writable()) <= 1 and world.violations == []

    tick(env.controller(), 4)  # the successor
    assert world.platform.primary == P1 and world.has(P1, acked)
    assert_healthy(world, P1)


def test_failovers_are_blocked_for_a_while_after_one(env):
    world = env.world
    world.commit(n=2)
    world.kill(P0)
    controller = env.controller()
    tick(controller)
    assert world.platform.primary == P1
    world.restart(P0)
    tick(controller, 2)  # the old primary rejoins as a replica
    assert world.source_of(P0) == P1
    world.commit(n=2)

    world.kill(P1)  # the new primary dies too, soon after
    start = world.mark()
    tick(controller, 3)
    blocked = [e for e in world.events[start:] if e.kind == "controller:blocked"]
    assert len(blocked) == 1 and "blocked for another" in blocked[0].detail["reason"]
    assert not world.happened("controller:failing-over", since=start) and world.writable() == set()

    world.clock.advance(float(world.values["controller"]["blockPeriodSeconds"]))
    tick(controller)
    assert world.happened("controller:failed-over", since=start)
    assert world.platform.primary in (P0, P2)
    assert_healthy(world, world.platform.primary)


# -- recovery after restarts ----------------------------------------------------------------------------

RECOVER = [
    # id, what restarts (and how), who is promoted (None: nothing yet)
    pytest.param("all", P0, id="whole-cluster-restarted-old-primary-promoted-again"),
    pytest.param("all-but-one", None, id="a-node-with-data-still-down-waits"),
    pytest.param("old-primary-gone", P1, id="old-primary-without-data-most-caught-up-promoted"),
]


@pytest.mark.parametrize(("what", "expected"), RECOVER)
def test_recover(env, what, expected):
    world = env.world
    world.commit(n=3)
    with world.not_receiving(P2):
        world.commit()
    for pod in (P0, P1, P2):
        world.kill(pod)
    if what == "old-primary-gone":
        world.stop_pod(P0)
        world[P0].has_data = False
    for pod in (P2, P1, P0):  # the stale node answers first
        if what == "all-but-one" and pod == P1:
            continue
        if world[pod].running:
            world.restart(pod)
    start = world.mark()

    report = env.roles().recover()

    assert not world.happened("kill_server", since=start)  # nothing failed: nothing is killed
    if expected is None:
        assert report is None and world.writable() == set()
        assert not world.happened("become_source", since=start)
        return
    assert report["to"] == expected and report["lost"] == {}
    assert_healthy(world, expected)


def test_stale_role_labels_are_published_again(make):
    env = make(labels=True)
    world = env.world
    world.commit()
    world.detach(P2)
    world.errant_write(P2)
    controller = env.controller()
    tick(controller, 2)
    assert world[P2].quarantined and world[P2].role_label == "quarantined"
    world.restart(P2, recreated=True)  # a re-created pod carries the template's label
    assert world[P2].role_label == "replica"
    start = world.mark()
    tick(controller)
    assert world.index("controller:republishing", since=start) < world.index("set_primary", P0, since=start)
    assert world[P2].role_label == "quarantined" and world[P0].role_label == "primary"
    assert_healthy(world, P0, quarantined=frozenset({P2}))


def test_the_fake_records_a_second_writable_node_and_refuses_fenced_writes(env):
    """The checks above rest on these: unfencing a node while another is writable is a violation;
    a write through the primary name lands on the recorded primary and a fenced one refuses it."""
    world = env.world
    with world.seam.operator(world[P1].fqdn, timeout=1.0) as server:
        server.unfence()
    assert [v.writable for v in world.violations] == [(P0, P1)]
    with world.seam.operator(world[P0].fqdn, timeout=1.0) as server:
        server.fence(0)
    with pytest.raises(ServerError) as refused:
        world.seam.write_probe(world.platform.primary_fqdn(), timeout=1.0)
    assert refused.value.code == 1290
    world.hang(P1)
    began = world.clock.now
    with pytest.raises(ServerError), world.seam.operator(world[P1].fqdn, timeout=2.0):
        pass
    assert world.clock.now - began == 2.0  # a hung server costs the timeout, on the fake clock only
