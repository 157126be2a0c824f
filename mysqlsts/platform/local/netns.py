"""Give a process the cluster's DNS without touching the host's /etc/resolv.conf.

The process moves into a private mount namespace where the cluster's
resolv.conf (search domains and its dnsmasq) is bind-mounted over
/etc/resolv.conf. Its children inherit that, so servers, scripts and the
verifier all resolve per-pod names through the ordinary glibc resolver path.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from mysqlsts.errors import OperationFailed

_CLONE_NEWNS = 0x00020000
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)
_entered: Path | None = None


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        hint = " (the local runtime needs root: mount namespaces and DNS on port 53)" if err == 1 else ""
        raise OperationFailed(f"{what}: {os.strerror(err)}{hint}")


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
        _check(_libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        _check(_libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "make / private")
    if _already_visible(resolv_conf):  # inherited from a parent that entered it
        _entered = resolv_conf
        return
    # Inside our own namespace now. A parent may have left another cluster's resolv.conf bound here,
    # perhaps of a cluster since deleted (a bind over a deleted file fails): peel such binds off.
    # umount only ever touches this private namespace, never the host's file.
    for _ in range(8):
        if _libc.mount(str(resolv_conf).encode(), b"/etc/resolv.conf", None, _MS_BIND, None) == 0:
            _entered = resolv_conf
            return
        if _libc.umount2(b"/etc/resolv.conf", _MNT_DETACH) != 0:
            break
    _check(_libc.mount(str(resolv_conf).encode(), b"/etc/resolv.conf", None, _MS_BIND, None),
           "bind-mount the cluster resolv.conf")
    _entered = resolv_conf
