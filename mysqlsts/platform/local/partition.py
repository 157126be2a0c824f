"""Cut one local pod off the network, as a deny-all NetworkPolicy cuts a Kubernetes pod.

The pods share this machine's network stack: every connection between them, the controller and
the cluster DNS runs over loopback, from the source address the kernel picks (127.0.0.1) unless
the client binds. An address alone therefore names only a pod's listening side; its own
outgoing connections (the agent asking its peers, a restarted server replicating, DNS lookups)
are known by the process that opens them. So the cut is two objects of its own, each removed in
one step, and nothing else on the machine is touched:

- a cgroup v2 `mysqlsts-isolate-<key>` that the pod's processes move into (its process group,
  and whatever it starts meanwhile inherits it); nft's `socket cgroupv2` knows them by it;
- an nftables table `inet mysqlsts_<cluster>_<key>` with one output chain (a loopback packet
  passes the output hook once): a packet to or from the pod's address, or from a socket of
  its processes, is dropped unless its other end is the pod's address or the client side (an
  address a client on the pod's side of the partition binds to). Established connections are
  cut too: nothing looks at conntrack.

A record (`isolation.json` in the cluster's state) names the process that cut. `heal` deletes
the table, moves the processes back and removes the cgroup and the record; it can run any number
of times, and any command heals a cut whose process died (`leftover`)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mysqlsts.errors import OperationFailed
from mysqlsts.platform.local import procs
from mysqlsts.state import read_json, write_json

NFT_CGROUP_BASE = Path("/sys/fs/cgroup")  # nft resolves `socket cgroupv2` paths below this folder
SEARCH_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"


def nft_binary() -> str | None:
    return shutil.which("nft", path=SEARCH_PATH)


def cgroup2_root() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted, when nft can name cgroups in it (pure v2: the base
    itself; hybrid: its `unified` folder)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in mounts:
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2":
            path = Path(fields[1])
            if path == NFT_CGROUP_BASE or NFT_CGROUP_BASE in path.parents:
                return path
    return None


def unavailable() -> str | None:
    """Why a pod cannot be cut off on this machine, or None."""
    if os.geteuid() != 0:
        return "cutting a pod off takes nftables rules and a cgroup, which need root"
    nft = nft_binary()
    if nft is None:
        return "nft not found on PATH (apt-get install nftables)"
    if cgroup2_root() is None:
        return (f"no cgroup v2 hierarchy under {NFT_CGROUP_BASE}, which nftables needs to tell the pod's own "
                "connections from its peers'")
    said = subprocess.run([nft, "list", "tables"], capture_output=True, text=True, timeout=30)
    if said.returncode != 0:
        return f"nft cannot read this machine's rules: {first_line(said.stderr)} (it needs CAP_NET_ADMIN)"
    return None


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no message")


def own_cgroup(pid: int) -> str:
    """A process's cgroup in the v2 hierarchy ('/...'), '/' when it cannot be read."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return "/"
    return next((line[3:] for line in lines if line.startswith("0::")), "/") or "/"


