"""Storage faults survived: a full database, an I/O error, a lock held by another process.

After each, the next store succeeds, the events kept in memory meanwhile are stored and sent in order,
and whatever could not be kept is counted (``events_dropped{reason="store_failed"}``), never silent.
"""

import sqlite3

import orjson
import pytest
from reliability.test_sink import batch, make_sink, stop

from edge_runtime.delivery import sink as sink_module
from helpers import wait_for


def large(first: int, count: int) -> list:
    """Events of several KB each: a few fill a page-limited database."""
    return [event._replace(payload=orjson.dumps({"n": orjson.loads(event.payload)["n"], "pad": "x" * 8000})) for event in batch(first, count)]


def sent_numbers(link) -> list[int]:
    return [event["n"] for event in link.events()]


@pytest.mark.slow
def test_a_full_database_keeps_events_in_memory_until_there_is_room(tmp_path):
    sink, link = make_sink(tmp_path / "o.sqlite")
    try:
        outbox = sink.outbox
        with outbox.lock:
            pages = outbox.db.execute("PRAGMA page_count").fetchone()[0]
            outbox.db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full
        sink.submit(large(0, 5))
        assert wait_for(lambda: len(sink.unstored) == 5)
        assert sink.stored == 0 and outbox.depth() == 0 and not outbox.db.in_transaction
        sink.submit(large(5, 3))  # later events queue behind them, in order
        assert wait_for(lambda: len(sink.unstored) == 8)
        with outbox.lock:
            outbox.db.execute("PRAGMA max_page_count = 1073741823")  # room again
        assert wait_for(lambda: sink.stored == 8 and not sink.unstored)
        assert link.wait_sent(8) and sent_numbers(link) == list(range(8)) and sink.store_failed == 0
    finally:
        stop(sink)


class FailingConnection:
    """The outbox's own connection, with writes failing as a disk with I/O errors makes them fail while ``failing``."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db, self.failing = db, True

    def execute(self, sql: str, *args):
        """Run ``sql``, unless it writes while the disk fails."""
        if self.failing and sql.startswith("INSERT"):
            raise sqlite3.OperationalError("disk I/O error")
        return self.db.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.db, name)


@pytest.mark.slow
def test_an_io_error_is_rolled_back_and_retried(tmp_path):
    sink, link = make_sink(tmp_path / "o.sqlite")
    try:
        with sink.outbox.lock:
            faulty = sink.outbox.db = FailingConnection(sink.outbox.db)
        sink.submit(batch(0, 4))
        assert wait_for(lambda: len(sink.unstored) == 4) and not faulty.db.in_transaction
        faulty.failing = False
        assert wait_for(lambda: sink.stored == 4 and not sink.unstored)
        assert link.wait_sent(4) and sent_numbers(link) == [0, 1, 2, 3]
    finally:
        stop(sink)


def test_a_lock_held_by_another_process_is_waited_out(tmp_path):
    sink, link = make_sink(tmp_path / "o.sqlite", outbox={"busy_timeout_s": 0.1})
    other = sqlite3.connect(tmp_path / "o.sqlite", isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")  # a backup tool, say, holding the database
        sink.submit(batch(0, 3))
        assert wait_for(lambda: len(sink.unstored) == 3) and sink.stored == 0
        other.execute("COMMIT")
        assert wait_for(lambda: sink.stored == 3 and not sink.unstored)
        assert link.wait_sent(3) and sent_numbers(link) == [0, 1, 2]
    finally:
        other.close()
        stop(sink)


@pytest.mark.slow
def test_beyond_the_memory_bound_the_oldest_unstored_events_are_dropped_and_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(sink_module, "MAX_UNSTORED", 5)
    sink, link = make_sink(tmp_path / "o.sqlite")
    try:
        with sink.outbox.lock:
            faulty = sink.outbox.db = FailingConnection(sink.outbox.db)
        sink.submit(batch(0, 8))
        assert wait_for(lambda: sink.store_failed == 3 and len(sink.unstored) == 5)
        faulty.failing = False
        assert wait_for(lambda: sink.stored == 5) and link.wait_sent(5) and sent_numbers(link) == [3, 4, 5, 6, 7]
    finally:
        stop(sink)


def test_events_never_stored_by_shutdown_are_counted_as_lost(tmp_path):
    sink, _ = make_sink(tmp_path / "o.sqlite")
    with sink.outbox.lock:
        sink.outbox.db = FailingConnection(sink.outbox.db)
    sink.submit(batch(0, 2))
    assert wait_for(lambda: len(sink.unstored) == 2)
    stop(sink)
    assert wait_for(lambda: sink.store_failed == 2 and not sink.unstored)
