"""The server's log: stdlib ``logging``, configured once at start, one level for kfbox and uvicorn.

Every module logs through ``logging.getLogger(__name__)``; nothing in the server prints. The
level comes from settings (``KFBOX_LOG_LEVEL``: debug, info, warning, error, critical; default
warning), and lines go to stderr -- the terminal of ``kfbox up``, ``<home>/logs/server.log``
with ``--detach``.

Example::

    configure_logging(settings.log_level)
    logging.getLogger("kfbox.serving.manager").warning("reconciling %s failed", key)
"""

from __future__ import annotations

import logging.config

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """One stderr handler on the ``kfbox`` logger at ``level`` (uvicorn gets the same level from its Config)."""
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": FORMAT}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain",
                                "stream": "ext://sys.stderr"}},
        "loggers": {"kfbox": {"handlers": ["stderr"], "level": level.upper(), "propagate": False}},
    })
