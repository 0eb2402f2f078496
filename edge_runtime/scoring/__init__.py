"""From window to decision: batching across streams, inference backends, alarms, drift, commissioning.

Runs on one scoring thread per model (:mod:`~edge_runtime.scoring.batcher`);
:mod:`~edge_runtime.scoring.model_runner` ties a model's ingest, batcher, backend and decisions
together, and :mod:`~edge_runtime.scoring.offline` replays files through the same streams.
"""
