"""Errors that end a command with a message instead of a traceback.

Exit codes are part of the command-line contract: 2 for bad input (nothing was
done), 1 for an operation that failed or a cluster that is unhealthy.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class MysqlstsError(Exception):
    exit_code = 1

    def __init__(self, problems: str | Iterable[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class BadInput(MysqlstsError):
    """The user's values, flags or arguments are wrong; nothing was changed."""

    exit_code = 2


class OperationFailed(MysqlstsError):
    """The command ran but could not reach its goal."""

    exit_code = 1


@contextmanager
def failing_as(*kinds: type[Exception]) -> Iterator[None]:
    """Where a lower layer's own error (e.g. a server's unreadable GTIDs) reaches a command:
    it ends the command as OperationFailed, with the same message."""
    try:
        yield
    except kinds as e:
        raise OperationFailed(str(e)) from e
