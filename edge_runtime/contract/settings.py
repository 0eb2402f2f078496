"""Settings with their rules in the field: the declarative validation behind every configuration dataclass."""

from __future__ import annotations

from dataclasses import field


def setting(default, *, help: str, choices: tuple | None = None, lo: float | None = None, hi: float | None = None,
            above: float | None = None):
    """A dataclass field with its rule and its documentation: one of ``choices``, or ``lo <= value <= hi`` and
    ``value > above``; ``help`` is what the configuration reference and ``gateway.example.toml`` say of it.
    """
    metadata = {"help": help, "choices": choices, "lo": lo, "hi": hi, "above": above}
    if isinstance(default, list):  # each instance gets its own copy
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)
