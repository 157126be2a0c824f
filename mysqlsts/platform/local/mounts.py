"""The few mount(2) calls the local runtime makes, always inside a mount namespace of its own
(a pod's supervisor, or a CLI that joined the cluster's DNS): never in the host's."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from mysqlsts.errors import OperationFailed

CLONE_NEWNS = 0x00020000
MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        hint = " (the local runtime needs root: mount namespaces and DNS on port 53)" if err == 1 else ""
        raise OperationFailed(f"{what}: {os.strerror(err)}{hint}")


def unshare_mounts() -> None:
    """A private mount namespace for this process (and what it starts): nothing propagates to the host."""
    check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")


def mount(source: str | Path, target: str | Path, fstype: str | None = None, flags: int = 0,
          data: str | None = None) -> int:
    """mount(2); returns its result for the caller to check (or to try something else)."""
    return _libc.mount(str(source).encode(), str(target).encode(), fstype.encode() if fstype else None, flags,
                       data.encode() if data else None)


def bind(source: Path, target: Path, recursive: bool = False) -> None:
    check(mount(source, target, None, MS_BIND | (MS_REC if recursive else 0)), f"bind {source} on {target}")


def umount(target: str | Path) -> int:
    return _libc.umount2(str(target).encode(), MNT_DETACH)
