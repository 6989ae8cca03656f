"""Keeping a path inside its root, symlinks included, and opening exactly the file that was checked.

``safe_join`` refuses ``..`` in the text of a path, but a symlink can climb out as well: a
``pvc://models/link`` whose ``link`` points at ``/etc`` or at another user's files. So every
storage path is resolved to its real path (all links followed) and compared with the real path
of its root; and because a link can be swapped between that check and the load (TOCTOU), the
replica checks again when it opens the file, comparing the opened file with the one at the real
path, and reads from that open file.

Example::

    real = resolve_inside(home / "pvc" / "models" / "iris", home / "pvc" / "models", "pvc://models/iris")
    with open_inside(real / "model.joblib", real, "pvc://models/iris") as handle:
        ...
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from kfbox.errors import InvalidInput


def is_inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def resolve_inside(path: Path, root: Path, source: str) -> Path:
    """The real path of ``path`` (links followed, it need not exist), refused unless inside ``root``'s.

    ``source`` is what the user wrote (the storage URI), for the message.
    """
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path))
    if not is_inside(real, real_root):
        # the link's target is not echoed: a client must not learn the host's layout by probing links
        raise InvalidInput(f"Storage URI {source!r} resolves to a path outside {real_root} (a symbolic link "
                           "leads out of the folder). Copy the model into the folder instead of linking to it.")
    return real


def check_canonical(root: Path) -> None:
    """Refuse when ``root`` (a real path when it was checked) now passes through a symlink."""
    real = Path(os.path.realpath(root))
    if real != root:
        raise InvalidInput(f"Model path {root} now leads elsewhere: a symbolic link was put in its place after the "
                           "storage URI was checked, so it is not loaded; the URI is resolved and checked again on "
                           "the next attempt.")


def open_inside(path: Path, root: Path, source: str) -> BinaryIO:
    """Open ``path`` for reading, refused unless the opened file is inside ``root`` (a real path).

    The file opened is compared (device, inode) with the file at its real path, so a link swapped
    between the check and the open is caught rather than followed.
    """
    check_canonical(root)
    handle = open(path, "rb")  # noqa: SIM115 - returned to the caller
    try:
        real = resolve_inside(path, root, source)
        opened, checked = os.fstat(handle.fileno()), os.stat(real)
        if (opened.st_dev, opened.st_ino) != (checked.st_dev, checked.st_ino):
            raise InvalidInput(f"Model file {path} changed while it was opened (a symbolic link was swapped); it is "
                               "not loaded; the storage URI is resolved and checked again on the next attempt.")
    except BaseException:
        handle.close()
        raise
    return handle
