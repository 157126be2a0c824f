"""The pod scripts: shellcheck-clean, parse with bash -n, strict mode everywhere."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).parent.parent / "charts" / "mysql-sts" / "scripts").glob("*.sh"))
RUNNABLE = [s for s in SCRIPTS if s.name != "lib.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_clean(script):
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed (apt-get install shellcheck); .ci/run installs it")
    result = subprocess.run(["shellcheck", "-x", "-P", str(script.parent), str(script)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_parses(script):
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


@pytest.mark.parametrize("script", RUNNABLE, ids=lambda p: p.name)
def test_strict_mode_and_shared_library(script):
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    code = [line for line in lines[1:] if line.strip() and not line.startswith("#")]
    assert code[0] == "set -euo pipefail"
    if script.name != "install-tools.sh":  # runs in the mysqlsts image, before the secrets matter
        assert any(line.startswith("source ") and "lib.sh" in line for line in lines)


def test_no_script_puts_a_secret_in_arguments():
    for script in SCRIPTS:
        for n, line in enumerate(script.read_text().splitlines(), 1):
            if "--password" in line or " -p\"$" in line or "-p$" in line:
                pytest.fail(f"{script.name}:{n} passes a password as an argument: {line.strip()}")


def test_the_kind_scripts_preload_the_charts_default_images():
    """The stock kind path preloads (and never pulls at run time) exactly the images the chart defaults to."""
    import yaml

    root = Path(__file__).parent.parent
    values = yaml.safe_load((root / "charts" / "mysql-sts" / "values.yaml").read_text())["images"]
    defaults = {values[f][role] for f in ("mysql", "mariadb") for role in ("server", "backup")}
    listed = subprocess.run(["bash", "-c", 'source scripts/kind/lib.sh && printf "%s\\n" "${STOCK_SERVER_IMAGES[@]}"'],
                            capture_output=True, text=True, cwd=root, check=True).stdout.split()
    assert set(listed) == defaults
