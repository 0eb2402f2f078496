"""Delivery of events: the sink that stores each event in the outbox, publishes it, and replays
what the broker has not acknowledged.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from edge_runtime.outbox import Outbox

log = logging.getLogger("linewatch.delivery")


class Sink:
    """Single writer for events: stores each batch in the outbox, then publishes it (QoS 1).

    ``publish(topic, payload) -> mid | None`` sends one message (None when not connected). The
    link reports acknowledgements through :meth:`acked`; on every (re)connect :meth:`replay`
    republishes what the outbox still holds, in order. Consumers drop duplicates by ``id``.
    """

    def __init__(self, outbox: Outbox, publish, observe_latency=None) -> None:
        self.outbox = outbox
        self.observe_latency = observe_latency  # called with seconds from sample arrival to publish
        self.publish = publish
        self.queue: queue.Queue = queue.Queue()
        self.inflight: dict[int, int] = {}
        self.early_acks: set[int] = set()
        self.lock = threading.Lock()
        self.published = 0
        self.replay_needed = threading.Event()
        self.thread = threading.Thread(target=self._run, name="linewatch-sink", daemon=True)
        self.stopping = threading.Event()

    def start(self) -> None:
        """Start the writer thread; anything left in the outbox is replayed on connect."""
        self.thread.start()

    def submit(self, events: list[tuple[str, bytes, float]]) -> None:
        """Queue ``(topic, payload, arrival)`` triples of encoded events (arrival: perf_counter of the last sample)."""
        if events:
            self.queue.put(events)

    def acked(self, mid: int) -> None:
        """The broker acknowledged message ``mid``: drop it from the outbox."""
        with self.lock:
            seq = self.inflight.pop(mid, None)
            if seq is None:
                self.early_acks.add(mid)
                return
        self.outbox.remove(seq)

    def connected(self) -> None:
        """Called on every (re)connect: unacknowledged events are sent again."""
        with self.lock:
            self.inflight.clear()
            self.early_acks.clear()
        self.replay_needed.set()

    def _send(self, seq: int, topic: str, payload: bytes) -> bool:
        mid = self.publish(topic, payload)
        if mid is None:
            return False
        with self.lock:
            if mid in self.early_acks:
                self.early_acks.discard(mid)
                acked = True
            else:
                self.inflight[mid] = seq
                acked = False
        if acked:
            self.outbox.remove(seq)
        self.published += 1
        return True

    def _replay(self) -> None:
        self.replay_needed.clear()
        last = 0
        while True:
            rows = self.outbox.pending(after=last)
            if not rows:
                return
            for seq, topic, payload in rows:
                if not self._send(seq, topic, payload):
                    return
                last = seq

    def _run(self) -> None:
        while not (self.stopping.is_set() and self.queue.empty()):
            if self.replay_needed.is_set():
                self._replay()
            try:
                batch = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._store_and_send(batch)
            except Exception:  # the sink must outlive any single bad batch
                log.exception("could not store or publish %d event(s)", len(batch))

    def _store_and_send(self, batch: list[tuple[str, bytes, float]]) -> None:
        rows = [(topic, payload) for topic, payload, _ in batch]
        seqs = self.outbox.add_many(rows)
        if self.replay_needed.is_set():
            return  # the replay sends these in order
        for seq, (topic, payload), (_, _, arrival) in zip(seqs, rows, batch):
            if not self._send(seq, topic, payload):
                return
            if self.observe_latency is not None:
                self.observe_latency(time.perf_counter() - arrival)

    def drain(self, timeout: float) -> int:
        """Stop after queued events are stored; wait up to ``timeout`` for acks. Returns the outbox depth."""
        self.stopping.set()
        self.thread.join(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.outbox.depth():
            time.sleep(0.05)
        return self.outbox.depth()
