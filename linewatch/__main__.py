"""``python -m linewatch`` runs the ``linewatch`` command."""

from linewatch.cli import main

main()
