"""Container images on the local runtime.

A container whose image is in the local image store runs in that image's root filesystem, as it
would in a pod: its own programs and libraries (MySQL 9.7 from Debian sid, which must never be
installed into the host), the pod's volumes bound in at the very paths the runtime gives the
scripts, /proc, /dev and the cluster's resolv.conf. Every other container runs on this machine's
own programs (MariaDB from Debian, the mysqlsts image's Python).

The store is a folder of references: `<store>/mysql:9.7.4` is (a link to) the root filesystem
standing for the image `mysql:9.7.4` (scripts/mysql-rootfs.sh builds and registers it). A pod's
supervisor gives each image it runs a copy-on-write root of its own (overlayfs: the container's
writes land in the pod's folder, never in the store), mounted in the supervisor's private mount
namespace: it vanishes with the pod's processes, whatever kills them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mysqlsts.platform.local import mounts
from mysqlsts.platform.local.layout import PodLayout


def store() -> Path:
    cache = os.environ.get("MYSQLSTS_CACHE") or str(Path(os.environ.get("XDG_CACHE_HOME") or
                                                         Path.home() / ".cache") / "mysqlsts")
    return Path(cache) / "images"


def rootfs(image: str) -> Path | None:
    """The root filesystem standing for `image` in the store, or None: the image runs on the host."""
    if not image or ".." in image.split("/") or image.startswith("/"):
        return None
    entry = store() / image
    return entry.resolve() if (entry / "usr").is_dir() else None


def missing_programs(image: str, programs: list[str]) -> list[str]:
    """Which of `programs` the image lacks (for an image not in the store: this machine's PATH)."""
    root = rootfs(image)
    if root is None:
        search = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
        return [p for p in programs if shutil.which(p, path=search) is None]
    dirs = ("usr/local/sbin", "usr/local/bin", "usr/sbin", "usr/bin", "sbin", "bin")
    return [p for p in programs if not any(os.access(root / d / p, os.X_OK) for d in dirs)]


def _escape(path: Path) -> str:
    """A path as an overlayfs option value: its separators escaped."""
    return str(path).replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")


class PodRoots:
    """The root filesystems of one pod's containers, one per image in the store, made on first use."""

    def __init__(self, pod: PodLayout, resolv_conf: Path):
        self.pod = pod
        self.resolv_conf = resolv_conf
        self.roots: dict[str, Path | None] = {}
        self.folder = pod.dir / "rootfs"  # upper and work layers, and the mount points

    def reset(self) -> None:
        """A pod starts from its images afresh: what its containers wrote before is gone."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def root(self, image: str) -> Path | None:
        if image not in self.roots:
            lower = rootfs(image)
            self.roots[image] = None if lower is None else self._mount(image, lower)
        return self.roots[image]

    def _mount(self, image: str, lower: Path) -> Path:
        base = self.folder / str(len(self.roots))
        upper, work, merged = base / "upper", base / "work", base / "merged"
        for d in (upper, work, merged):
            d.mkdir(parents=True)
        mounts.check(mounts.mount("overlay", merged, "overlay", 0,
                                  f"lowerdir={_escape(lower)},upperdir={_escape(upper)},workdir={_escape(work)}"),
                     f"mount the root filesystem of image {image} ({lower})")
        mounts.check(mounts.mount("proc", merged / "proc", "proc"), f"mount /proc in the root of {image}")
        for host in (Path("/dev"), Path("/sys")):
            mounts.bind(host, merged / host.relative_to("/"), recursive=True)
        resolv = merged / "etc/resolv.conf"
        if resolv.is_symlink() or not resolv.exists():
            resolv.unlink(missing_ok=True)
            resolv.touch()
        mounts.bind(self.resolv_conf, resolv)
        # The pod's volumes, at the paths the runtime hands the scripts (their host folders).
        for folder in sorted({*self.pod.volumes.values(), self.pod.logs}):
            inside = merged / folder.relative_to("/")
            inside.mkdir(parents=True, exist_ok=True)
            mounts.bind(folder, inside)
        return merged


def enter(root: Path, cwd: Path) -> None:
    """In the child, before exec: into the image's root, at the same working directory."""
    os.chroot(root)
    os.chdir(cwd)
