"""Operating conditions of a conditional model: when a value was never seen in training.

One rule for training (``AutoencoderDetector.score_samples``) and the runtime: a condition at a
window's last sample is *unseen*, and the window not scored, when it is missing (NaN), a
category the model does not know (coded -1), or a number more than :data:`CONDITION_MARGIN` of
its trained range outside that range.
"""

from __future__ import annotations

import numpy as np

CONDITION_MARGIN = 0.1


def category_codes(condition: dict) -> dict[str, float] | None:
    """A categorical condition's code per category (its index); None for a numeric condition (its value is the code)."""
    if condition["kind"] != "categorical":
        return None
    return {category: float(i) for i, category in enumerate(condition["categories"])}


def category_code(codes: dict[str, float], value) -> float:
    """A categorical value's code: its category's index, -1 for a category the model does not know."""
    return codes.get(value if type(value) is str else str(value), -1.0)


def unseen(values: np.ndarray, conditions: list[dict]) -> np.ndarray:
    """Rows of ``values [N, C]`` (numeric as they are, categorical as category indices) with a condition training never saw.

    ``conditions`` are the bundle's ``input.conditions`` entries (``kind``, and ``min``/``max`` for numeric ones).
    """
    mask = np.zeros(len(values), bool)
    for j, condition in enumerate(conditions):
        value = values[:, j]
        if condition["kind"] == "numeric":
            lo, hi = condition["min"], condition["max"]
            margin = CONDITION_MARGIN * max(hi - lo, abs(hi) * 1e-3, 1e-9)
            mask |= ~((value >= lo - margin) & (value <= hi + margin))
        else:
            mask |= ~(value >= 0)
    return mask
