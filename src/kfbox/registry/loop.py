"""Registry calls served on the event loop, without the hop to a worker thread and back.

A route's handler is synchronous (validation, one short SQLite transaction). Run through
``run_in_threadpool`` it costs a queue hand-off, two thread wake-ups and the loop's self-pipe:
about as much CPU as the registration itself. On SQLite the transaction is local file I/O with
no fsync (WAL, ``synchronous=NORMAL``), so :func:`serve` runs the handler on the loop with
:data:`~kfbox.db.database.NO_WAIT` set; the database then opens its transactions (Core connections
or sessions) as :meth:`Database.write_now <kfbox.db.database.Database.write_now>` does, never waiting: when the
write lock is taken (another thread is writing) it raises :class:`WouldBlock`, the transaction
rolls back, and the handler runs again in a worker thread, where waiting is harmless. So does
anything slow on first use (:func:`decline`: compiling a body schema). PostgreSQL and MySQL
answer over a socket: their handlers always run in a worker thread.

Lists are unbounded (a page of 10,000 versions) and always run in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from kfbox.db.database import NO_WAIT, WouldBlock

T = TypeVar("T")


async def serve(local: bool, fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` on the loop when ``local`` (SQLite) and nothing in it would wait, else in a thread."""
    if local:
        token = NO_WAIT.set(True)
        try:
            return fn(*args)
        except WouldBlock:
            pass
        finally:
            NO_WAIT.reset(token)
    return await run_in_threadpool(fn, *args)


def decline(reason: str) -> None:
    """Called before something slow (a first-use compile): on the loop, hand the call to a thread."""
    if NO_WAIT.get():
        raise WouldBlock(reason)
