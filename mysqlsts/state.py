"""Where a cluster's local state lives: one folder per cluster name under the state root."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def state_root(explicit: str | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser().resolve()
    if os.environ.get("MYSQLSTS_HOME"):
        return Path(os.environ["MYSQLSTS_HOME"]).expanduser().resolve()
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "mysqlsts"


def cluster_dir(root: Path, name: str) -> Path:
    return root / name


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write via a temp file and rename, so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_json(path: Path, data: Any, mode: int = 0o644) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode)
