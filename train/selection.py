"""``linewatch train --model auto``: the model kind chosen by the user's own normal data.

Each candidate kind is trained on the first part of every series (its validation windows, the last fifth, left
unseen), and the held-out windows are scored twice: as they are, and with a synthetic fault written into one sensor
of each (spikes, a drift, a stuck value, a noise burst, a broken correlation), scaled to that sensor's spread on the
training data. A candidate's criterion is the share of faulted windows scoring above every clean held-out window:
detection at the strictest false-alarm level those windows support, with no labels from the data. The best kind
wins; ties go to the earlier candidate (the cheaper one in :data:`CANDIDATES`' order).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from train.data import SensorTable
from train.simulate import SENSOR_FAULTS, sensor_fault

CANDIDATES = ("pca", "dense", "conv", "vae", "lstm")  # cheapest first: a tie keeps the cheaper kind
SYNTHETIC_FAULTS = (*SENSOR_FAULTS, "broken_correlation")
MAX_HELD_OUT = 2_000  # held-out windows per candidate: enough for the criterion, bounded in time


@dataclass
class Candidate:
    """One kind tried: the share of each synthetic fault detected, their mean (the criterion), and its training time."""

    kind: str
    detected: dict[str, float]
    score: float
    seconds: float

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"kind": self.kind, "detected": self.detected, "score": self.score, "seconds": self.seconds}


def with_faults(windows: np.ndarray, spread: np.ndarray, fault: str, rng: np.random.Generator) -> np.ndarray:
    """A copy of raw windows ``[N, W, F]`` with ``fault`` written into one random sensor of each, over the window's
    second half (the onset inside the window), scaled to that sensor's ``spread``.
    """
    faulted = np.array(windows, dtype=np.float32, copy=True)
    n, w, f = faulted.shape
    onset = w // 2
    sensors = rng.integers(0, f, n)
    if fault not in SYNTHETIC_FAULTS:
        raise ValueError(f"unknown synthetic fault {fault!r}; expected one of {SYNTHETIC_FAULTS}")
    for i, j in enumerate(sensors):
        part = faulted[i, onset:, j]
        if fault == "broken_correlation":  # the sensor's own normal values from another moment: right range, wrong context
            part[:] = windows[(i + 1 + int(rng.integers(0, n - 1))) % n if n > 1 else i, onset:, j]
        else:
            sensor_fault(part, fault, spread[j], faulted[i, onset - 1, j], rng)
    return faulted


def held_out_windows(detector, table: SensorTable, rng: np.random.Generator) -> np.ndarray:
    """The windows a fitted ``detector`` validated on and never trained on (at most :data:`MAX_HELD_OUT`)."""
    windowed = detector._windows(table, detector.stride, exclude_labelled=True)
    _, val_sel = detector._split(windowed)
    return detector._gather(windowed, val_sel, MAX_HELD_OUT, rng)


def evaluate_candidate(detector, table: SensorTable, seed: int) -> tuple[dict[str, float], float]:
    """Per synthetic fault, the share of faulted held-out windows a fitted ``detector`` scores above every clean one."""
    rng = np.random.default_rng(seed)
    clean = held_out_windows(detector, table, rng)
    n = len(detector.features_)
    spread = np.nanstd(np.concatenate([s.values[:, :n] for s in table.series]), axis=0)
    level = float(np.max(detector.score_windows(clean)[0]))
    detected = {}
    for fault in SYNTHETIC_FAULTS:
        faulted = clean.copy()
        faulted[..., :n] = with_faults(clean[..., :n], spread, fault, rng)
        detected[fault] = round(float(np.mean(detector.score_windows(faulted)[0] > level)), 4)
    return detected, round(float(np.mean(list(detected.values()))), 4)


def choose_kind(table: SensorTable, seed: int, candidates: tuple[str, ...] = CANDIDATES, echo=print,
                **options) -> tuple[str, list[Candidate]]:
    """Try every candidate kind on ``table``, each an :class:`~train.detector.AutoencoderDetector` with ``options``
    (window, stride, training settings, conditions) calibrated on its held-out tail; returns the winning kind and every
    candidate's evidence, best first.
    """
    from train.detector import AutoencoderDetector

    tried = []
    for kind in candidates:
        started = time.perf_counter()
        detector = AutoencoderDetector(kind=kind, calibration="holdout", threshold="conformal", progress=False, seed=seed,
                                       **options).fit(table)
        detected, score = evaluate_candidate(detector, table, seed)
        tried.append(Candidate(kind, detected, score, round(time.perf_counter() - started, 1)))
        echo(f"  {kind:6s} {score:.3f}  " + "  ".join(f"{fault} {share:.2f}" for fault, share in detected.items()))
    best = max(tried, key=lambda c: (c.score, -candidates.index(c.kind)))
    return best.kind, sorted(tried, key=lambda c: (-c.score, candidates.index(c.kind)))
