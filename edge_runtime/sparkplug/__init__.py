"""Sparkplug B as one more input and output format: the codec, the input decoder, the edge node for events.

``sparkplug_b_pb2`` is generated from ``sparkplug_b.proto`` by ``make proto``.
"""
