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


def progress(message: str) -> None:
    print(f"[{time.monotonic() - _start:6.1f}s] {message}", file=sys.stderr, flush=True)


def _console() -> Console:
    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "200"))
    return Console(file=sys.stdout, width=width, highlight=False, soft_wrap=False)


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    t = Table(title=title, title_justify="left", show_lines=False)
    for c in columns:
        t.add_column(c, overflow="fold")
    for row in rows:
        t.add_row(*["" if v is None else str(v) for v in row])
    _console().print(t)


def line(text: str = "") -> None:
    print(text, flush=True)


def document(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")
