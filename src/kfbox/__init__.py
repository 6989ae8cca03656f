"""kfbox: Kubeflow's own APIs (KFP, Model Registry, KServe), embedded in one process."""

from functools import cache

from kfbox.config import Settings
from kfbox.errors import (
    Conflict,
    InvalidInput,
    KfboxError,
    MissingExtra,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
    Unsupported,
)

__all__ = [
    "Conflict",
    "InvalidInput",
    "KfboxError",
    "MissingExtra",
    "NotFound",
    "PayloadTooLarge",
    "Settings",
    "Unauthorized",
    "Unavailable",
    "Unsupported",
    "__version__",
]


def __getattr__(name: str) -> str:
    """``kfbox.__version__``: the installed distribution's, looked up on first use (a path scan, ~20 ms)."""
    if name == "__version__":
        return _version()
    raise AttributeError(f"module 'kfbox' has no attribute {name!r}")


@cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kfbox")
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        return "0+unknown"
