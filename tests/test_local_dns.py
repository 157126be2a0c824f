"""The local runtime's cluster DNS: one dnsmasq per cluster, whoever starts it, and stop ends it."""

from __future__ import annotations

import os
import random
import signal
import threading
from pathlib import Path

from mysqlsts.errors import OperationFailed
from mysqlsts.platform.local.dns import ClusterDNS
from mysqlsts.platform.local.layout import ClusterLayout


def serving(hosts_file: Path) -> list[int]:
    """The dnsmasq processes answering from this hosts file."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0].endswith(b"dnsmasq") and f"--addn-hosts={hosts_file}".encode() in argv:
                found.append(int(proc.name))
    return found


def test_commands_starting_the_dns_at_once_leave_one_dnsmasq_and_stop_ends_it(tmp_path):
    layout = ClusterLayout(root=tmp_path / "mysql", name="mysql")
    dns = ClusterDNS(layout, "default", "cluster.local", "mysql",
                     f"127.{random.randint(200, 250)}.{random.randint(0, 255)}.53")
    dns.write({"mysql-0": "127.0.0.1"}, {})
    barrier = threading.Barrier(4)
    failures: list[OperationFailed] = []

    def start() -> None:
        barrier.wait()
        try:
            dns.start()
        except OperationFailed as e:  # a second dnsmasq that could not bind: what the lock prevents
            failures.append(e)

    threads = [threading.Thread(target=start) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
        assert serving(dns.hosts_file) == [dns.pid()]
    finally:
        dns.stop()
        leftover = serving(dns.hosts_file)
        for pid in leftover:  # never leave one behind, even when the test fails
            os.kill(pid, signal.SIGKILL)
    assert leftover == []
