"""``packages_to_install`` without touching kfbox's environment, and offline when possible.

The compiler turns ``packages_to_install`` into a ``pip install`` shell prelude. A task whose
requirements the running interpreter already satisfies runs with that interpreter and the
prelude removed (no network, no install). Otherwise the requirements go into a virtual
environment keyed by the requirement set, built once under ``<home>/venvs/<key>`` and reused
by every later task and run; kfbox's own packages stay visible beneath it (a ``.pth`` file),
so only what differs is installed.

Example::

    reqs = Requirements.from_command(full_command)
    python = sys.executable if reqs.satisfied() else VenvCache(root).python_for(reqs, log)
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import importlib.metadata
import json
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import venv
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

from packaging.requirements import InvalidRequirement, Requirement

_PIP_INSTALL = re.compile(r"-m pip install (.*?)(?=&&|\n|$)", re.S)
_OPTIONS_WITH_VALUE = {"--index-url", "--extra-index-url", "--trusted-host", "-i", "-f", "--find-links"}
_INJECTED_KFP = re.compile(r"^kfp==")
READY = ".kfbox-ready"


@dataclasses.dataclass(frozen=True)
class Requirements:
    packages: tuple[str, ...]
    options: tuple[str, ...] = ()

    @classmethod
    def from_command(cls, full_command: list[str]) -> Requirements | None:
        """The requirements of a lightweight component's pip prelude, or None when it has none."""
        if len(full_command) < 3 or full_command[:2] != ["sh", "-c"] or "pip install" not in full_command[2]:
            return None
        return _from_prelude(full_command[2])

    def satisfied(self) -> bool:
        """True when this interpreter already has every requirement (markers honoured)."""
        for text in self.packages:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                return False  # a path or URL: only pip can tell
            if req.url:
                return False
            if req.marker is not None and not req.marker.evaluate():
                continue
            try:
                version = importlib.metadata.version(req.name)
            except importlib.metadata.PackageNotFoundError:
                return False
            if not req.specifier.contains(version, prereleases=True):
                return False
        return True

    @property
    def key(self) -> str:
        body = {"python": sys.version, "packages": sorted(self.packages), "options": list(self.options)}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def strip_prelude(full_command: list[str], python: str) -> list[str]:
    """The command without its pip prelude, running the component with ``python``."""
    command = list(full_command)
    if len(command) >= 3 and command[:2] == ["sh", "-c"] and "pip install" in command[2]:
        command[2] = 'exec "$0" "$@"'
    if python != sys.executable:
        command = [part.replace(sys.executable, python) if "kfp.dsl.executor_main" in part else part
                   for part in command]
    return command


class VenvBuildError(Exception):
    pass


class VenvCache:
    """Virtual environments keyed by requirement set; concurrent builders of one key wait on a lock."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def python_for(self, reqs: Requirements, log: IO[bytes], env: Mapping[str, str]) -> str:
        path = self.root / reqs.key
        python = path / "bin" / "python"
        reuse = f"[kfbox] reusing virtual environment {path} for {list(reqs.packages)}\n".encode()
        if (path / READY).exists():
            log.write(reuse)
            return str(python)
        self.root.mkdir(parents=True, exist_ok=True)
        with _locked(self.root / f"{reqs.key}.lock"):
            if (path / READY).exists():  # another task built it while this one waited
                log.write(reuse)
                return str(python)
            log.write(f"[kfbox] building virtual environment {path} for {list(reqs.packages)}\n".encode())
            log.flush()
            shutil.rmtree(path, ignore_errors=True)
            venv.EnvBuilder(with_pip=False, symlinks=True).create(path)
            _inherit_packages(path)
            argv = [sys.executable, "-m", "pip", "--python", str(python), "install", "--disable-pip-version-check",
                    "--no-warn-script-location", *reqs.options, *reqs.packages]
            done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=dict(env), check=False)
            if done.returncode != 0:
                shutil.rmtree(path, ignore_errors=True)
                raise VenvBuildError(f"pip could not install {list(reqs.packages)} (exit {done.returncode}); "
                                     "see the pip output above. Offline, install them into kfbox's environment "
                                     "or point pip at a local index (PIP_INDEX_URL / PIP_FIND_LINKS).")
            (path / READY).write_text(json.dumps({"packages": reqs.packages, "options": reqs.options}))
        return str(python)


def _inherit_packages(path: Path) -> None:
    """Make kfbox's own site-packages importable beneath the venv's (kfp itself, numpy, ...)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = path / "lib" / version / "site-packages"
    base = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz-kfbox-base.pth").write_text("\n".join(sorted(base)) + "\n")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@functools.lru_cache(maxsize=64)
def _from_prelude(script: str) -> Requirements:
    """Parsed once per component: a ParallelFor's iterations share one prelude (shlex costs ~0.5 ms a task)."""
    packages: list[str] = []
    options: list[str] = []
    for match in _PIP_INSTALL.finditer(script):
        tokens = shlex.split(match.group(1))
        if any(_INJECTED_KFP.match(t) for t in tokens) and "--no-deps" in tokens:
            continue  # the compiler's own kfp pin: the executor only needs some kfp 2.x, which we have
        it = iter(tokens)
        for token in it:
            if token in _OPTIONS_WITH_VALUE:
                options += [token, next(it, "")]
            elif token.startswith("-"):
                if token not in ("--quiet", "--no-warn-script-location", "-q"):
                    options.append(token)
            else:
                packages.append(token)
    return Requirements(tuple(packages), tuple(options))
