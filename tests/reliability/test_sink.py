"""The sink against a fake link that acks early, late, twice, out of order, for ids it never
registered, and wraps its 16-bit id counter: an outbox row goes only when its own id is acked.
"""

import logging
import threading
import time

import orjson
import pytest

from edge_runtime.delivery.outbox import Outbox
from edge_runtime.delivery.sink import Outgoing, Sink
from helpers import wait_for


class FakeLink:
    """``publish`` hands out ids from a counter that wraps at ``modulus``; acks come when the test says."""

    def __init__(self, sink_ref: list, modulus: int = 65535, connected: bool = True) -> None:
        self.sink_ref, self.modulus, self.connected = sink_ref, modulus, connected
        self.last = 0
        self.held: dict[int, tuple[str, bytes]] = {}  # QoS 1 messages without an ack yet (what paho would hold)
        self.sent: list[tuple[int, str, bytes, int]] = []
        self.max_held = 0
        self.lock = threading.Lock()
        self.ack_at_once = False  # ack a QoS 1 message from inside publish: before the sink could register its id
        self.changed = threading.Condition(self.lock)

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> int | None:
        """Like ``Link.publish``: the id once held, None when not connected or the id is busy."""
        with self.lock:
            if not self.connected:
                return None
            self.last = self.last % self.modulus + 1
            mid = self.last
            self.sent.append((mid, topic, payload, qos))
            if qos and mid in self.held:
                return None  # like paho: an id still held is not reused (the caller tries again)
            if qos:
                self.held[mid] = (topic, payload)
                self.max_held = max(self.max_held, len(self.held))
            self.changed.notify_all()
        if qos == 0:
            self.sink_ref[0].acked(mid)  # paho reports a written QoS 0 message through on_publish too
        elif self.ack_at_once:
            self.ack(mid)
        return mid

    def ack(self, mid: int, failure: str | None = None) -> None:
        """The broker acknowledges ``mid`` (``failure``: an MQTT 5 refusal)."""
        with self.lock:
            self.held.pop(mid, None)
        self.sink_ref[0].acked(mid, failure)

    def ack_all(self) -> int:
        """Acknowledge everything held; returns how many."""
        with self.lock:
            mids = sorted(self.held)
        for mid in mids:
            self.ack(mid)
        return len(mids)

    def events(self, qos: int = 1) -> list[dict]:
        """Payloads published with ``qos``, in order."""
        with self.lock:
            return [orjson.loads(p) for _, _, p, q in self.sent if q == qos]

    def wait_held(self, timeout: float = 30.0) -> bool:
        """Wait until some QoS 1 message waits for its acknowledgement."""
        with self.changed:
            return self.changed.wait_for(lambda: bool(self.held), timeout)

    def wait_sent(self, count: int, timeout: float = 30.0) -> bool:
        """Wait until ``count`` QoS 1 messages were published."""
        with self.changed:
            return self.changed.wait_for(lambda: len([s for s in self.sent if s[3] == 1]) >= count, timeout)


def make_sink(path, modulus: int = 65535, connected: bool = True, **kwargs):
    ref: list = [None]
    link = FakeLink(ref, modulus, connected)
    sink = Sink(Outbox(path, **kwargs.pop("outbox", {})), link.publish, **kwargs)
    ref[0] = sink
    sink.start()
    return sink, link


def batch(first: int, count: int, durable: bool = True, topic: str = "ev") -> list:
    return [Outgoing(topic, orjson.dumps({"n": n}), time.perf_counter(), durable) for n in range(first, first + count)]


