"""The mysqlsts image is built from what can be verified: Debian's signed packages and PyPI
wheels pinned by hash. Nothing is downloaded over plain HTTP or without a checksum."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
LOCK = (ROOT / "requirements.lock").read_text()


def locked() -> dict[str, list[str]]:
    """name -> hashes, from `name==version \\ --hash=sha256:... \\ ...` entries."""
    entries: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=\S)", LOCK):
        first = block.split()[0] if block.strip() else ""
        if not first or first.startswith("#"):
            continue
        assert re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[^\s\\]+", first), f"not pinned to one version: {first}"
        entries[canonicalize_name(first.split("==")[0].split("[")[0])] = re.findall(r"--hash=sha256:[0-9a-f]{64}",
                                                                                    block)
    return entries


def test_every_locked_package_is_pinned_with_hashes():
    entries = locked()
    assert entries and all(entries.values()), [name for name, hashes in entries.items() if not hashes]


def test_every_runtime_dependency_is_in_the_lock():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {canonicalize_name(Requirement(d).name) for d in project["dependencies"]}
    assert wanted - set(locked()) == set()


def test_the_image_installs_only_the_locked_hashes_and_downloads_nothing_unverified():
    assert "--require-hashes" in DOCKERFILE and "-r requirements.lock" in DOCKERFILE
    assert not re.search(r"\b(curl|wget|ADD\s+https?://)", DOCKERFILE)  # no fetch outside apt and pip
    assert "apt-get source" in DOCKERFILE  # socat (and its TLS library) from Debian's signed source packages
    assert "--no-deps" in DOCKERFILE  # the project itself adds nothing unlocked
