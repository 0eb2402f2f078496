"""One router for the whole runtime: topic -> the model that takes it, its stream key and input."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from edge_runtime.config import InputConfig
from edge_runtime.ingest.badinput import BadInput
from edge_runtime.ingest.decoders import BadSample
from edge_runtime.ingest.topics import template_for


@dataclass(frozen=True, slots=True)
class Route:
    """Where one topic's messages go: the handler of its model's ingest for the input's format, the
    stream key, the tag (tag format), the input, and the names of the key's fields.
    """

    topic: str
    handler: Callable[[Route, bytes, float], None]
    key: str
    tag: str | None
    config: InputConfig
    key_fields: tuple[str, ...]  # the template's fields that make up the key, in order
    index: int  # of the input in the router's list


class Router:
    """Matches topics against every model's input templates, in configuration order; caches each topic's route.

    ``entries`` pairs each input with the ingest of its model (anything with ``handler(format)``).
    Payloads over ``max_payload`` bytes and payloads a decoder refuses are counted as bad input.
    The cache holds at most ``max_routes`` topics; beyond, it starts over (topics are matched again).
    Handlers run under ``lock``, the ingest lock: whoever changes an ingest's bundle or streams
    (reload, eviction) holds it too.
    """

    def __init__(self, entries: list[tuple[InputConfig, object]], bad: BadInput, max_payload: int = 65536,
                 max_routes: int = 100_000, lock: threading.Lock | None = None) -> None:
        self.templates = [(template_for(cfg.topic, cfg.format), cfg, ingest) for cfg, ingest in entries]
        self.bad = bad
        self.lock = lock or threading.Lock()
        self.max_payload, self.max_routes = max_payload, max_routes
        self.cache: dict[str, Route] = {}
        self.last_message: list[float | None] = [None] * len(self.templates)  # per input: arrival of its latest message

    def subscriptions(self) -> list[tuple[str, int]]:
        """Topic filters to subscribe to, with their QoS."""
        return sorted({(template.subscription, cfg.qos) for template, cfg, _ in self.templates})

    def route(self, topic: str) -> Route | None:
        """The route of ``topic``, or None when no template matches (cached once a message on it was taken)."""
        route = self.cache.get(topic)
        if route is not None:
            return route
        for index, (template, cfg, ingest) in enumerate(self.templates):
            matched = template.match(topic)
            if matched is not None:
                return Route(topic, ingest.handler(cfg.format), matched[0], matched[1], cfg, tuple(template.key_fields), index)
        return None

    def latest_by_subscription(self) -> dict[str, float | None]:
        """Per subscription filter, the arrival (``time.perf_counter()``) of its latest message, or None."""
        latest: dict[str, float | None] = {}
        for (template, _, _), arrival in zip(self.templates, self.last_message):
            seen = latest.get(template.subscription)
            latest[template.subscription] = arrival if seen is None else max(seen, arrival or seen)
        return latest

    def dispatch(self, topic: str, payload: bytes, arrival: float) -> None:
        """Hand one message to the ingest of its model (the MQTT callback calls this); bad input is counted.

        A topic's route is cached after its first accepted message, so refused streams (over
        ``max_streams``) and bad publishers cost no memory.
        """
        route = self.cache.get(topic)
        if route is not None:
            self._deliver(route, payload, arrival)
            return
        route = self.route(topic)
        if route is None:
            self.bad.report("unknown_topic", topic)
        elif self._deliver(route, payload, arrival):
            if len(self.cache) >= self.max_routes:
                self.cache.clear()
            self.cache[topic] = route

    def _deliver(self, route: Route, payload: bytes, arrival: float) -> bool:
        """Size check, then the handler under the ingest lock; False when the message was refused (and counted)."""
        self.last_message[route.index] = arrival
        if len(payload) > self.max_payload:
            self.bad.report("oversized", route.topic, f"{len(payload)} bytes > {self.max_payload}")
            self.templates[route.index][2].refused(route.key)
            return False
        try:
            with self.lock:
                route.handler(route, payload, arrival)
        except BadSample as bad:
            self.bad.report(bad.reason, route.topic, bad.detail)
            self.templates[route.index][2].refused(route.key)
            return False
        return True
