"""Passwords and TLS material: supplied passwords are kept, missing ones generated once and then reused.

Generated passwords are stored in the cluster's secret file (mode 0600, the
only file that ever holds them) under the state directory, so rendering the
same cluster again yields the same Secret. A password given in values always
wins and replaces the stored one. The cluster's CA and certificate
(mysqlsts/chart/tls.py) travel with the passwords: generated at the first
render, then kept.
"""

from __future__ import annotations

import secrets
import string
from pathlib import Path

from mysqlsts.chart import tls
from mysqlsts.chart.values import Values
from mysqlsts.errors import BadInput
from mysqlsts.state import read_json, write_json

KEYS = ("rootPassword", "replicationPassword", "operatorPassword", "cloneSecret")
# values key -> key in the Kubernetes Secret's data
SECRET_DATA_KEYS = {"rootPassword": "root-password", "replicationPassword": "replication-password",
                    "operatorPassword": "operator-password", "cloneSecret": "clone-secret", **tls.DATA_KEYS}
PASSWORD_FILES = {k: SECRET_DATA_KEYS[k] for k in KEYS}  # what the scripts read from the secrets volume
_ALPHABET = string.ascii_letters + string.digits


def generate(length: int = 32) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def stored(store: Path | None) -> dict[str, str]:
    """The passwords kept in a cluster's secret file, or none."""
    if store is None or not store.is_file():
        return {}
    try:
        return read_json(store)
    except ValueError as e:
        raise BadInput(f"{store}: the cluster's secret file is not valid JSON ({e}); fix or remove it") from e


def merge(values: Values, kept: dict[str, str]) -> tuple[dict[str, str], bool]:
    """Supplied passwords win, then kept ones, then new ones; the TLS pair is kept or made once;
    and whether that differs from what was kept."""
    auth = values["auth"]
    out = {key: auth.get(key) or kept.get(key) or generate() for key in KEYS}
    out.update(tls.keep_or_generate(values, kept))
    return out, out != {k: kept.get(k) for k in SECRET_DATA_KEYS}


def save(store: Path, passwords: dict[str, str]) -> None:
    write_json(store, passwords, mode=0o600)
