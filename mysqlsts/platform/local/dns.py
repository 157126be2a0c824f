"""The cluster's DNS: a dnsmasq on the cluster's own loopback address answering
per-pod names and the primary name, from a hosts file that follows the pods."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from mysqlsts.errors import OperationFailed
from mysqlsts.platform.local import procs
from mysqlsts.platform.local.layout import ClusterLayout
from mysqlsts.state import write_atomic


class ClusterDNS:
    def __init__(self, layout: ClusterLayout, namespace: str, domain: str, headless: str, address: str):
        self.layout = layout
        self.namespace = namespace
        self.domain = domain
        self.headless = headless
        self.address = address
        self.hosts_file = layout.dns_dir / "hosts"
        self.pid_file = layout.dns_dir / "dnsmasq.pid"

    def fqdn(self, pod: str) -> str:
        return f"{pod}.{self.headless}.{self.namespace}.svc.{self.domain}"

    def service_fqdn(self, service: str) -> str:
        return f"{service}.{self.namespace}.svc.{self.domain}"

    def write(self, addresses: dict[str, str], services: dict[str, str]) -> None:
        """addresses: pod -> address; services: service name -> address it resolves to."""
        lines = [f"{addr} {self.fqdn(pod)}" for pod, addr in sorted(addresses.items())]
        lines += [f"{addr} {self.service_fqdn(svc)}" for svc, addr in sorted(services.items())]
        hosts = "\n".join(lines) + "\n"
        changed = not self.hosts_file.is_file() or self.hosts_file.read_text() != hosts
        if changed:
            write_atomic(self.hosts_file, hosts)
        search = f"{self.namespace}.svc.{self.domain} svc.{self.domain} {self.domain}"
        resolv = f"search {search}\nnameserver {self.address}\noptions ndots:5 timeout:1 attempts:3\n"
        # Bind mounts pin the inode: rewrite only when it changes, never by rename under a live mount.
        if not self.layout.resolv_conf.is_file() or self.layout.resolv_conf.read_text() != resolv:
            write_atomic(self.layout.resolv_conf, resolv)
        pid = self.pid()
        if pid and changed:
            os.kill(pid, signal.SIGHUP)  # dnsmasq re-reads its hosts files

    def pid(self) -> int | None:
        return procs.live_pid(self.pid_file, str(self.hosts_file))

    def start(self) -> None:
        """Once per cluster, whoever asks first: every command that enters the network may start it,
        and two starting at once would leave one dnsmasq the pid file does not name, which nothing
        would ever stop."""
        self.layout.dns_dir.mkdir(parents=True, exist_ok=True)
        with open(self.layout.dns_dir / "dnsmasq.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released on close
            if not self.pid():
                self._start()

    def _start(self) -> None:
        binary = shutil.which("dnsmasq")
        if binary is None:
            raise OperationFailed("dnsmasq not found on PATH: apt-get install dnsmasq-base")
        log = (self.layout.dns_dir / "dnsmasq.log").open("ab")
        user = os.environ.get("USER") or "root"
        proc = subprocess.Popen(
            [binary, "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll", "--bind-interfaces",
             f"--listen-address={self.address}", "--port=53", f"--addn-hosts={self.hosts_file}",
             f"--local=/{self.domain}/", "--cache-size=0", "--log-facility=-", f"--user={user}",
             "--pid-file="],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        write_atomic(self.pid_file, f"{proc.pid}\n")
        for _ in range(50):
            if proc.poll() is not None:
                tail = (self.layout.dns_dir / "dnsmasq.log").read_text().strip().splitlines()[-3:]
                raise OperationFailed(f"dnsmasq failed to start on {self.address}:53: {' / '.join(tail)}")
            if "started" in (self.layout.dns_dir / "dnsmasq.log").read_text():
                return
            time.sleep(0.05)

    def stop(self) -> None:
        pid = self.pid()
        if pid:
            procs.stop_group(pid, grace=5)
        Path(self.pid_file).unlink(missing_ok=True)
