"""Give a process the cluster's DNS without touching the host's /etc/resolv.conf.

The process moves into a private mount namespace where the cluster's
resolv.conf (search domains and its dnsmasq) is bind-mounted over
/etc/resolv.conf. Its children inherit that, so servers, scripts and the
verifier all resolve per-pod names through the ordinary glibc resolver path.
"""

from __future__ import annotations

from pathlib import Path

from mysqlsts.platform.local import mounts

_entered: Path | None = None


def _already_visible(resolv_conf: Path) -> bool:
    try:
        return Path("/etc/resolv.conf").read_bytes() == resolv_conf.read_bytes()
    except OSError:
        return False


def enter(resolv_conf: Path) -> None:
    """Idempotent within a process; never affects the host."""
    global _entered
    if _entered == resolv_conf:
        return
    if _entered is None:
        mounts.unshare_mounts()
    if _already_visible(resolv_conf):  # inherited from a parent that entered it
        _entered = resolv_conf
        return
    # Inside our own namespace now. A parent may have left another cluster's resolv.conf bound here,
    # perhaps of a cluster since deleted (a bind over a deleted file fails): peel such binds off.
    # umount only ever touches this private namespace, never the host's file.
    for _ in range(8):
        if mounts.mount(resolv_conf, "/etc/resolv.conf", None, mounts.MS_BIND) == 0:
            _entered = resolv_conf
            return
        if mounts.umount("/etc/resolv.conf") != 0:
            break
    mounts.bind(resolv_conf, Path("/etc/resolv.conf"))
    _entered = resolv_conf
