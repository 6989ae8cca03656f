"""Optional dependencies: imported where a feature needs them, named by the extra that installs them.

The base install is what the server needs; PostgreSQL/MySQL drivers, boto3 and the
examples' packages are extras (``pip install 'kfbox[postgres]'``). A feature that needs one
imports it through :func:`require`, so a missing package becomes our error with the install
command instead of a bare ``ModuleNotFoundError`` from deep inside a library.

Example::

    boto3 = require("boto3", extra="s3", feature="s3:// artifacts")
"""

from __future__ import annotations

import importlib
from types import ModuleType

from kfbox.errors import MissingExtra


def require(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import ``module``; if it (not one of its own imports) is missing, raise :class:`MissingExtra`."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if not is_missing(exc, module):
            raise
        raise missing(exc.name or module, extra=extra, feature=feature) from exc


def is_missing(exc: ModuleNotFoundError, module: str) -> bool:
    """Whether ``exc`` says ``module`` itself (or its top-level package) is absent."""
    top = module.split(".")[0]
    return exc.name is not None and (exc.name == module or exc.name.split(".")[0] == top)


def missing(package: str, *, extra: str, feature: str) -> MissingExtra:
    return MissingExtra(f"{feature} needs the optional package {package!r}, which is not installed. "
                        f"Install it with: pip install 'kfbox[{extra}]'")
