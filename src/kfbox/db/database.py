"""Engine and transactions for SQLite, PostgreSQL and MySQL/MariaDB.

SQLite runs in WAL mode with a busy timeout, and write transactions start with
``BEGIN IMMEDIATE``: a writer takes the write lock up front instead of upgrading a
read lock later, which is what makes SQLite's "database is locked" deadlock impossible.

``synchronous=NORMAL`` in WAL mode: a commit is appended to the WAL without an fsync (the WAL is
synced at checkpoints). A committed transaction survives the process being killed (``kill -9``,
a crash: the OS still holds the written pages); on power loss or a kernel crash the last
transactions before the latest checkpoint may be lost, never half-applied (the database stays
consistent). ``tests/registry/test_crash.py`` kills the server during a registration storm.

On the event loop (:data:`NO_WAIT` set) :meth:`Database.read`, :meth:`Database.write` and their
Core twins give transactions that never wait: see :meth:`Database.write_now`. Elsewhere a writer
may wait up to the busy timeout for the lock.

Example::

    db = Database("sqlite:////tmp/kfbox.db")
    db.upgrade()
    with db.write() as session:
        session.add(row)
    with db.read() as session:
        session.scalars(select(Row)).all()
    with db.write_core() as conn:           # no ORM session: statements only
        conn.execute(insert(table), values)
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from kfbox.errors import InvalidInput, Unavailable
from kfbox.extras import missing
from kfbox.storage.space import insufficient_storage

_WRITE = "kfbox_write"
SQLITE_BUSY_TIMEOUT_MS = 30_000
CHECKPOINT_EVERY = 200
"""Commits through :meth:`Database.write_now` between two checkpoints, which it leaves to a thread."""
# the kfbox extra that installs each backend's driver (psycopg, pymysql)
DRIVER_EXTRAS = {"postgresql": "postgres", "mysql": "mysql"}


NO_WAIT: ContextVar[bool] = ContextVar("kfbox_db_no_wait", default=False)
"""Set by code on the event loop (:mod:`kfbox.registry.loop`): :meth:`Database.read`/:meth:`~Database.write`
are then :meth:`~Database.read_now`/:meth:`~Database.write_now`, which raise :class:`WouldBlock` rather than wait."""


class WouldBlock(Exception):
    """:meth:`Database.write_now` could not run without waiting: run the call in a thread instead."""


class Database:
    """One engine per process; ORM sessions come from :meth:`read` and :meth:`write`, Core connections
    (no session) from :meth:`read_core` and :meth:`write_core`."""

    def __init__(self, url: str) -> None:
        self.url = _normalise_url(url)
        self.dialect = make_url(self.url).get_backend_name()
        self.engine = _create_engine(self.url)
        self._write_engine = self.engine.execution_options(**{_WRITE: True})
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self._write_engine, expire_on_commit=False)
        self._now: _NoWait | None = None  # write_now/read_now's engine and sessions, made on first use
        self._commits = 0
        self._checkpoint: threading.Thread | None = None

    @property
    def local(self) -> bool:
        """SQLite: a transaction is local file I/O, short enough to run on the event loop (:meth:`write_now`)."""
        return self.dialect == "sqlite"

    @contextmanager
    def write_now(self) -> Iterator[Session]:
        """As :meth:`write`, for the event loop: raises :class:`WouldBlock` rather than waiting.

        SQLite only (:attr:`local`). Its connections have no busy timeout, so a write lock another
        connection holds is ``WouldBlock`` at ``BEGIN IMMEDIATE`` instead of a wait, and no
        automatic checkpoint (the fsyncs of a checkpoint would stall the loop): every
        :data:`CHECKPOINT_EVERY` commits a thread runs a passive one. What remains is a few
        statements on pages in memory and an append to the WAL, no fsync (``synchronous=NORMAL``):
        cheaper than the hop to a worker thread and back that :meth:`write` needs there.
        """
        with self._would_block(), self._storage_errors(), self._no_wait().session(write=True) as session:
            yield session
        self._committed_now()

    @contextmanager
    def read_now(self) -> Iterator[Session]:
        """As :meth:`read`, for the event loop: :class:`WouldBlock` where SQLite would wait (rare in WAL mode)."""
        with self._would_block(), self._no_wait().session(write=False) as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self.read_now() if NO_WAIT.get() else self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on any error (a full disk: 507)."""
        with self.write_now() if NO_WAIT.get() else self._transaction(self._write) as session:
            yield session

    @contextmanager
    def read_core(self) -> Iterator[Connection]:
        """As :meth:`read`, on a Core connection: for code that runs its own statements and loads no ORM object."""
        if NO_WAIT.get():
            with self._would_block(), self._no_wait().connection(write=False) as conn:
                yield conn
        else:
            with self.engine.connect() as conn:
                yield conn

    @contextmanager
    def write_core(self) -> Iterator[Connection]:
        """As :meth:`write`, on a Core connection, without an ORM session.

        For code that runs its own statements (the registry's single-entity calls): a session's unit of
        work, identity map and transaction objects cost about as much CPU as a small write's statements.
        """
        if NO_WAIT.get():
            with self._would_block(), self._storage_errors(), self._no_wait().connection(write=True) as conn:
                yield conn
            self._committed_now()
        else:
            with self._storage_errors(), self._write_engine.begin() as conn:
                yield conn

    def _no_wait(self) -> _NoWait:
        if not self.local:
            raise WouldBlock("only SQLite transactions run on the event loop")
        if self._now is None:
            self._now = _NoWait(self.url)
        return self._now

    @contextmanager
    def _would_block(self) -> Iterator[None]:
        """SQLite's busy answer (another connection holds the lock) becomes :class:`WouldBlock`."""
        try:
            yield
        except OperationalError as exc:
            if _busy(exc):
                raise WouldBlock(str(exc.orig)) from exc
            raise

    def _committed_now(self) -> None:
        """Counts the event loop's commits; every :data:`CHECKPOINT_EVERY` a thread checkpoints the WAL."""
        self._commits += 1
        if self._commits % CHECKPOINT_EVERY == 0 and not (self._checkpoint and self._checkpoint.is_alive()):
            self._checkpoint = threading.Thread(target=self._passive_checkpoint, name="kfbox-wal-checkpoint",
                                                daemon=True)
            self._checkpoint.start()

    def _passive_checkpoint(self) -> None:
        """Copy the WAL into the database file as far as readers allow; waits for no one."""
        raw = self.engine.raw_connection()
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)")  # outside a transaction: autocommit
        except sqlite3.Error:
            pass  # a later checkpoint (or another connection's automatic one) catches up
        finally:
            raw.close()

    @contextmanager
    def _transaction(self, factory: sessionmaker[Session]) -> Iterator[Session]:
        with self._storage_errors(), factory() as session, session.begin():
            yield session

    @contextmanager
    def _storage_errors(self) -> Iterator[None]:
        """A full disk is :class:`~kfbox.errors.InsufficientStorage` (507) naming the database; the rest stays."""
        try:
            yield
        except (OSError, DBAPIError) as exc:
            full = insufficient_storage(exc, self.safe_url)
            if full is None:
                raise
            raise full from exc

    def upgrade(self) -> None:
        from kfbox.db.migrate import upgrade

        upgrade(self.engine)

    def ping(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except OperationalError as exc:
            raise Unavailable(f"Database {self.safe_url} is unreachable: {exc.orig}") from exc

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()
        if self._now is not None:
            self._now.close()


class _NoWait:
    """SQLite connections for the event loop: no busy timeout (a held lock is an error at once, not a wait),
    no automatic checkpoint (its fsyncs would stall the loop), and no SQLAlchemy event listener.

    An engine with a connection-event listener (the main engine's ``begin``, which sends SQLite's BEGIN)
    has SQLAlchemy dispatch events around every statement, commit and rollback: measured, 17% of a
    registration's instructions. So these transactions send their BEGIN to the driver themselves.
    """

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, pool_size=2, max_overflow=4)  # the kept connection holds one
        _configure_sqlite(self.engine, busy_timeout_ms=0, autocheckpoint=0, begin_event=False)
        self._kept: Connection | None = None
        self._owner = threading.get_ident()

    @contextmanager
    def connection(self, *, write: bool) -> Iterator[Connection]:
        """A transaction begun on the driver; a write commits on success, anything else rolls back.

        On the thread that made this object (the event loop's) every transaction uses one connection,
        kept open between them: a checkout from the pool and its return cost ~10% of a registration.
        A transaction opened inside another, or from another thread, gets a connection of its own.
        """
        kept = self._kept
        if threading.get_ident() != self._owner or (kept is not None and kept.in_transaction()):
            with self.engine.connect() as conn, _begun(conn, write):
                yield conn
            return
        if kept is None or kept.closed or kept.invalidated:
            kept = self._kept = self.engine.connect()
        with _begun(kept, write):
            yield kept

    @contextmanager
    def session(self, *, write: bool) -> Iterator[Session]:
        """An ORM session in a transaction begun on the driver: a writer's commits on success, as
        :meth:`Database.write`'s; the rest roll back when the connection goes back to the pool."""
        with self.engine.connect() as conn:
            _begin(conn, write)
            with Session(bind=conn, expire_on_commit=False) as session, session.begin() if write else nullcontext():
                yield session

    def close(self) -> None:
        if self._kept is not None:
            self._kept.close()  # the last connection to close folds the WAL into the database file
            self._kept = None
        self.engine.dispose()


