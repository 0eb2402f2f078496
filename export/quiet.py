"""Capture the exporters' console chatter (Python and C++) into a log file."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from pathlib import Path


@contextlib.contextmanager
def captured_output(log_path: Path):
    """Redirect file descriptors 1 and 2, Python warnings and logging into ``log_path`` (appended)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    root = logging.getLogger()
    with open(log_path, "a") as log, warnings.catch_warnings():
        warnings.simplefilter("always")
        handler = logging.StreamHandler(log)
        root.addHandler(handler)
        showwarning = warnings.showwarning
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: log.write(
            warnings.formatwarning(message, category, filename, lineno, line)
        )
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            warnings.showwarning = showwarning
            root.removeHandler(handler)
