"""A durable, ordered outbox (SQLite) for events: they survive broker outages and restarts."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class Outbox:
    """Rows ``(seq, topic, payload)`` kept until the broker acknowledges them, read back in order."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL)")
        self.lock = threading.Lock()
        self.final_depth: int | None = None  # depth at close, still reported afterwards

    def add_many(self, rows: list[tuple[str, bytes]]) -> list[int]:
        """Store events in one transaction; returns their sequence numbers."""
        with self.lock:
            self.db.execute("BEGIN")
            seqs = [self.db.execute("INSERT INTO events (topic, payload) VALUES (?, ?)", row).lastrowid for row in rows]
            self.db.execute("COMMIT")
        return seqs

    def remove(self, seq: int) -> None:
        """Forget an acknowledged event."""
        with self.lock:
            self.db.execute("DELETE FROM events WHERE seq = ?", (seq,))

    def pending(self, after: int = 0, limit: int = 500) -> list[tuple[int, str, bytes]]:
        """Events not yet acknowledged, oldest first."""
        with self.lock:
            return self.db.execute("SELECT seq, topic, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)).fetchall()

    def depth(self) -> int:
        """How many events wait for acknowledgement."""
        with self.lock:
            if self.final_depth is not None:
                return self.final_depth
            return self.db.execute("SELECT COUNT(*) FROM events").fetchone()[0]

    def close(self) -> None:
        """Close the database."""
        depth = self.depth()
        with self.lock:
            self.final_depth = depth
            self.db.close()