@contextmanager
def _begun(conn: Connection, write: bool) -> Iterator[None]:
    """SQLite's transaction, begun on the driver; SQLAlchemy's commit or rollback ends it: a writer's
    commits when the block succeeds, anything else rolls back."""
    _begin(conn, write)
    transaction = conn.begin()
    try:
        yield
        if write:
            transaction.commit()
        else:
            transaction.rollback()
    except BaseException:
        # A COMMIT that fails (a full disk, a deferred constraint) leaves SQLAlchemy's transaction begun but
        # inactive, and SQLite's open: both must end here, or the kept connection can never begin again.
        if conn.get_transaction() is not None:
            transaction.rollback()
        driver = conn.connection.driver_connection
        if driver is not None and driver.in_transaction:
            driver.rollback()
        raise


def _normalise_url(url: str) -> str:
    """Accept the URLs people write (``postgresql://``, ``mysql://``) and pick our drivers."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidInput(
            f"Database URL {url!r} is not valid. Examples: sqlite:///path/kfbox.db, "
            "postgresql://user@127.0.0.1:5432/kfbox, mysql://root@127.0.0.1:3306/kfbox"
        ) from exc
    drivers = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg", "mysql": "mysql+pymysql",
               "mariadb": "mysql+pymysql"}
    if parsed.drivername in drivers:
        parsed = parsed.set(drivername=drivers[parsed.drivername])
    return parsed.render_as_string(hide_password=False)


def _create_engine(url: str) -> Engine:
    backend = make_url(url).get_backend_name()
    kwargs: dict[str, Any] = {"pool_pre_ping": backend != "sqlite"}
    if backend == "mysql":
        kwargs["isolation_level"] = "READ COMMITTED"
    try:
        engine = create_engine(url, **kwargs)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise InvalidInput(f"Database URL {url!r} is not supported: {exc}") from exc
    except ModuleNotFoundError as exc:  # the dialect imports its driver here
        if backend not in DRIVER_EXTRAS or exc.name is None:
            raise
        raise missing(exc.name, extra=DRIVER_EXTRAS[backend], feature=f"A {backend} database") from exc
    if backend == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine, *, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
                      autocheckpoint: int | None = None, begin_event: bool = True) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        if autocheckpoint is not None:
            cursor.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
        cursor.close()

    if not begin_event:
        return  # the caller begins its transactions (_NoWait)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        _begin(conn, conn.get_execution_options().get(_WRITE, False))


def _begin(conn: Connection, write: bool) -> None:
    """SQLite's BEGIN (IMMEDIATE for a writer), on the driver's connection: exec_driver_sql ran the whole
    execution machinery (events, a result) for this, ~8% of a registration's CPU. Errors are wrapped
    as SQLAlchemy's would be (a held lock is its OperationalError)."""
    statement = "BEGIN IMMEDIATE" if write else "BEGIN"
    try:
        conn.connection.driver_connection.execute(statement)  # type: ignore[union-attr]
    except sqlite3.Error as exc:
        raise DBAPIError.instance(statement, None, exc, sqlite3.Error) from exc


def _busy(exc: OperationalError) -> bool:
    """SQLITE_BUSY/SQLITE_LOCKED: another connection holds the lock (or is recovering the WAL)."""
    text = str(exc.orig).lower()
    return "database is locked" in text or "database table is locked" in text
