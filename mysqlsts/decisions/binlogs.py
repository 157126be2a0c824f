"""Which binary logs a server may purge, pure. Every pod keeps its own (replicas log what they apply,
to serve as the next primary), and a node that reconnects, or a copy that starts replicating from
where its donor stood, asks a source for everything after its position: purging what it still lacks
cuts it off (error 1236) and costs a re-clone. So a log goes only once every peer holds all it
contains, and only once it is older than the retention (mysql.binlogRetentionHours), which covers a
clone under way: its copy starts from where its donor stood when it was taken, and it is no peer yet."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from mysqlsts.decisions.gtid import Gtids


@dataclass(frozen=True)
class Binlog:
    name: str
    idle: float  # seconds since it was last written (its file's mtime)
    preceded_by: Gtids | None  # what was logged before it: its Previous_gtids / Gtid_list event (None: unread)


def purge_to(logs: list[Binlog], peers: dict[str, Gtids | None], retention: float) -> tuple[str | None, str]:
    """The oldest log to keep, for PURGE BINARY LOGS TO (None: purge nothing), and why it stops there.
    `logs`: oldest first, the active one last (never purged). `peers`: what each other pod of the set
    holds, None when it does not answer (down, restarting or being cloned: it may need any of them)."""
    silent = sorted(name for name, held in peers.items() if held is None)
    if silent:
        return None, f"{', '.join(silent)} {'does' if len(silent) == 1 else 'do'} not answer"
    keep = None
    for log, after in pairwise(logs):
        if after.preceded_by is None:
            return keep, f"what precedes {after.name} is unknown"
        lacking = sorted(name for name, held in peers.items() if not held.contains(after.preceded_by))
        if log.idle < retention:
            return keep, f"{log.name} is within the retention ({retention:.0f}s)"
        if lacking:
            return keep, f"{', '.join(lacking)} {'lacks' if len(lacking) == 1 else 'lack'} some of {log.name}"
        keep = after.name
    return keep, "all but the active binary log go" if keep else "only the active binary log"
