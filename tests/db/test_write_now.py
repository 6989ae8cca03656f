"""``Database.write_now``/``read_now`` and their Core twins on the loop never wait for SQLite's lock."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from kfbox.db import Database
from kfbox.db.database import CHECKPOINT_EVERY, NO_WAIT, WouldBlock


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'kfbox.db'}")
    with database.write() as session:
        session.execute(text("CREATE TABLE t (n INTEGER, pad BLOB)"))
    yield database
    database.dispose()


def count(db: Database) -> int:
    with db.read() as session:
        return int(session.execute(text("SELECT count(*) FROM t")).scalar_one())


def test_write_now_commits_like_write(db: Database, tmp_path: Path) -> None:
    with db.write_now() as session:
        session.execute(text("INSERT INTO t (n) VALUES (1)"))
    with db.read_now() as session:
        assert session.execute(text("SELECT n FROM t")).scalar_one() == 1
    with sqlite3.connect(tmp_path / "kfbox.db") as other:  # committed: another connection sees it
        assert other.execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_write_now_refuses_to_wait_for_a_held_lock_and_leaves_nothing(db: Database, tmp_path: Path) -> None:
    holder = sqlite3.connect(tmp_path / "kfbox.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock (30 s of busy timeout for write())
    try:
        with pytest.raises(WouldBlock, match="locked"), db.write_now() as session:
            session.execute(text("INSERT INTO t (n) VALUES (2)"))
        with db.read_now() as session:  # readers are not blocked by a writer in WAL mode
            assert session.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with db.write_now() as session:  # the lock is free again: the same call goes through
        session.execute(text("INSERT INTO t (n) VALUES (3)"))
    assert count(db) == 1


def test_an_error_in_the_transaction_rolls_it_back(db: Database) -> None:
    with pytest.raises(ZeroDivisionError), db.write_now() as session:
        session.execute(text("INSERT INTO t (n) VALUES (4)"))
        _ = 1 / 0
    assert count(db) == 0


def test_the_wal_is_checkpointed_without_automatic_checkpoints(db: Database, tmp_path: Path) -> None:
    """write_now's connections never checkpoint on commit; a thread does, every CHECKPOINT_EVERY commits."""
    for i in range(CHECKPOINT_EVERY):
        with db.write_now() as session:
            session.execute(text("INSERT INTO t (n, pad) VALUES (:n, zeroblob(4000))"), {"n": i})
    checkpoint = db._checkpoint  # the thread write_now started
    assert checkpoint is not None
    checkpoint.join(60)
    with db.write_now() as session:  # the WAL was copied whole: this writer starts it over
        session.execute(text("INSERT INTO t (n) VALUES (-1)"))
    with sqlite3.connect(tmp_path / "kfbox.db") as other:
        _, frames, _ = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert frames < 10  # without the checkpoint: one frame or more per commit, over CHECKPOINT_EVERY
    assert count(db) == CHECKPOINT_EVERY + 1


def test_other_databases_never_run_on_the_loop() -> None:
    db = Database("postgresql://nobody@127.0.0.1:1/none")
    assert not db.local
    with pytest.raises(WouldBlock), db.write_now():
        pass


@pytest.fixture
def on_the_loop() -> Iterator[None]:
    """As :func:`kfbox.registry.loop.serve` runs a handler: read/write and their Core twins never wait."""
    token = NO_WAIT.set(True)
    yield
    NO_WAIT.reset(token)


def locked_by_another(path: Path) -> bool:
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        other.close()


