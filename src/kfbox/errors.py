"""The one exception tree of kfbox.

    KfboxError            something a user can act on; ``str()`` is the message
     +-- InvalidInput     the request or argument is malformed            (400)
     +-- Unauthorized     missing or wrong bearer token                    (401)
     +-- NotFound         the named thing does not exist                   (404)
     +-- Conflict         it exists already / state forbids the change     (409)
     +-- PayloadTooLarge  request body over the limit                      (413)
     +-- Unsupported      a feature kfbox does not offer here              (501)
     |    +-- MissingExtra  it needs an optional dependency not installed here
     +-- Unavailable      a dependency (server, replica, database) is down (503)
     +-- InsufficientStorage  the disk (or the database's) is full        (507)

The HTTP layer maps the tree to status codes in one handler; the CLI prints the
message and exits non-zero, with a traceback only under ``--debug``.
Library errors are translated at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations


class KfboxError(Exception):
    """Base of every error kfbox raises on purpose."""

    status_code: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(KfboxError):
    status_code = 400


class Unauthorized(KfboxError):
    status_code = 401


class NotFound(KfboxError):
    status_code = 404


class Conflict(KfboxError):
    status_code = 409


class PayloadTooLarge(KfboxError):
    status_code = 413


class Unsupported(KfboxError):
    status_code = 501


class MissingExtra(Unsupported):
    """An optional dependency is not installed; the message names the ``kfbox[extra]`` to install."""


class Unavailable(KfboxError):
    status_code = 503


class InsufficientStorage(KfboxError):
    """A write found no space left; nothing was saved (see kfbox.storage.space)."""

    status_code = 507
