"""How far behind a replica's applier is and when it would catch up: pure, no servers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mysqlsts.decisions.failover import Node, node_of_state
from mysqlsts.decisions.lag import (
    DELAY_MAX_US,
    DELAY_STEP_US,
    LagBound,
    Sample,
    apply_rate,
    behind,
    catch_up,
    catch_up_seconds,
    commit_delay,
    remember,
    unapplied,
)
from mysqlsts.flavors import MARIADB, MYSQL
from mysqlsts.model import ServerState

UUID = "3e11fa47-71ca-11e1-9e33-c80aa9429562"


def state(gtid: str, retrieved: str = "", writable: bool = False) -> ServerState:
    return ServerState(read_only=not writable, super_read_only=not writable, gtid=gtid,
                       source_host=None if writable else "mysql-0.mysql.default.svc.cluster.local",
                       io_running="Yes", sql_running="Yes", lag=0, last_error="", semi_sync_source_on=writable,
                       semi_sync_replica_on=not writable, retrieved=retrieved)


@pytest.mark.parametrize(("flavor", "executed", "retrieved", "pending"), [
    (MYSQL, f"{UUID}:1-100", f"{UUID}:1-130", 30),
    (MYSQL, f"{UUID}:1-100", f"{UUID}:90-100", 0),  # everything received is applied
    (MYSQL, f"{UUID}:1-100", "", 0),  # nothing received since the last restart
    (MARIADB, "0-100-500", "0-100-520", 20),
    (MARIADB, "0-100-500,1-101-7", "0-100-500,1-101-9", 2),
    (MARIADB, "0-100-500", "0-100-480", 0),  # the receiver's position is older than what was applied
])
def test_behind_counts_what_was_received_and_not_applied(flavor, executed, retrieved, pending):
    assert behind(node_of_state("mysql-1", state(executed, retrieved), flavor)) == pending


def test_behind_is_unknown_for_a_node_that_does_not_answer():
    assert behind(Node("mysql-1", reachable=False)) is None


def test_the_rate_is_measured_over_the_window_and_starts_over_after_a_restart():
    samples: tuple[Sample, ...] = ()
    for t in range(0, 30):
        samples = remember(samples, Sample(float(t), 100 * t))
    assert samples[0].at == 19.0 and len(samples) == 11  # the last 10 s
    assert apply_rate(samples) == pytest.approx(100.0)
    restarted = remember(samples, Sample(30.0, 5))  # fewer applied: a fresh count (a re-clone, a restart)
    assert restarted == (Sample(30.0, 5),) and apply_rate(restarted) is None


def test_no_rate_from_one_sample_or_samples_too_close_together():
    assert apply_rate((Sample(1.0, 10),)) is None
    assert apply_rate((Sample(1.0, 10), Sample(1.2, 50))) is None


@pytest.mark.parametrize(("pending", "rate", "expected"), [
    (0, None, 0.0), (0, 0.0, 0.0), (300, 100.0, 3.0), (300, 0.0, None), (300, None, None), (None, 50.0, None),
])
def test_catch_up_seconds(pending, rate, expected):
    assert catch_up_seconds(pending, rate) == expected


@given(st.integers(min_value=1, max_value=10**9), st.floats(min_value=0.001, max_value=1e9))
def test_catching_up_takes_longer_the_more_is_pending(pending, rate):
    assert catch_up_seconds(pending, rate) < catch_up_seconds(pending + 1, rate)


def test_the_controller_reports_each_answering_replica_and_never_the_primary():
    nodes = [node_of_state("mysql-0", state("0-100-900", writable=True), MARIADB),
             node_of_state("mysql-1", state("0-100-500", "0-100-800"), MARIADB),
             node_of_state("mysql-2", state("0-100-800", "0-100-800"), MARIADB),
             Node("mysql-3", reachable=False)]
    history = {"mysql-1": (Sample(0.0, 400), Sample(2.0, 500))}
    assert catch_up(nodes, history) == {
        "mysql-1": {"behind": 300, "apply_rate": 50.0, "expected_seconds": 6.0},
        "mysql-2": {"behind": 0, "apply_rate": None, "expected_seconds": 0.0},
    }


@pytest.mark.parametrize(("flavor", "st", "expected"), [
    (MARIADB, state("0-100-500", "0-100-520"), 20),
    (MARIADB, state("0-100-500", "0-100-520", writable=True), None),  # a primary replicates from no one
    (MARIADB, None, None),  # it did not answer
    (MYSQL, state(f"{UUID}:1-100", f"{UUID}:1-101"), 1),
    (MARIADB, state("not a position", "0-100-520"), None),  # unreadable: unknown, never an error in `status`
])
def test_unapplied_as_status_and_verify_show_it(flavor, st, expected):
    assert unapplied(st, flavor) == expected


@pytest.mark.parametrize(("lag", "pending", "problem"), [
    (10, 1000, None),  # at the bound is within it
    (11, 0, "lag 11s exceeds 10s"),
    (None, 0, "lag -s exceeds 10s"),  # the server cannot tell: too far
    (0, 1001, "1001 transactions received but not applied exceeds 1000"),
    (0, None, None),  # GTIDs unreadable: the seconds decide
])
def test_the_lag_bound_holds_in_seconds_and_in_transactions(lag, pending, problem):
    assert LagBound(seconds=10, transactions=1000).exceeded(lag, pending) == problem


# (backlogs of the primary's replicas, current delay, limit, next delay)
THROTTLE = [
    ([5000, 3000], 0, 1000, DELAY_STEP_US),  # every replica far behind: start
    ([5000, 3000], 4000, 1000, 8000),  # still: double
    ([5000, 3000], DELAY_MAX_US, 1000, DELAY_MAX_US),  # and never beyond the largest
    ([80_000, 70_000], 64_000, 1000, DELAY_MAX_US),
    ([5000, 10], 8000, 1000, 4000),  # one replica keeps up: a failover to it is short, so ease off
    ([5000, None], 0, 1000, DELAY_STEP_US),  # one says nothing: the others decide
    ([None, None], 8000, 1000, 0),  # nobody to wait for: no throttle
    ([], 8000, 1000, 0),
    ([800, 900], 8000, 1000, 8000),  # between half the limit and the limit: hold
    ([500, 900], 8000, 1000, 4000),  # at half: ease off
    ([0, 0], DELAY_STEP_US, 1000, 0),  # below the smallest step: off
    ([5000, 3000], 8000, None, 0),  # throttle off
]


@pytest.mark.parametrize(("backlogs", "current", "limit", "delay"), THROTTLE)
def test_the_commit_throttle_follows_the_best_replica(backlogs, current, limit, delay):
    assert commit_delay(backlogs, current, limit) == delay


@given(st.lists(st.one_of(st.none(), st.integers(0, 10**7)), max_size=5),
       st.one_of(st.just(0), st.integers(DELAY_STEP_US, DELAY_MAX_US)), st.integers(2, 10**6))
def test_the_commit_delay_stays_within_its_range_and_grows_only_when_every_replica_is_far_behind(
        backlogs, current, limit):
    delay = commit_delay(backlogs, current, limit)
    assert delay == 0 or DELAY_STEP_US <= delay <= DELAY_MAX_US
    known = [b for b in backlogs if b is not None]
    if delay > current:
        assert known and min(known) > limit


def test_a_throttle_eases_off_to_nothing_once_a_replica_caught_up():
    delay, looks = DELAY_MAX_US, 0
    while delay:
        delay, looks = commit_delay([0, 40], delay, 1000), looks + 1
    assert looks <= 7  # 100 ms halved down to below 1 ms within seconds of looks
