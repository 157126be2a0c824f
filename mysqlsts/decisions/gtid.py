"""GTID arithmetic for both flavors, as immutable values.

MySQL: a GTID set, `uuid:1-5:7,uuid2:1-3`: exact sets of transactions per
source uuid. MariaDB: a GTID position, `domain-server-seq,...`: the last
transaction applied per replication domain; everything before it in that
domain is implied. Both answer the same questions: is A contained in B, what
does A have that B lacks, the union, and who originated what.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

from mysqlsts import flavors
from mysqlsts.flavors import Flavor


class GtidError(ValueError):
    """Text that is not GTIDs in the flavor's notation. The layer that called `parse` with what a
    server said turns it into its own error (see `mysqlsts.errors.failing_as`)."""


class Gtids(Protocol):
    def contains(self, other: Gtids) -> bool: ...
    def minus(self, other: Gtids) -> Gtids: ...
    def union(self, other: Gtids) -> Gtids: ...
    def count(self) -> int: ...
    def originated_by(self, origin: str) -> Gtids: ...
    def __bool__(self) -> bool: ...


Interval = tuple[int, int]  # inclusive


def _merge(intervals: list[Interval]) -> tuple[Interval, ...]:
    out: list[Interval] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return tuple(out)


def _subtract(a: tuple[Interval, ...], b: tuple[Interval, ...]) -> tuple[Interval, ...]:
    out = []
    for start, end in a:
        pieces = [(start, end)]
        for bs, be in b:
            next_pieces = []
            for ps, pe in pieces:
                if be < ps or bs > pe:
                    next_pieces.append((ps, pe))
                    continue
                if ps < bs:
                    next_pieces.append((ps, bs - 1))
                if pe > be:
                    next_pieces.append((be + 1, pe))
            pieces = next_pieces
        out.extend(pieces)
    return _merge(out)


@dataclass(frozen=True)
class MysqlGtidSet:
    sets: dict[str, tuple[Interval, ...]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> MysqlGtidSet:
        sets: dict[str, list[Interval]] = {}
        for part in (text or "").replace("\n", "").split(","):
            part = part.strip()
            if not part:
                continue
            uuid, *ranges = part.split(":")
            if not ranges or not re.fullmatch(r"[0-9a-fA-F-]{36}", uuid):
                raise GtidError(f"not a MySQL GTID set: {text!r}")
            for r in ranges:
                lo, _, hi = r.partition("-")
                sets.setdefault(uuid.lower(), []).append((int(lo), int(hi or lo)))
        return cls({u: _merge(iv) for u, iv in sets.items()})

    def __str__(self) -> str:
        return ",".join(u + "".join(f":{s}" if s == e else f":{s}-{e}" for s, e in iv)
                        for u, iv in sorted(self.sets.items()) if iv)

    def __bool__(self) -> bool:
        return any(self.sets.values())

    def minus(self, other: Gtids) -> MysqlGtidSet:
        assert isinstance(other, MysqlGtidSet)
        out = {u: _subtract(iv, other.sets.get(u, ())) for u, iv in self.sets.items()}
        return MysqlGtidSet({u: iv for u, iv in out.items() if iv})

    def contains(self, other: Gtids) -> bool:
        return not other.minus(self)

    def union(self, other: Gtids) -> MysqlGtidSet:
        assert isinstance(other, MysqlGtidSet)
        keys = set(self.sets) | set(other.sets)
        return MysqlGtidSet({u: _merge([*self.sets.get(u, ()), *other.sets.get(u, ())]) for u in keys})

    def count(self) -> int:
        return sum(e - s + 1 for iv in self.sets.values() for s, e in iv)

    def originated_by(self, origin: str) -> MysqlGtidSet:
        """Transactions first committed on the server with this server_uuid."""
        iv = self.sets.get(origin.lower())
        return MysqlGtidSet({origin.lower(): iv} if iv else {})


@dataclass(frozen=True)
class MariadbGtidPos:
    """domain -> (server_id, seq) of the last transaction in that domain."""

    domains: dict[int, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> MariadbGtidPos:
        domains = {}
        for part in (text or "").split(","):
            part = part.strip()
            if not part:
                continue
            m = re.fullmatch(r"(\d+)-(\d+)-(\d+)", part)
            if not m:
                raise GtidError(f"not a MariaDB GTID position: {text!r}")
            domain, server, seq = int(m[1]), int(m[2]), int(m[3])
            if domain not in domains or domains[domain][1] < seq:  # named twice (binlog, replication): the further
                domains[domain] = (server, seq)
        return cls(domains)

    def __str__(self) -> str:
        return ",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(self.domains.items()))

    def __bool__(self) -> bool:
        return any(n > 0 for _, n in self.domains.values())

    def minus(self, other: Gtids) -> MariadbGtidPos:
        """Per domain, this position when the other has not reached it (same sequence number
        from another server counts as not reached: the histories diverged there)."""
        assert isinstance(other, MariadbGtidPos)
        out = {}
        for d, (server, seq) in self.domains.items():
            theirs = other.domains.get(d)
            if seq == 0:
                continue
            if theirs is None or theirs[1] < seq or (theirs[1] == seq and theirs[0] != server):
                out[d] = (server, seq)
        return MariadbGtidPos(out)

    def contains(self, other: Gtids) -> bool:
        return not other.minus(self)

    def union(self, other: Gtids) -> MariadbGtidPos:
        """Per domain, the further position (histories split at one sequence number keep this one's)."""
        assert isinstance(other, MariadbGtidPos)
        out = dict(self.domains)
        for d, (server, seq) in other.domains.items():
            if d not in out or out[d][1] < seq:
                out[d] = (server, seq)
        return MariadbGtidPos(out)

    def count(self) -> int:
        return sum(n for _, n in self.domains.values())

    def originated_by(self, origin: str) -> MariadbGtidPos:
        """Domains whose last transaction this server_id committed."""
        return MariadbGtidPos({d: (s, n) for d, (s, n) in self.domains.items() if str(s) == str(origin)})


_NOTATIONS = {"set": MysqlGtidSet.parse, "position": MariadbGtidPos.parse}


def parse(flavor: Flavor | str, text: str | None) -> Gtids:
    """GTIDs in the flavor's notation; `flavor` may be given by name."""
    return _NOTATIONS[(flavors.get(flavor) if isinstance(flavor, str) else flavor).gtid_notation](text)
