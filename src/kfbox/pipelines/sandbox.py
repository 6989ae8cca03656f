"""A task's mount paths inside its own mount namespace: ``/data`` exists for the task, never on the host.

``mount_pvc(task, ..., mount_path="/data")`` and ``use_secret_as_volume(..., mount_path="/mnt/secret")``
give a pod a folder at an absolute path. Here the task process enters a private mount namespace
(``unshare(CLONE_NEWNS)``; for a non-root user inside a new user namespace that maps it to root)
and bind-mounts the PVC or secret folder at that path there. When the path does not exist, its
nearest existing parent is shadowed by a tmpfs that re-binds the parent's entries and adds the
missing folder -- for ``/`` the task then runs chrooted into that copy, as ``switch_root`` does.
Mounts are private to the namespace, so nothing appears on the host and nothing is left behind.

Interface (in the task process, after fork and before exec or the component runs)::

    enter({"/data": pvc_folder, "/mnt/secret": secret_folder}, scratch=task_folder)
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18


class SandboxError(RuntimeError):
    """The task's mount paths could not be set up (no mount namespaces for this user, say)."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise SandboxError(f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    libc = _libc()
    _check(libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                      ctypes.c_ulong(flags), data.encode() if data else None), f"mount {source} on {target}")


def available() -> str | None:
    """None when this process can make mount namespaces, else why not (checked in a throwaway child)."""
    pid = os.fork()
    if pid == 0:
        try:
            _unshare()
            os._exit(0)
        except BaseException:  # noqa: BLE001 - the child only reports by its exit code
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) == 0:
        return None
    return ("this user cannot create mount namespaces (as root: unshare(CLONE_NEWNS); otherwise user "
            "namespaces must be enabled, see /proc/sys/user/max_user_namespaces)")


def _unshare() -> None:
    libc = _libc()
    if os.geteuid() == 0:
        _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        return
    uid, gid = os.geteuid(), os.getegid()
    _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare(CLONE_NEWUSER | CLONE_NEWNS)")
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
    Path("/proc/self/gid_map").write_text(f"0 {gid} 1")


def check_mount_path(path: str) -> str:
    """``path`` when a task may mount a folder there: absolute, no ``..``, not ``/`` itself."""
    parts = Path(path).parts
    if not os.path.isabs(path) or ".." in parts or len(parts) < 2:
        raise ValueError(f"mount path {path!r} must be an absolute path below / without '..' (e.g. /data)")
    return path


def enter(binds: Mapping[str, Path | str], scratch: Path) -> None:
    """Make each ``mount path -> folder`` of ``binds`` visible to this process (and its children) only."""
    if not binds:
        return
    cwd = os.getcwd()
    _unshare()
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    for count, (target, source) in enumerate(sorted(binds.items(), key=lambda item: len(Path(item[0]).parts))):
        path = Path(target)
        if path.is_symlink() or not path.is_dir():
            _make_room(path, scratch / f".mount-{count}")
        _mount(str(source), str(path), None, MS_BIND | MS_REC)
    os.chdir(cwd)


def _make_room(target: Path, staging: Path) -> None:
    """Shadow the nearest real folder above ``target`` with a tmpfs copy of its entries plus ``target``.

    Whatever stands on the way on the host -- a file, a link, a dangling link left by someone else --
    is left out of the copy and replaced by a folder, in this namespace only: a pod's mount path
    is a folder whatever the image has there, and the host's entry stays as it was.
    """
    parent = target.parent
    while parent.is_symlink() or not parent.is_dir():
        parent = parent.parent
    replaced = target.relative_to(parent).parts[0]
    staging.mkdir(parents=True, exist_ok=True)
    _mount("tmpfs", str(staging), "tmpfs", 0, "mode=755")
    for entry in os.scandir(parent):
        if entry.name == replaced and (entry.is_symlink() or not entry.is_dir()):
            continue
        copy = staging / entry.name
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), copy)
        elif entry.is_dir():
            copy.mkdir()
            _mount(entry.path, str(copy), None, MS_BIND | MS_REC)
        else:
            copy.touch()
            _mount(entry.path, str(copy), None, MS_BIND | MS_REC)
    (staging / target.relative_to(parent)).mkdir(parents=True, exist_ok=True)
    if parent != Path("/"):
        _mount(str(staging), str(parent), None, MS_MOVE)
        return
    os.chdir(staging)  # switch_root: the copy becomes this process's /
    _mount(".", "/", None, MS_MOVE)
    os.chroot(".")
    os.chdir("/")
