"""Signals that end a command (Ctrl-C, SIGTERM, a closed terminal's SIGHUP) end it like Ctrl-C, so its
cleanup runs; but never in the middle of a role change: a switchover stopped between the fence and the
promotion would leave no writable node. Those signals wait for the change to finish (or roll back)."""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from mysqlsts.output import progress

ENDING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_lock = threading.RLock()  # the handler runs in the main thread, which may hold it
_changing = 0  # role changes in progress, in any thread
_pending: int | None = None  # a signal that came during one


def _handle(signum: int, frame) -> None:
    global _pending
    with _lock:
        deferred = _changing > 0
        if deferred:
            _pending = signum
    if not deferred:
        raise KeyboardInterrupt
    progress(f"{signal.Signals(signum).name} received: finishing the role change in progress first")


def install() -> None:
    """From the main thread, once: the handler for every signal that ends a command."""
    for signum in ENDING:
        signal.signal(signum, _handle)


@contextmanager
def role_change() -> Iterator[None]:
    global _changing, _pending
    with _lock:
        _changing += 1
    try:
        yield
    finally:
        with _lock:
            _changing -= 1
            deferred = _pending if _changing == 0 else None
            if deferred is not None:
                _pending = None
        if deferred is not None:
            signal.raise_signal(deferred)  # handled in the main thread, now that nothing is changing


P = ParamSpec("P")
R = TypeVar("R")


def uninterrupted(fn: Callable[P, R]) -> Callable[P, R]:
    """A method that moves roles: signals that end the command wait until it returns."""
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with role_change():
            return fn(*args, **kwargs)
    return wrapper
