"""``python -m edge_runtime`` runs the ``linewatch`` command."""

from edge_runtime.cli import main

main()
