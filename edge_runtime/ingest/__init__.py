"""From message to window: topic routing, payload decoding, tag alignment, per-stream ring buffers.

Runs on the MQTT network thread. :mod:`~edge_runtime.ingest.router` maps a topic to a model's
handler, :mod:`~edge_runtime.ingest.pipeline` decodes and pushes samples into the streams of
:mod:`~edge_runtime.ingest.registry`, and a stream whose window is ready hands it to scoring.
"""
