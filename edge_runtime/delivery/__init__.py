"""From decision to event: the event schema, the durable outbox, and the MQTT link.

The sink (:mod:`~edge_runtime.delivery.sink`) runs on its own thread: it stores durable events
in the SQLite outbox before publishing them at QoS 1 and removes them when the broker acknowledges.
"""
