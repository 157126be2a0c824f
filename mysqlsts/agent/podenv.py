"""What the pod agent knows about its pod: the environment every pod script gets (script_env in
mysqlsts/chart/render.py), the files on the pod's volumes it shares with the scripts (the same names
as charts/mysql-sts/scripts/lib.sh gives them), and the passwords from the Secret volume."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mysqlsts.chart.secrets import PASSWORD_FILES
from mysqlsts.decisions.lag import LagBound
from mysqlsts.errors import BadInput
from mysqlsts.flavors import FLAVORS, Flavor

REQUIRED = ("POD_NAME", "CLUSTER_NAME", "HEADLESS_SERVICE", "POD_NAMESPACE", "CLUSTER_DOMAIN", "FLAVOR",
            "MYSQL_PORT", "MAX_LAG_SECONDS", "SEMI_SYNC", "PV_DIR", "RUN_DIR", "SECRETS_DIR")


def optional_int(environ: Mapping[str, str], name: str) -> int | None:
    """A setting a pod rendered by an earlier chart does not have, or has empty (off): None."""
    return int(environ[name]) if environ.get(name) else None


@dataclass(frozen=True)
class PodEnv:
    pod: str
    cluster: str
    headless: str
    namespace: str
    domain: str
    flavor: Flavor
    port: int
    bound: LagBound  # how far behind a replica may be and still be ready
    throttle_behind: int | None  # the primary's flow control (failover.throttleBehindTransactions); None: off
    semi_sync: bool
    semi_sync_acks: int  # replicas that acknowledge each commit
    binlog_retention: int | None  # seconds a binary log every peer holds is kept (None: never purged)
    primary_service: str | None  # the name writes go to: the recorded primary's (None: rendered before it)
    pv_dir: Path
    run_dir: Path
    secrets_dir: Path
    tls_dir: Path | None  # the TLS volume (None: rendered before TLS)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> PodEnv:
        missing = [k for k in REQUIRED if not environ.get(k)]
        if missing:
            raise BadInput(f"not in a pod of the StatefulSet: {', '.join(missing)} not set (the agent reads the "
                           "environment the chart gives its containers)")
        if environ["FLAVOR"] not in FLAVORS:
            raise BadInput(f"FLAVOR: unknown flavor {environ['FLAVOR']!r}")
        return cls(pod=environ["POD_NAME"], cluster=environ["CLUSTER_NAME"], headless=environ["HEADLESS_SERVICE"],
                   namespace=environ["POD_NAMESPACE"], domain=environ["CLUSTER_DOMAIN"],
                   flavor=FLAVORS[environ["FLAVOR"]], port=int(environ["MYSQL_PORT"]),
                   bound=LagBound(int(environ["MAX_LAG_SECONDS"]), optional_int(environ, "MAX_BEHIND_TRANSACTIONS")),
                   throttle_behind=optional_int(environ, "THROTTLE_BEHIND_TRANSACTIONS"),
                   semi_sync=environ["SEMI_SYNC"] == "true",
                   semi_sync_acks=optional_int(environ, "SEMI_SYNC_ACKS") or 1,
                   binlog_retention=optional_int(environ, "BINLOG_RETENTION_SECONDS"),
                   primary_service=environ.get("PRIMARY_SERVICE") or None,
                   pv_dir=Path(environ["PV_DIR"]), run_dir=Path(environ["RUN_DIR"]),
                   secrets_dir=Path(environ["SECRETS_DIR"]),
                   tls_dir=Path(environ["TLS_DIR"]) if environ.get("TLS_DIR") else None)

    # -- the files it shares with the scripts (lib.sh names them too) --------------------------

    @property
    def data_dir(self) -> Path:
        return self.pv_dir / "data"

    @property
    def recorded_primary_file(self) -> Path:  # the primary this pod last followed (or itself)
        return self.pv_dir / "recorded-primary"

    @property
    def quarantine_file(self) -> Path:  # errant transactions found: never rejoin by itself
        return self.pv_dir / "quarantined"

    @property
    def bootstrap_marker(self) -> Path:  # init-mysql just created the first primary: promote it once
        return self.pv_dir / "bootstrap-primary"

    @property
    def socket(self) -> Path:
        return self.run_dir / "mysqld.sock"

    @property
    def ready_file(self) -> Path:  # the agent's readiness verdict: empty = ready, else the reason
        return self.run_dir / "agent-ready"

    @property
    def role_file(self) -> Path:  # what the pod can serve as, for clone donors: primary, replica or none
        return self.run_dir / "agent-role"

    @property
    def stop_request_file(self) -> Path:  # probe.sh prestop: fence the server, the pod is going away
        return self.run_dir / "stopping"

    @property
    def fenced_file(self) -> Path:  # the agent's answer to a stop request
        return self.run_dir / "fenced"

    # -- names -----------------------------------------------------------------------------------

    def fqdn(self, pod: str) -> str:
        return f"{pod}.{self.headless}.{self.namespace}.svc.{self.domain}"

    @property
    def primary_fqdn(self) -> str | None:
        if self.primary_service is None:
            return None
        return f"{self.primary_service}.{self.namespace}.svc.{self.domain}"

    @property
    def own_fqdn(self) -> str:
        return self.fqdn(self.pod)

    def peers(self) -> list[str]:
        """Pods of the set that DNS knows, self excluded. Ordinals are contiguous, so stop after a few
        names in a row that do not resolve (as lib.sh's peer_pods)."""
        found, misses, i = [], 0, 0
        while misses < 3:
            name = f"{self.cluster}-{i}"
            if name == self.pod:
                misses = 0
            elif resolves(self.fqdn(name)):
                found.append(name)
                misses = 0
            else:
                misses += 1
            i += 1
        return found

    def tls_files(self) -> str:
        """What the TLS volume holds now, as one fingerprint: a renewed certificate changes it."""
        if self.tls_dir is None:
            return ""
        digest = hashlib.sha256()
        for name in ("ca.crt", "tls.crt", "tls.key"):
            try:
                digest.update((self.tls_dir / name).read_bytes())
            except OSError:
                digest.update(b"-")
        return digest.hexdigest()

    def ca(self) -> str | None:
        """The cluster's CA (PEM), which signs every pod's certificate; None without a TLS volume."""
        try:
            return (self.tls_dir / "ca.crt").read_text() if self.tls_dir else None
        except OSError as e:
            raise BadInput(f"ca.crt missing or unreadable in {self.tls_dir}: {e.strerror}") from e

    def passwords(self) -> dict[str, str]:
        """The passwords, by values key (rootPassword, ...), from the Secret volume's files; trailing
        newlines dropped, as the scripts do (a file made by hand often ends with one)."""
        out = {}
        for key, file in PASSWORD_FILES.items():
            path = self.secrets_dir / file
            try:
                value = path.read_text().rstrip("\n")
            except OSError as e:
                raise BadInput(f"secret {file} missing or unreadable in {self.secrets_dir}: {e.strerror}") from e
            if not value:
                raise BadInput(f"secret {file} is empty in {self.secrets_dir}")
            out[key] = value
        return out


def resolves(name: str) -> bool:
    try:
        socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        return True
    except (socket.gaierror, UnicodeError):
        return False