@pytest.mark.usefixtures("on_the_loop")
def test_core_transactions_on_the_loop_commit_refuse_a_held_lock_and_roll_back(db: Database, tmp_path: Path) -> None:
    with db.write_core() as conn:
        assert locked_by_another(tmp_path / "kfbox.db")  # BEGIN IMMEDIATE: the writer holds the lock from the start
        conn.execute(text("INSERT INTO t (n) VALUES (1)"))
    assert not locked_by_another(tmp_path / "kfbox.db")
    with sqlite3.connect(tmp_path / "kfbox.db") as other:  # committed: another connection sees it
        assert other.execute("SELECT count(*) FROM t").fetchone() == (1,)
    holder = sqlite3.connect(tmp_path / "kfbox.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(WouldBlock, match="locked"), db.write_core() as conn:
            conn.execute(text("INSERT INTO t (n) VALUES (2)"))
        with db.read_core() as conn:  # readers are not blocked by a writer in WAL mode
            assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with pytest.raises(ZeroDivisionError), db.write_core() as conn:
        conn.execute(text("INSERT INTO t (n) VALUES (3)"))
        _ = 1 / 0
    assert not locked_by_another(tmp_path / "kfbox.db")
    with db.read_core() as conn:
        assert conn.execute(text("SELECT n FROM t")).scalars().all() == [1]


@pytest.mark.usefixtures("on_the_loop")
def test_a_session_on_the_loop_holds_the_write_lock_from_its_start(db: Database, tmp_path: Path) -> None:
    with db.write() as session:  # write_now: its BEGIN IMMEDIATE is sent to the driver before any statement
        assert locked_by_another(tmp_path / "kfbox.db")
        session.execute(text("INSERT INTO t (n) VALUES (5)"))
    with db.read() as session:
        assert not locked_by_another(tmp_path / "kfbox.db")
        assert session.execute(text("SELECT n FROM t")).scalars().all() == [5]


@pytest.mark.usefixtures("on_the_loop")
def test_loop_transactions_nest_and_run_from_other_threads(db: Database, tmp_path: Path) -> None:
    """The loop's transactions share one kept connection; one opened inside another, or from another
    thread, gets its own, and each commits or rolls back on its own."""
    with db.read_core() as outer:
        assert outer.execute(text("SELECT count(*) FROM t")).scalar_one() == 0  # its snapshot starts here
        with db.write_core() as inner:
            inner.execute(text("INSERT INTO t (n) VALUES (1)"))
        assert outer.execute(text("SELECT count(*) FROM t")).scalar_one() == 0  # still its own snapshot
    errors: list[BaseException] = []

    def elsewhere() -> None:
        token = NO_WAIT.set(True)
        try:
            with db.write_core() as conn:
                conn.execute(text("INSERT INTO t (n) VALUES (2)"))
        except BaseException as exc:  # noqa: BLE001 - reported to the test's thread
            errors.append(exc)
        finally:
            NO_WAIT.reset(token)

    worker = threading.Thread(target=elsewhere)
    worker.start()
    worker.join(30)
    assert errors == []
    with db.read_core() as conn:
        assert sorted(conn.execute(text("SELECT n FROM t")).scalars().all()) == [1, 2]
    db.dispose()  # closes the kept connection too: the last one to close folds the WAL into the file
    assert not (tmp_path / "kfbox.db-wal").exists()


@pytest.mark.usefixtures("on_the_loop")
def test_a_failed_commit_leaves_the_loop_connection_usable(db: Database) -> None:
    """A COMMIT that fails (here a deferred foreign key; in the field a full disk) leaves SQLAlchemy's transaction
    begun but inactive on the kept connection: the next transaction must still begin (it was a 500 for ever)."""
    with db.write() as session:
        session.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
        session.execute(text("CREATE TABLE child (parent INTEGER REFERENCES parent (id)"
                             " DEFERRABLE INITIALLY DEFERRED)"))
    with pytest.raises(IntegrityError), db.write_core() as conn:
        conn.execute(text("INSERT INTO child VALUES (7)"))  # checked only at COMMIT
    with db.write_core() as conn:
        conn.execute(text("INSERT INTO t (n) VALUES (8)"))
    with db.read_core() as conn:
        assert conn.execute(text("SELECT count(*) FROM child")).scalar_one() == 0
        assert conn.execute(text("SELECT n FROM t")).scalars().all() == [8]
