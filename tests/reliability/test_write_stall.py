"""A connection whose writes stall is opened again: a proxy in front of a real mosquitto stops reading what the
link sends (as a broker that stopped reading, or a TCP connection stuck in the kernel, does) while the broker's
side keeps flowing, so paho's keep-alive sees nothing wrong. The link closes the connection once bytes waited
``write_stall_s`` with none of them going out, paho connects again, and what is published then arrives. Progress is
the kernel's count of bytes the broker acknowledged, or, where the kernel does not tell, the bytes the socket took.
"""

import itertools

import pytest

from edge_runtime.config import BrokerConfig
from edge_runtime.delivery import link as link_module
from edge_runtime.delivery.link import Link
from helpers import wait_for
from mqtt_helpers import Collector, FaultProxy

STALL_S = 10.0
PAYLOAD = b"x" * 60_000  # large QoS 0 messages fill the socket's buffers in a few hundred publishes


def link_through(port: int) -> Link:
    """A link with no subscriptions that reconnects quickly."""
    config = BrokerConfig(port=port, client_id="lw-stall", reconnect_min_s=0.5, reconnect_max_s=1.0, write_stall_s=STALL_S)
    return Link(config, [], "linewatch/lw-stall/status", {"state": "online"}, lambda *a: None, lambda: None, lambda *a: None)


@pytest.mark.parametrize("progress", ["kernel", "socket"])
def test_a_connection_whose_writes_stall_is_closed_and_opened_again(broker, monkeypatch, progress):
    if progress == "socket":  # as on a websocket transport or off Linux
        monkeypatch.setattr(link_module, "tcp_progress", lambda sock: None)
    proxy = FaultProxy(broker.port)
    collector = Collector(broker.port, "stall/#")
    link = link_through(proxy.port)
    link.start()
    try:
        assert link.wait_connected(5)
        first = link.connected_since
        # writes flow: bytes wait at most briefly, the broker acknowledges them, nothing is closed however late it is asked
        assert link.publish("stall/before", b"1", qos=1) is not None
        assert collector.wait_for(lambda c: c.on("stall/before") == [1])
        assert not link.reopen_if_stalled(0.0) and not link.reopen_if_stalled(1e6)
        proxy.freeze(up=True, down=False)
        # the clock the check is given advances a whole stall limit per call: it closes the connection on the first
        # call that finds bytes still waiting and none more gone out since the call before
        clock = itertools.count(0.0, STALL_S)

        def published_until_stalled() -> bool:
            if not link.client.want_write():
                link.publish("stall/filler", PAYLOAD, qos=0)
            return link.reopen_if_stalled(next(clock))

        assert wait_for(published_until_stalled, 30), "no stall seen"
        assert link.failures["write_stalled"] == 1
        proxy.thaw()
        assert wait_for(lambda: link.connected.is_set() and link.connected_since != first, 15), "the link did not connect again"
        assert link.publish("stall/after", b"2", qos=1) is not None
        assert collector.wait_for(lambda c: c.on("stall/after") == [2], 10)
    finally:
        link.stop()
        collector.close()
        proxy.close()
