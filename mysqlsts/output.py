"""What commands print: progress on stderr, tables or one JSON document on stdout."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

_start = time.monotonic()


def _gone(stream) -> None:
    """The reader went away (`mysqlsts drill | head`, a closed terminal): what is left to print goes
    nowhere, and the command carries on; it must not stop in the middle of a role change for that."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stream.fileno())
    os.close(devnull)


def _emit(stream, write) -> None:
    try:
        write()
        stream.flush()
    except BrokenPipeError:
        _gone(stream)


def progress(message: str) -> None:
    _emit(sys.stderr, lambda: print(f"[{time.monotonic() - _start:6.1f}s] {message}", file=sys.stderr))


def _console() -> Console:
    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "200"))
    return Console(file=sys.stdout, width=width, highlight=False, soft_wrap=False)


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    t = Table(title=title, title_justify="left", show_lines=False)
    for c in columns:
        t.add_column(c, overflow="fold")
    for row in rows:
        t.add_row(*["" if v is None else str(v) for v in row])
    _emit(sys.stdout, lambda: _console().print(t))


def line(text: str = "") -> None:
    _emit(sys.stdout, lambda: print(text))


def document(data: Any) -> None:
    _emit(sys.stdout, lambda: sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"))
