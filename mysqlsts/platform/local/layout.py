"""Where a local cluster keeps everything: one folder per cluster, one per pod.

    <state root>/<name>/
      values.json      effective values (no passwords)
      secret.json      the Secret's data, mode 0600: the only file with passwords
      objects.json     rendered objects except the Secret
      cluster.json     network block, address counter, recorded primary
      dns/             dnsmasq config, hosts and pid; resolv.conf for the cluster
      pods/<pod>/pv/   the pod's PersistentVolume (kept unless --delete-data)
      pods/<pod>/...   home (ConfigMap mount), conf, tmp, logs, status.json,
                       secrets/ and tls/ (the Secret volumes: files mode 0440, written at pod start)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path


def template_revision(objects: list[dict]) -> str:
    """The local controller-revision-hash: which pod template a pod was started from."""
    sts = next(o for o in objects if o["kind"] == "StatefulSet")
    return hashlib.sha256(json.dumps(sts["spec"]["template"], sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class PodLayout:
    name: str
    dir: Path
    run: Path  # short path: unix socket names are limited to 108 bytes

    @property
    def pv(self) -> Path:
        return self.dir / "pv"

    @property
    def home(self) -> Path:
        return self.dir / "home"

    @property
    def conf(self) -> Path:
        return self.dir / "conf"

    @property
    def tmp(self) -> Path:
        return self.dir / "tmp"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def volumes(self) -> dict[str, Path]:
        """The pod spec's volumes by name, as folders: PV, ConfigMap copy, emptyDirs and Secret files."""
        return {"config": self.home, "conf": self.conf, "data": self.pv, "run": self.run, "tmp": self.tmp,
                "tools": self.dir / "tools", "secrets": self.dir / "secrets", "tls": self.dir / "tls",
                "record": self.dir / "record"}

    @property
    def status_file(self) -> Path:
        return self.dir / "status.json"

    @property
    def pid_file(self) -> Path:
        return self.dir / "supervisor.pid"

    @property
    def ordinal(self) -> int:
        return int(self.name.rsplit("-", 1)[1])

    def log(self, container: str) -> Path:
        return self.logs / f"{container}.log"


@dataclass(frozen=True)
class ClusterLayout:
    root: Path
    name: str

    @property
    def values_file(self) -> Path:
        return self.root / "values.json"

    @property
    def kept_values_file(self) -> Path:  # the values of data destroy kept, for a later bootstrap
        return self.root / "kept-values.json"

    @property
    def secret_file(self) -> Path:
        return self.root / "secret.json"

    @property
    def objects_file(self) -> Path:
        return self.root / "objects.json"

    @property
    def cluster_file(self) -> Path:
        return self.root / "cluster.json"

    @property
    def dns_dir(self) -> Path:
        return self.root / "dns"

    @property
    def resolv_conf(self) -> Path:
        return self.dns_dir / "resolv.conf"

    @property
    def pods_dir(self) -> Path:
        return self.root / "pods"

    @property
    def run_root(self) -> Path:
        digest = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:10]
        return Path(os.environ.get("MYSQLSTS_RUN_ROOT", "/tmp")) / f"mysqlsts-{digest}"

    def pod(self, name: str) -> PodLayout:
        return PodLayout(name=name, dir=self.pods_dir / name, run=self.run_root / name.rsplit("-", 1)[1])

    def existing_pods(self) -> list[PodLayout]:
        if not self.pods_dir.is_dir():
            return []
        pods = [self.pod(p.name) for p in self.pods_dir.iterdir() if p.is_dir()]
        return sorted(pods, key=lambda p: p.ordinal)
