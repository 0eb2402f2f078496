"""Delivery of events: one thread owns every piece of delivery state.

Alarm transitions are durable: stored in the outbox first, then handed to the link in outbox
order through a bounded in-flight window, and deleted only when the broker acknowledges the very
message id the sink registered for them. Per-window score telemetry and error reports are not
durable: sent with QoS 0 when connected, otherwise dropped and counted.

A durable event whose store fails (a full disk, an I/O error, a locked database) is kept in memory
and stored again, in order, at every turn of the sink's loop until the store succeeds: it is lost only
if the process ends first or more than ``MAX_UNSTORED`` wait, and then counted as ``store_failed``.

Everything reaches the sink thread through one inbox: event batches (from the batchers), posts
(error reports), acknowledgements and connection news (from paho's network thread). So the
network thread does no SQLite work, an acknowledgement can never overtake the registration of its
message id, and an id the sink did not register (a status publish, a QoS 0 report) is ignored.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from edge_runtime.delivery.outbox import Outbox
from edge_runtime.throttle import Throttle

log = logging.getLogger("linewatch.delivery")
MAX_INFLIGHT = 100  # events handed to the link and not yet acknowledged (paho's in-flight window is the same)
MAX_UNSENT_IN_MEMORY = 1000  # beyond this, unsent rows stay on disk and are read back in order
MAX_UNSTORED = 10_000  # durable events kept in memory while the outbox cannot store them; beyond, the oldest are dropped
RETRY_STORE_S = 1.0  # how often a failed store is tried again


class Outgoing(NamedTuple):
    """One message a scoring batch hands to the sink: durable events are stored before they are sent."""

    topic: str
    payload: bytes
    arrival: float  # time.perf_counter() when the window's last sample arrived
    durable: bool  # an alarm or drift transition (QoS 1, outbox); False: score telemetry (QoS 0, dropped when full)


@dataclass(slots=True)
class InFlight:
    """A durable event handed to the link and not yet acknowledged."""

    seq: int
    topic: str
    acks_due: int = 1  # more than one when paho's 16-bit message id wrapped onto it


class Sink:
    """Stores, publishes and settles events; see the module docstring for the guarantees.

    ``publish(topic, payload, qos, retain) -> mid | None`` hands one message to the link (None:
    not connected, nothing queued). ``observe_latency(seconds)`` gets the time from a window's
    last sample arrival to its event handed to the link. ``max_queue`` bounds the batches waiting
    for the sink thread: beyond it telemetry is dropped and durable events wait (the batcher then
    sheds windows, counted as overload).
    """

    def __init__(self, outbox: Outbox, publish: Callable[..., int | None], observe_latency: Callable[[float], None] | None = None,
                 max_queue: int = 256, max_inflight: int = MAX_INFLIGHT) -> None:
        self.outbox, self.publish, self.observe_latency = outbox, publish, observe_latency
        self.max_queue, self.max_inflight = max_queue, max_inflight
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.space = threading.Condition()
        self.backlog = 0  # event batches in the inbox
        # state below belongs to the sink thread alone
        # mid -> entries, oldest first: paho may reuse an id as soon as it got the ack, before the sink took that
        # ack from its inbox; acks for one id then settle its entries in order
        self.inflight: dict[int, list[InFlight]] = {}
        self.inflight_n = 0
        self.unsent: deque[tuple[int, str, bytes, float | None]] = deque()
        self.loaded = 0  # highest seq read into memory (or sent)
        self.on_disk = True  # rows after `loaded` may exist only in the outbox (at start: a previous run's)
        self.settled: list[int] = []  # acknowledged seqs, deleted once per loop turn
        self.refused_topics = Throttle()  # topics whose refusal was logged
        self.unstored: deque[Outgoing] = deque()  # durable events whose store failed, oldest first, tried again
        self.retained_waiting: dict[str, bytes] = {}  # the latest retained state per topic the link has not taken yet
        self.store_failures = Throttle(60.0)  # a failing outbox is logged once a minute per cause
        self.next_store_try = 0.0
        # counters, read by metrics
        self.stored = 0
        self.published = 0
        self.refused = 0
        self.telemetry_sent = 0
        self.telemetry_dropped = 0
        self.store_failed = 0  # durable events dropped because the outbox could not store them in time
        self.stopping = threading.Event()
        self.deadline = float("inf")
        self.thread = threading.Thread(target=self._run, name="linewatch-sink", daemon=True)

    # -- called from other threads ------------------------------------------------------------
    def start(self) -> None:
        """Start the sink thread; a previous run's outbox rows go out first, in order."""
        self.thread.start()

    def submit(self, events: list[Outgoing]) -> None:
        """Queue the events of one scoring batch (batcher thread).

        Blocks while the inbox is full if the batch holds a durable event; telemetry is dropped then.
        """
        if not events:
            return
        with self.space:
            if self.backlog >= self.max_queue:
                durable = [event for event in events if event.durable]
                self.telemetry_dropped += len(events) - len(durable)
                if not durable:
                    return
                events = durable
                while self.backlog >= self.max_queue and self.thread.is_alive():
                    self.space.wait(0.5)
            self.backlog += 1
        self.inbox.put(("events", events))

    def post(self, topic: str, payload: bytes) -> None:
        """Publish a report with QoS 0 from the sink thread (rate-limited by the caller)."""
        self.inbox.put(("post", topic, payload))

    def post_retained(self, topic: str, payload: bytes) -> None:
        """Publish a retained state with QoS 1 from the sink thread; while the link is down the latest one per topic
        waits and goes out at the next connect.
        """
        self.inbox.put(("retain", topic, payload))

    def acked(self, mid: int, failure: str | None = None) -> None:
        """The broker acknowledged ``mid`` (network thread); ``failure``: an MQTT 5 reason code refusing it."""
        self.inbox.put(("ack", mid, failure))

    def wake(self) -> None:
        """(Re)connected: send what waits. paho itself resends what was in flight, with the same ids."""
        self.inbox.put(("wake",))

    @property
    def queued(self) -> int:
        """Durable events in the outbox not in flight: not yet handed to the link, or refused and kept."""
        return max(0, self.outbox.depth() - self.inflight_n)

    @property
    def inflight_count(self) -> int:
        """Durable events handed to the link and not yet acknowledged."""
        return self.inflight_n

    def drain(self, deadline: float) -> int:
        """Stop once queued events are stored and, until ``deadline`` (monotonic), sent and acknowledged.

        Returns the outbox depth left for the next start.
        """
        self.deadline = deadline
        self.stopping.set()
        self.inbox.put(("wake",))
        self.thread.join(max(0.0, deadline - time.monotonic()))
        return self.outbox.depth()

    # -- the sink thread ----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                item = self.inbox.get(timeout=0.2)
                while item is not None:
                    self._handle(item)
                    item = self.inbox.get_nowait() if not self.inbox.empty() else None
                if self.settled:
                    self.outbox.remove_many(self.settled)
                    self.settled = []
            except queue.Empty:
                pass
            except Exception:  # the sink must outlive any single bad batch or database hiccup
                log.exception("delivery step failed; events stay in the outbox")
            if self.unstored and time.monotonic() >= self.next_store_try:
                self._store_unstored()
            try:
                self._pump()
            except Exception:
                log.exception("sending from the outbox failed; retrying")
            if self.stopping.is_set() and self.inbox.empty() and self._finished():
                if self.unstored:  # the outbox never took them: they end with this process, said and counted
                    self.store_failed += len(self.unstored)
                    log.error("%d event(s) the outbox %s could not store are lost at shutdown", len(self.unstored), self.outbox.path)
                    self.unstored.clear()
                return

    def _finished(self) -> bool:
        idle = not self.unsent and not self.on_disk and not self.inflight_n and not self.unstored
        return idle or time.monotonic() >= self.deadline

    def _handle(self, item: tuple) -> None:
        what = item[0]
        if what == "ack":
            self._settle(item[1], item[2])
        elif what == "events":
            try:
                self._store(item[1])
            finally:
                with self.space:
                    self.backlog -= 1
                    self.space.notify()
        elif what == "post":
            self._send_once(item[1], item[2])
        elif what == "retain":
            self.retained_waiting.pop(item[1], None)
            self.retained_waiting[item[1]] = item[2]
            self._send_retained()
        elif what == "wake":
            self._send_retained()

    def _send_retained(self) -> None:
        """Hand the waiting retained states to the link, oldest first, until it refuses one."""
        while self.retained_waiting:
            topic = next(iter(self.retained_waiting))
            if not self._send_once(topic, self.retained_waiting[topic], 1, True):
                return
            del self.retained_waiting[topic]

    def _store(self, events: list[Outgoing]) -> None:
        self.unstored.extend(event for event in events if event.durable)
        self._store_unstored()
        for topic, payload, _, keep in events:
            if not keep:
                if self._send_once(topic, payload):
                    self.telemetry_sent += 1
                else:
                    self.telemetry_dropped += 1

    def _store_unstored(self) -> None:
        """Store every durable event waiting in memory, in one transaction; on failure keep them (bounded) for the next try."""
        if not self.unstored:
            return
        pending = list(self.unstored)
        try:
            seqs = self.outbox.add_many([(event.topic, event.payload) for event in pending])
        except (sqlite3.Error, OSError) as error:  # rolled back by the outbox: nothing of this batch was stored
            self.next_store_try = time.monotonic() + RETRY_STORE_S
            over = len(self.unstored) - MAX_UNSTORED
            for _ in range(max(0, over)):
                self.unstored.popleft()
            self.store_failed += max(0, over)
            if self.store_failures.due(type(error).__name__ + str(error)):
                log.error("the outbox %s cannot store events (%s): %d event(s) kept in memory and tried again every %.0f s; "
                          "%d dropped so far (at most %d are kept)", self.outbox.path, error, len(self.unstored), RETRY_STORE_S,
                          self.store_failed, MAX_UNSTORED)
            return
        self.unstored.clear()
        self.stored += len(seqs)
        if self.outbox.dropped_upto:
            while self.unsent and self.unsent[0][0] <= self.outbox.dropped_upto:
                self.unsent.popleft()
        if self.on_disk or len(self.unsent) + len(seqs) > MAX_UNSENT_IN_MEMORY:
            self.on_disk = True  # read back in order once memory has room
        else:
            self.unsent.extend((seq, event.topic, event.payload, event.arrival) for seq, event in zip(seqs, pending))
            self.loaded = seqs[-1]

    def _send_once(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        """Hand one message that is not an event to the link; False when it could not take it."""
        mid = self.publish(topic, payload, qos, retain)
        if mid is None:
            return False
        entries = self.inflight.get(mid)
        if entries:  # the 16-bit id wrapped onto an event in flight: one more ack is due before it settles
            entries[-1].acks_due += 1
        return True

    def _settle(self, mid: int, failure: str | None) -> None:
        entries = self.inflight.get(mid)
        if not entries:
            return  # not a message the sink registered
        entry = entries[0]
        entry.acks_due -= 1
        if entry.acks_due:
            return
        entries.pop(0)
        if not entries:
            del self.inflight[mid]
        self.inflight_n -= 1
        seq, topic = entry.seq, entry.topic
        if failure is None:
            self.settled.append(seq)
            return
        self.refused += 1  # kept in the outbox: sent again at the next start
        if self.refused_topics.due(topic):
            log.error("the broker refused an event on %s (%s); it stays in the outbox. Check the broker's ACL for this client "
                      "(logged once per topic)", topic, failure)

    def _pump(self) -> None:
        """Hand unsent events to the link, oldest first, while the in-flight window has room."""
        while self.inflight_n < self.max_inflight:
            if not self.unsent:
                if not self.on_disk:
                    return
                rows = self.outbox.pending(after=self.loaded, limit=self.max_inflight)
                if not rows:
                    self.on_disk = False
                    return
                self.unsent.extend((seq, topic, payload, None) for seq, topic, payload in rows)
                self.loaded = rows[-1][0]
            seq, topic, payload, arrival = self.unsent[0]
            mid = self.publish(topic, payload, 1, False)
            if mid is None:
                return  # not connected: wait for the next wake
            self.unsent.popleft()
            self.inflight.setdefault(mid, []).append(InFlight(seq, topic))
            self.inflight_n += 1
            self.published += 1
            if arrival is not None and self.observe_latency is not None:
                self.observe_latency(time.perf_counter() - arrival)
