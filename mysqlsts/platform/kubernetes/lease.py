"""Leases: one holder at a time of a cluster's command lock, of its drill and of its controller.

A Lease is taken by creating it, or by replacing one whose holder stopped renewing with that
version as precondition (of two racing takers, one gets 409). While held it is renewed in the
background, each renewal with the version last written as precondition: a holder learns at its
next renewal that someone else wrote the Lease, and the actions it runs stop before their next
step. It is released by a delete with the same precondition, so a holder that lost its Lease
never deletes a successor's. A Job run for a command that holds the Lease outside the cluster reads it
before each step instead (`CallersLease`): it stops once that command no longer holds it."""

from __future__ import annotations

import copy
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from mysqlsts.chart.render import selector
from mysqlsts.errors import OperationFailed
from mysqlsts.output import progress
from mysqlsts.platform.kubernetes.api import Api, status_of

RENEWALS_PER_DURATION = 3  # a live holder renews this often per lease duration: a late renewal or two are fine


class Taken(OperationFailed):
    """The Lease is another live holder's: `message` names it, `detail` follows any waiting note."""

    def __init__(self, message: str, detail: str, holder: str):
        super().__init__(message + detail)
        self.message, self.detail, self.holder = message, detail, holder


class Lease:
    """A Lease this process holds, renewed in the background until released."""

    def __init__(self, api: Api, name: str, what: str, cluster: str, seconds: int, written: dict[str, Any],
                 since: float):
        self.api, self.name, self.what, self.cluster, self.seconds = api, name, what, cluster, seconds
        self.holder: str = written["spec"]["holderIdentity"]
        self.written = written  # as last written by us: its resourceVersion is every later write's precondition
        self.renewed = since  # monotonic time the last successful write was sent
        self.lost: str | None = None  # why it is someone else's now
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, daemon=True, name=f"renewing {name}")
        self._thread.start()

    @classmethod
    def take(cls, api: Api, name: str, what: str, cluster: str, seconds: int, holder: str) -> Lease:
        """One attempt: create the Lease, or take it over once its holder stopped renewing; Taken
        while another holder is live or wins the race."""
        since, now = time.monotonic(), datetime.now(UTC)
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": name, "labels": selector({"name": cluster})},
                 "spec": {"holderIdentity": holder, "leaseDurationSeconds": seconds,
                          "acquireTime": micro(now), "renewTime": micro(now)}}
        current = api.get("Lease", name)
        if current is not None:
            spec = current.get("spec") or {}
            expires = expiry(spec, seconds)
            if spec.get("holderIdentity") and expires and now < expires:
                raise Taken(f"another {what} ({spec['holderIdentity']}) is working on cluster {cluster!r}",
                            f"; its lock expires at {expires}", f" ({spec['holderIdentity']})")
            lease["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        try:
            if current is None:
                written = api.create(lease)
            else:
                written = api.call("replace", "Lease", name, api.namespace, lease,
                                   what=f"taking over the expired lock {name}")
        except OperationFailed as e:
            if status_of(e) == 409:
                raise Taken(f"another {what} took the lock on cluster {cluster!r} first",
                            "; try again when it is done", "") from e
            raise
        return cls(api, name, what, cluster, seconds, plain(api, written), since)

    def check(self, before: str) -> None:
        """Raise when the Lease may be someone else's now: the action stops before `before`."""
        why = self.lost
        if why is None and time.monotonic() - self.renewed >= self.seconds:
            why = f"not renewed for {self.seconds}s, so it may have expired and been taken over"
        if why is not None:
            raise OperationFailed(f"lost the {self.what} lock on cluster {self.cluster!r} (Lease {self.name}: "
                                  f"{why}): stopping before {before}")

    def release(self) -> None:
        """Stop renewing; delete the Lease only while it is the version we wrote last."""
        self._stop.set()
        self._thread.join()  # a renewal under way finishes first: its version is the one to delete
        if self.lost is not None:
            return
        try:
            self.api.delete("Lease", self.name, version=self.written["metadata"].get("resourceVersion"))
        except OperationFailed as e:
            if status_of(e) != 409:
                raise
            progress(f"Lease {self.name}: written by another holder since our last renewal; left to it")

    def _keep(self) -> None:
        while not self._stop.wait(self.seconds / RENEWALS_PER_DURATION) and self.lost is None:
            self._renew()

    def _renew(self) -> None:
        sent = time.monotonic()
        lease = copy.deepcopy(self.written)
        lease["spec"]["renewTime"] = micro(datetime.now(UTC))
        try:
            written = self.api.call("replace", "Lease", self.name, self.api.namespace, lease,
                                    what=f"renewing {self.name}")
        except OperationFailed as e:
            status = status_of(e)
            if status in (404, 409):
                self.lost = "it was deleted" if status == 404 else self._successor()
            else:  # the API server did not answer for a while: try again, `check` minds the expiry
                progress(f"warning: {e.problems[0]}")
            return
        self.written, self.renewed = plain(self.api, written), sent

    def _successor(self) -> str:
        """Who wrote the Lease instead of us, in words."""
        try:
            holder = ((self.api.get("Lease", self.name) or {}).get("spec") or {}).get("holderIdentity")
        except OperationFailed:
            holder = None
        return f"{holder} holds it now" if holder else "another writer changed it"


class CallersLease:
    """A Lease the caller of this process holds: a command outside the cluster whose role change runs
    here, in a Job. Never written here; read at each check, so the Job stops before its next step once
    that caller was killed or cut off (its Lease expired) or lost the Lease to another holder."""

    def __init__(self, api: Api, name: str, what: str, cluster: str, holder: str):
        self.api, self.name, self.what, self.cluster, self.holder = api, name, what, cluster, holder

    def check(self, before: str) -> None:
        """One GET (retried as any call): raise unless the caller still holds the Lease, unexpired."""
        try:
            why = self._not_held(self.api.get("Lease", self.name))
        except OperationFailed as e:
            why = f"it could not be read: {e.problems[0]}"
        if why is not None:
            raise OperationFailed(f"the caller's {self.what} lock on cluster {self.cluster!r} (Lease {self.name}) "
                                  f"is no longer held by {self.holder} ({why}): stopping before {before}")

    def _not_held(self, current: dict[str, Any] | None) -> str | None:
        """Why the caller holds the Lease no longer, in words; None while it does."""
        if current is None:
            return "it was deleted"
        spec = current.get("spec") or {}
        if spec.get("holderIdentity") != self.holder:
            return f"{spec.get('holderIdentity') or 'no one'} holds it now"
        expires = expiry(spec, 0)
        if expires is None or datetime.now(UTC) >= expires:
            return f"it expired at {expires}: its holder stopped renewing it"
        return None


def expiry(spec: dict[str, Any], seconds: int) -> datetime | None:
    """When a Lease expires unless renewed: its renewTime plus its duration (else `seconds`)."""
    renewed = parse_time(spec.get("renewTime"))
    return renewed + timedelta(seconds=spec.get("leaseDurationSeconds") or seconds) if renewed else None


def plain(api: Api, obj: Any) -> dict[str, Any]:
    """A call's result as JSON data (a retried write that was ours comes back as data already)."""
    return obj if isinstance(obj, dict) else api.client.sanitize_for_serialization(obj)


def micro(t: datetime) -> str:
    """RFC 3339 with microseconds, as Lease times must be; never a zero fraction, which the
    client's round trip through datetime would drop."""
    return t.replace(microsecond=t.microsecond or 1).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