def ack_each_send_until(link: FakeLink, sink: Sink, count: int, window: int | None = None) -> None:
    """Acknowledge what the sink sends, as the broker would, until ``count`` events went out and all are acknowledged.

    Waits for something to acknowledge, not for one more send: a sink whose window is full of
    unacknowledged events sends nothing more until they are acknowledged. A sink that sends
    nothing with room in its window fails with its state.
    """
    while len(link.events()) < count or link.held:
        assert link.wait_held(), (f"nothing in flight after {len(link.events())} sent: sink alive {sink.thread.is_alive()}, in flight "
                                  f"{sink.inflight_count}, unsent in memory {len(sink.unsent)}, read up to seq "
                                  f"{sink.loaded}, more on disk {sink.on_disk}, outbox depth {sink.outbox.depth()}")
        if window is not None:
            assert len(link.held) <= window  # never more than the window in flight
        link.ack_all()


def stop(sink: Sink) -> int:
    depth = sink.drain(time.monotonic() + 2)
    sink.outbox.close()
    return depth


def test_only_the_registered_id_settles_a_row_through_wraps_stale_and_foreign_acks(tmp_path):
    sink, link = make_sink(tmp_path / "o.sqlite", modulus=16)  # ids wrap every 16 publishes
    link.ack_at_once = True  # acks race ahead of the registration
    sink.submit(batch(0, 40))
    assert wait_for(lambda: sink.outbox.depth() == 0 and sink.published == 40)
    link.ack_at_once = False
    for mid in range(1, 17):  # stale acks (paho's retransmissions, status publishes): none is the sink's
        sink.acked(mid)
    sink.submit(batch(40, 10))
    assert link.wait_sent(50)
    for mid in range(1, 17):  # more stale acks for ids that now belong to fresh, unacknowledged events
        sink.acked(mid + 16)  # ids beyond the counter's range: never registered
    sink.submit(batch(50, 1))  # a barrier: the sink handles its inbox in order, so the stale acks were taken
    assert link.wait_sent(51)
    assert sink.outbox.depth() == 11 and sink.inflight_count == 11
    assert link.ack_all() == 11
    assert wait_for(lambda: sink.outbox.depth() == 0)
    assert [e["n"] for e in link.events()] == list(range(51))  # each once, in order
    assert stop(sink) == 0


def test_a_qos0_id_collision_takes_the_extra_ack_not_the_event(tmp_path):
    sink, link = make_sink(tmp_path / "o.sqlite", modulus=4)
    sink.submit(batch(0, 1))  # event gets id 1
    assert link.wait_sent(1)
    for _ in range(4):  # ids 2, 3, 4, then 1 again: collides with the event in flight
        sink.post("errors", b"{}")
    sink.submit(batch(1, 1))  # a barrier: once it is sent, the colliding ack has been handled
    assert link.wait_sent(2)
    assert [mid for mid, _, _, _ in link.sent] == [1, 2, 3, 4, 1, 2]
    assert sink.outbox.depth() == 2, "the QoS 0 ack of id 1 settled the event"
    link.ack_all()
    assert wait_for(lambda: sink.outbox.depth() == 0)
    stop(sink)


def test_disconnected_events_wait_and_go_in_order_once_through_a_bounded_window(tmp_path):
    sink, link = make_sink(tmp_path / "o.sqlite", connected=False, max_inflight=8)
    for first in range(0, 300, 30):
        sink.submit(batch(first, 30))
    assert wait_for(lambda: sink.outbox.depth() == 300)
    assert link.sent == []
    link.connected = True
    sink.wake()
    ack_each_send_until(link, sink, 300, window=8)
    assert wait_for(lambda: sink.outbox.depth() == 0)
    assert [e["n"] for e in link.events()] == list(range(300))
    assert link.max_held <= 8
    stop(sink)


def test_a_restart_sends_the_previous_runs_rows_first_in_order_once(tmp_path):
    path = tmp_path / "o.sqlite"
    sink, link = make_sink(path, connected=False)
    sink.submit(batch(0, 1500))  # more than the sink keeps in memory
    assert wait_for(lambda: sink.outbox.depth() == 1500)
    assert stop(sink) == 1500
    sink, link = make_sink(path)
    sink.submit(batch(1500, 20))
    ack_each_send_until(link, sink, 1520)
    assert [e["n"] for e in link.events()] == list(range(1520))
    assert wait_for(lambda: sink.outbox.depth() == 0)
    stop(sink)


