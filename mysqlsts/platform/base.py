"""What the orchestrator needs from a platform; `local` and `kubernetes` implement it.

The orchestrator decides and the platform acts: it starts and stops pods,
publishes who the primary is (DNS name / role label), and lets this process
reach pods by their per-pod DNS names.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class PodInfo:
    name: str
    ordinal: int
    fqdn: str
    address: str | None  # current address; changes when the pod restarts
    running: bool
    ready: bool
    phase: str
    restarts: int
    has_data: bool
    quarantined: bool = False  # holds errant transactions; out of service until re-cloned
    started: bool = False  # the server container passed its startup probe (the server answers)
    outdated: bool = False  # runs an older pod template than the one applied (updates are OnDelete)
    role_label: str | None = None  # its role label; None where the platform publishes roles otherwise (local)


class Platform(Protocol):
    target: str
    name: str
    inside: bool  # can this process reach the pods by their per-pod DNS names?
    poll_interval: float  # how often to look at pods while waiting

    def describe(self) -> str: ...
    def exists(self) -> bool: ...
    # One mutating command per cluster. `held_by`: this process acts for a caller that holds it (a Job run
    # for a command outside the cluster): nothing is taken, and check_lock checks that caller still holds it.
    def lock(self, held_by: str | None = None) -> AbstractContextManager[None]: ...
    def lock_holder(self) -> str | None: ...  # who holds the cluster lock for this process; None: no Job needs it
    def leadership(self) -> AbstractContextManager[Callable[[], None]]: ...  # one controller; yields a check
    # Raise OperationFailed when a lock this process holds (or acts for) may be someone else's now: an action calls it
    # before each step, and one whose lock was lost stops before `before`. A lock that cannot be lost
    # while its holder lives (an flock) never raises.
    def check_lock(self, before: str) -> None: ...
    def ensure_controller(self, values: dict[str, Any]) -> str | None: ...  # run it when values enable it

    # values and Secret as last applied
    def values(self) -> dict[str, Any]: ...
    def passwords(self) -> dict[str, str]: ...
    # The values of the cluster, or of the data a destroy kept for a later bootstrap; None: neither.
    def recorded_values(self) -> dict[str, Any] | None: ...
    def stored_passwords(self) -> dict[str, str]: ...  # empty before the first apply
    # Passwords a change takes the servers to, kept beside the Secret's (the pods never see them) until
    # it is applied; None clears them.
    def stage_passwords(self, passwords: dict[str, str] | None) -> None: ...
    def staged_passwords(self) -> dict[str, str]: ...
    def apply(self, values: dict[str, Any], passwords: dict[str, str], objects: list[dict[str, Any]]) -> list[str]: ...

    # pods: start is a no-op where a controller starts them; stop waits until the old pod is gone
    def pods(self) -> list[PodInfo]: ...
    def start_pod(self, name: str) -> None: ...
    def stop_pod(self, name: str) -> None: ...
    def delete_pod_data(self, name: str) -> None: ...  # of a stopped pod
    def discard_data(self, name: str) -> None: ...  # stop the pod; it starts again with no data
    def kill_server(self, name: str) -> None: ...  # fence by force: it can only come back fenced
    def quarantine(self, name: str, reason: str) -> None: ...

    # drills: what this platform can break, and how (inject returns the undo); one drill at a time: a drill
    # takes the lock at once or is refused, a manual switchover/failover waits up to `wait` s, then is refused
    def drill_lock(self, wait: float = 0.0) -> AbstractContextManager[None]: ...
    def fault_unavailable(self, fault: str) -> str | None: ...
    def inject(self, name: str, fault: str) -> Callable[[], None]: ...
    def client_side_address(self) -> str | None: ...  # a client bound to it stays on an isolated pod's side
    def record_drill(self, report: dict[str, Any], metrics: str) -> str: ...  # where it went

    # who the primary is: recorded, and published under the primary name
    def set_primary(self, name: str | None) -> None: ...
    def recorded_primary(self) -> str | None: ...
    def primary_fqdn(self) -> str: ...

    # SQL: join the pods' network here, or run a mysqlsts command where it is
    def enter_network(self) -> None: ...
    def run_in_cluster(self, values: dict[str, Any], args: list[str], timeout: float) -> dict[str, Any]: ...

    def diagnose(self, name: str) -> list[str]: ...
    def destroy(self, delete_data: bool) -> None: ...


def unreachable(address: str, port: int, within: float) -> bool:
    """True once a TCP connection to address:port fails (refused or timed out) within `within` seconds:
    an isolate fault proves it took before a drill measures anything."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=1.0):
                pass
        except OSError:
            return True
        time.sleep(0.25)
    return False
