"""The application layer: the ``linewatch`` command, the demo, benchmarks, evaluation and local tools.

It sits above the three stages (``export`` above ``train`` above the shared contract, with the
``edge_runtime`` beside them) and imports each lazily, so a gateway without torch can run the
runtime's commands.
"""