def test_a_refused_event_stays_in_the_outbox_counted_and_logged_once_per_topic(tmp_path, caplog):
    sink, link = make_sink(tmp_path / "o.sqlite")
    sink.submit(batch(0, 3, topic="denied") + batch(3, 2, topic="allowed"))
    assert link.wait_sent(5)
    with caplog.at_level(logging.ERROR, "linewatch.delivery"):
        for mid, (topic, _) in sorted(link.held.items()):
            link.ack(mid, "Not authorized" if topic == "denied" else None)
        assert wait_for(lambda: sink.refused == 3 and sink.outbox.depth() == 3)
    logged = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(logged) == 1 and "denied" in logged[0] and "Not authorized" in logged[0]
    assert stop(sink) == 3  # sent again at the next start


def test_outbox_bounds_drop_the_oldest_and_count_them(tmp_path):
    sink, link = make_sink(tmp_path / "o.sqlite", connected=False, outbox={"max_rows": 100, "max_bytes": 1 << 20})
    for first in range(0, 250, 50):
        sink.submit(batch(first, 50))
    assert wait_for(lambda: sink.outbox.rows + sink.outbox.dropped == 250)
    assert sink.outbox.depth() <= 100 and sink.outbox.dropped >= 150
    link.connected = True
    sink.wake()
    kept = sink.outbox.depth()
    assert link.wait_sent(kept)
    link.ack_all()
    assert wait_for(lambda: sink.outbox.depth() == 0)
    sent = [e["n"] for e in link.events()]
    assert sent == list(range(250 - kept, 250))  # the newest survive, in order
    stop(sink)


def test_telemetry_is_dropped_when_disconnected_or_when_the_queue_is_full_but_alarms_wait(tmp_path):
    sink, link = make_sink(tmp_path / "o.sqlite", connected=False, max_queue=1)
    sink.submit(batch(0, 5, durable=False))
    assert wait_for(lambda: sink.telemetry_dropped == 5)
    assert sink.outbox.depth() == 0
    with sink.space:  # hold the queue full: the sink thread cannot take the next batch meanwhile
        sink.backlog = 1
    sink.submit(batch(0, 3, durable=False))
    assert sink.telemetry_dropped == 8  # dropped at once, the caller never waits for telemetry
    done = threading.Event()
    threading.Thread(target=lambda: (sink.submit(batch(0, 2) + batch(2, 2, durable=False)), done.set()), daemon=True).start()
    assert not done.wait(0.3)  # an alarm transition waits for room instead of being dropped
    with sink.space:
        sink.backlog = 0
        sink.space.notify_all()
    assert done.wait(5)
    assert wait_for(lambda: sink.outbox.depth() == 2) and sink.telemetry_dropped == 10
    stop(sink)


@pytest.mark.parametrize("sync", ["full", "normal"])
def test_outbox_sync_modes_store_and_count(tmp_path, sync):
    outbox = Outbox(tmp_path / "o.sqlite", sync=sync)
    seqs = outbox.add_many([("t", b"x" * 10)] * 3)
    assert outbox.depth() == 3 and outbox.bytes == 30
    outbox.remove_many(seqs[:2])
    assert outbox.depth() == 1 and outbox.bytes == 10
    outbox.close()
    assert Outbox(tmp_path / "o.sqlite", sync=sync).depth() == 1
    with pytest.raises(ValueError, match="sync"):
        Outbox(tmp_path / "p.sqlite", sync="off")


def test_the_outbox_counts_what_it_ever_stored_across_processes(tmp_path):
    first = Outbox(tmp_path / "o.sqlite")
    first.remove_many(first.add_many([("t", b"1"), ("t", b"2"), ("t", b"3")])[:2])
    first.close()
    again = Outbox(tmp_path / "o.sqlite")  # another process opening the same file
    again.add_many([("t", b"4")])
    assert again.stored_ever() == 4 and again.depth() == 2
    again.close()
