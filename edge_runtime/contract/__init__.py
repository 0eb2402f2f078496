"""The rules every stage shares, in one place and free of heavy dependencies.

The bundle schema, time parsing, table reading, operating conditions, the alarm rule, the
conformal threshold rule, row scores and the metrics of detection quality. ``train`` and
``export`` import these modules and nothing else of ``edge_runtime``, so that training,
evaluation and the gateway apply each rule through one implementation.
"""