@dataclass(frozen=True)
class Partition:
    """The cut of one cluster (one pod at a time), named after the cluster's state folder: two
    clusters of the same name under other state folders never share a table."""

    root: Path  # the cluster's state folder
    name: str  # the cluster's name

    @property
    def key(self) -> str:
        return hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:10]

    @property
    def table(self) -> str:
        return f"mysqlsts_{re.sub(r'[^A-Za-z0-9]', '_', self.name)}_{self.key}"

    @property
    def record_file(self) -> Path:
        return self.root / "isolation.json"

    def record(self) -> dict[str, Any] | None:
        try:
            return read_json(self.record_file)
        except (OSError, ValueError):
            return None

    def cgroup(self, root: Path) -> Path:
        return root / f"mysqlsts-isolate-{self.key}"

    def procs_file(self) -> Path:
        """Where a process writes itself ("0") to join the cut pod's side."""
        return self.cgroup(cgroup2_root() or NFT_CGROUP_BASE) / "cgroup.procs"

    def rules(self, address: str, side: str, cgroup: Path) -> str:
        """The whole table in one nft transaction: it exists with every rule, or not at all."""
        own = str(cgroup.relative_to(NFT_CGROUP_BASE))
        level = len(cgroup.relative_to(cgroup2_root() or cgroup.parent).parts)
        ends = f"{{ {address}, {side} }}"
        by_pod = f'socket cgroupv2 level {level} "{own}"'
        return "\n".join([
            f"table inet {self.table} {{",
            "  chain output {",
            "    type filter hook output priority filter; policy accept;",
            f"    ip saddr {address} ip daddr != {ends} drop",
            f"    ip daddr {address} ip saddr != {ends} drop",
            f"    {by_pod} ip daddr != {ends} drop",
            f"    {by_pod} meta nfproto ipv6 drop",
            "  }",
            "}",
            ""])

    def cut(self, pod: str, pgid: int, address: str, side: str) -> None:
        """Cut the pod (its supervisor's process group) off everything but itself and `side`."""
        nft, root = nft_binary(), cgroup2_root()
        if nft is None or root is None:
            raise OperationFailed(f"--fault isolate: {unavailable()}")
        self.heal()
        cgroup = self.cgroup(root)
        me = os.getpid()
        write_json(self.record_file, {"pod": pod, "address": address, "side": side, "table": self.table,
                                      "cgroup": str(cgroup), "home": own_cgroup(pgid),
                                      "by": {"pid": me, "started": procs.started(me)}})
        try:
            cgroup.mkdir(exist_ok=True)
            for _ in range(5):  # a process forked meanwhile by one not moved yet: look again
                moving = [pid for pid in procs.group_members(pgid) if own_cgroup(pid) != "/" + cgroup.name]
                if not moving:
                    break
                for pid in moving:
                    with contextlib.suppress(ProcessLookupError):
                        (cgroup / "cgroup.procs").write_text(str(pid))
            said = subprocess.run([nft, "-f", "-"], input=self.rules(address, side, cgroup), capture_output=True,
                                  text=True, timeout=30)
            if said.returncode != 0:
                raise OperationFailed(f"--fault isolate: nft refused the rules cutting {pod} off: "
                                      f"{first_line(said.stderr)}")
        except BaseException:
            self.heal()
            raise

    def heal(self) -> list[str]:
        """Delete the table, move the processes back, remove the cgroup and the record. Safe to repeat."""
        done = []
        nft = nft_binary()
        if nft is not None:
            said = subprocess.run([nft, "delete", "table", "inet", self.table], capture_output=True, text=True,
                                  timeout=30)
            if said.returncode == 0:
                done.append(f"nftables table inet {self.table} deleted")
            elif "No such file or directory" not in said.stderr:
                raise OperationFailed(f"could not delete nftables table inet {self.table}: {first_line(said.stderr)}")
        root = cgroup2_root()
        cgroup = self.cgroup(root) if root is not None else None
        if cgroup is not None and cgroup.is_dir():
            home = root / (self.record() or {}).get("home", "/").lstrip("/")
            if not (home / "cgroup.procs").is_file():
                home = root
            for _ in range(100):
                try:
                    for pid in (cgroup / "cgroup.procs").read_text().split():
                        with contextlib.suppress(ProcessLookupError):
                            (home / "cgroup.procs").write_text(pid)
                    cgroup.rmdir()
                    break
                except OSError:  # a process forked while we moved its parent, or one still exiting
                    time.sleep(0.05)
            else:
                raise OperationFailed(f"could not remove cgroup {cgroup}: processes stay in it")
            done.append(f"the pod's processes moved back to {home}; cgroup {cgroup} removed")
        self.record_file.unlink(missing_ok=True)
        return done

    def leftover(self) -> bool:
        """A cut whose process is gone (killed mid-drill): nobody will heal it but the next command."""
        record = self.record()
        if record is None:
            return False
        by = record.get("by") or {}
        pid = by.get("pid")
        return not (isinstance(pid, int) and by.get("started") and procs.started(pid) == by["started"])
