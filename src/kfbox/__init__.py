"""kfbox: Kubeflow's own APIs (KFP, Model Registry, KServe), embedded in one process."""

from kfbox.config import Settings
from kfbox.errors import (
    Conflict,
    InvalidInput,
    KfboxError,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
    Unsupported,
)

__version__ = "0.1.0"

__all__ = [
    "Conflict",
    "InvalidInput",
    "KfboxError",
    "NotFound",
    "PayloadTooLarge",
    "Settings",
    "Unauthorized",
    "Unavailable",
    "Unsupported",
    "__version__",
]
