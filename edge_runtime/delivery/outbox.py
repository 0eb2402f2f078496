"""A durable, ordered, bounded outbox (SQLite) for events: they survive broker outages, crashes and
(with ``synchronous=FULL``) power cuts.

Only the sink's thread writes to it; the depth is kept in memory so that a metrics scrape costs
no query. It needs SQLite 3.31 or newer (Ubuntu 20.04 / JetPack 5 has 3.31) and uses nothing newer:
a failed transaction is rolled back, so the next one starts clean.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

from edge_runtime.contract.errors import StorageError
from edge_runtime.state import explain

SYNC_MODES = ("full", "normal")
MIN_SQLITE = (3, 31, 0)
DELETE_CHUNK = 500  # SQLite's default limit on bound parameters is 999 (older builds)


class Outbox:
    """Rows ``(seq, topic, payload)`` kept until the broker acknowledges them, read back in order.

    ``max_rows`` and ``max_bytes`` bound it: when a write would exceed either, the oldest rows are
    dropped first and counted in ``dropped``. ``sync="full"`` makes every commit survive a power
    cut (WAL fsync per commit); ``"normal"`` survives a process crash only.
    """

    def __init__(self, path: str | Path, max_rows: int = 100_000, max_bytes: int = 64 << 20, sync: str = "full",
                 busy_timeout_s: float = 5.0) -> None:
        """``busy_timeout_s``: how long a write waits for a lock another process holds before it fails (and is retried)."""
        if sync not in SYNC_MODES:
            raise ValueError(f"outbox sync must be one of {SYNC_MODES}, got {sync!r}")
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StorageError(f"outbox: SQLite {sqlite3.sqlite_version} is older than the {'.'.join(map(str, MIN_SQLITE))} "
                               "linewatch needs; use a newer Python build or OS")
        self.path = str(path)
        self.max_rows, self.max_bytes = max_rows, max_bytes
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=busy_timeout_s)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={sync.upper()}")
            self.db.execute("CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
                            "payload BLOB NOT NULL)")
            self.rows, self.bytes = self.db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM events").fetchone()
        except (OSError, sqlite3.Error) as error:
            raise StorageError(explain(Path(self.path), error, "outbox")) from None
        self.lock = threading.Lock()
        self.dropped = 0
        self.dropped_upto = 0  # the bounds drop oldest first: no row with seq <= this is left
        self.closed = False

    def add_many(self, rows: list[tuple[str, bytes]]) -> list[int]:
        """Store events in one transaction (oldest rows dropped first if the bounds demand); returns their sequence numbers."""
        with self.lock, self._transaction():
            seqs = [self.db.execute("INSERT INTO events (topic, payload) VALUES (?, ?)", row).lastrowid for row in rows]
            self.rows += len(rows)
            self.bytes += sum(len(payload) for _, payload in rows)
            while self.rows > self.max_rows or self.bytes > self.max_bytes:
                self._drop_oldest(max(self.rows - self.max_rows, self.rows // 10, 1))
        return seqs

    @contextlib.contextmanager
    def _transaction(self):
        """One transaction: committed, or rolled back with the in-memory counts restored (SQLite may leave a failed
        transaction open, and every later BEGIN would then fail).
        """
        counts = self.rows, self.bytes, self.dropped, self.dropped_upto
        self.db.execute("BEGIN")
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            self.rows, self.bytes, self.dropped, self.dropped_upto = counts
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def _drop_oldest(self, count: int) -> None:
        dropped = self.db.execute("SELECT seq, LENGTH(payload) FROM events ORDER BY seq LIMIT ?", (count,)).fetchall()
        if dropped:
            self.db.execute("DELETE FROM events WHERE seq <= ?", (dropped[-1][0],))  # the oldest rows: every seq up to the last
        self.rows -= len(dropped)
        self.bytes -= sum(size for _, size in dropped)
        self.dropped += len(dropped)
        self.dropped_upto = max([self.dropped_upto] + [seq for seq, _ in dropped])

    def remove_many(self, seqs: list[int]) -> None:
        """Forget acknowledged events (one transaction)."""
        with self.lock, self._transaction():
            for first in range(0, len(seqs), DELETE_CHUNK):
                chunk = seqs[first : first + DELETE_CHUNK]
                marks = ",".join("?" * len(chunk))
                sizes = self.db.execute(f"SELECT LENGTH(payload) FROM events WHERE seq IN ({marks})", chunk).fetchall()
                self.db.execute(f"DELETE FROM events WHERE seq IN ({marks})", chunk)
                self.rows -= len(sizes)
                self.bytes -= sum(size for (size,) in sizes)

    def pending(self, after: int = 0, limit: int = 500) -> list[tuple[int, str, bytes]]:
        """Events not yet acknowledged with ``seq > after``, oldest first."""
        with self.lock:
            return self.db.execute("SELECT seq, topic, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)).fetchall()

    def stored_ever(self) -> int:
        """Events this outbox file ever stored, by every process that held it (its AUTOINCREMENT sequence)."""
        with self.lock:
            row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return row[0] if row else 0

    def depth(self) -> int:
        """How many events wait for acknowledgement (still reported after :meth:`close`)."""
        return self.rows

    def close(self) -> None:
        """Close the database."""
        with self.lock:
            if not self.closed:
                self.closed = True
                self.db.close()
