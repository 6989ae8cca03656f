"""Engine and transactions for SQLite, PostgreSQL and MySQL/MariaDB.

SQLite runs in WAL mode with a busy timeout, and write transactions start with
``BEGIN IMMEDIATE``: a writer takes the write lock up front instead of upgrading a
read lock later, which is what makes SQLite's "database is locked" deadlock impossible.

Example::

    db = Database("sqlite:////tmp/kfbox.db")
    db.upgrade()
    with db.write() as session:
        session.add(row)
    with db.read() as session:
        session.scalars(select(Row)).all()
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from kfbox.errors import InvalidInput, Unavailable
from kfbox.extras import missing
from kfbox.storage.space import insufficient_storage

_WRITE = "kfbox_write"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# the kfbox extra that installs each backend's driver (psycopg, pymysql)
DRIVER_EXTRAS = {"postgresql": "postgres", "mysql": "mysql"}


class Database:
    """One engine per process; sessions come from :meth:`read` and :meth:`write`."""

    def __init__(self, url: str) -> None:
        self.url = _normalise_url(url)
        self.dialect = make_url(self.url).get_backend_name()
        self.engine = _create_engine(self.url)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(**{_WRITE: True}), expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on any error (a full disk: 507)."""
        try:
            with self._write() as session, session.begin():
                yield session
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


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
