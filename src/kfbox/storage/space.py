"""A full disk, recognised wherever it surfaces, and told to the user as a 507.

A write can hit a full filesystem as an ``OSError`` (``ENOSPC``, or ``EDQUOT`` over a quota),
as SQLite's "database or disk is full", or as the database server's own disk-full error
(PostgreSQL SQLSTATE 53100, MySQL 1021/1114). :func:`insufficient_storage` turns any of them
(looking through ``raise ... from`` chains and SQLAlchemy's wrapper) into
:class:`~kfbox.errors.InsufficientStorage`; the database's write transaction and the HTTP
error handler both call it, so the mapping lives here only. A transaction that fails this way
has been rolled back, so nothing half-written stays; reads keep working.

Example::

    except OSError as exc:
        raise insufficient_storage(exc, "<home>") or exc
"""

from __future__ import annotations

import errno

from kfbox.errors import InsufficientStorage

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
SQLITE_FULL = "database or disk is full"
POSTGRES_DISK_FULL = "53100"
MYSQL_DISK_FULL = frozenset({1021, 1114})


def _causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        orig = getattr(current, "orig", None)  # sqlalchemy.exc.DBAPIError wraps the driver's error
        current = orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
    return seen


def is_disk_full(exc: BaseException) -> bool:
    for cause in _causes(exc):
        if isinstance(cause, OSError) and cause.errno in FULL_ERRNOS:
            return True
        if SQLITE_FULL in str(cause):
            return True
        if POSTGRES_DISK_FULL in (getattr(cause, "sqlstate", None), getattr(cause, "pgcode", None)):
            return True
        args = getattr(cause, "args", ())
        if type(cause).__module__.startswith("pymysql") and args and args[0] in MYSQL_DISK_FULL:
            return True
    return False


def insufficient_storage(exc: BaseException, place: str) -> InsufficientStorage | None:
    """The user-facing error when ``exc`` means the disk holding ``place`` is full; else None."""
    if not is_disk_full(exc):
        return None
    return InsufficientStorage(
        f"No space left on the disk that holds {place}: nothing was saved (the change was rolled back). "
        "Free some space (old runs' artifacts and logs in the kfbox home are the usual candidates) and retry; "
        "reading keeps working meanwhile.")
