from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def run_cli(tmp_path):
    """Run the real console entry point in a subprocess, with a private state dir."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "MYSQLSTS_HOME": str(tmp_path / "state")}
        full_env.pop("KUBECONFIG", None)
        full_env.update(env or {})
        return subprocess.run([sys.executable, "-m", "mysqlsts", *args], capture_output=True, text=True,
                              env=full_env, timeout=timeout, cwd=tmp_path)

    return run
