"""A synthetic plant: motor-driven pumps with physically linked sensors and labelled faults.

Each machine follows a duty cycle (load steps between idle and working levels). Speed tracks
the load set-point with a first-order lag; motor current follows torque (load) and speed;
vibration RMS grows with speed squared; bearing temperature lags load by minutes; pump
pressure grows with speed squared and flow with speed. Faults are injected after a normal
period and labelled row by row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

FEATURES = ["current", "speed", "vibration", "bearing_temp", "pressure", "flow"]
UNITS = {"current": "A", "speed": "rpm", "vibration": "mm/s", "bearing_temp": "degC", "pressure": "bar", "flow": "m3/h"}
FAULT_KINDS = ("spike", "drift", "stuck", "noise_burst", "broken_correlation", "degradation")


@dataclass
class Fault:
    """One injected fault: kind, machine, first row, length in rows, and the sensor it hits."""

    kind: str
    machine: str
    start: int
    length: int
    feature: str


def _lag(signal: np.ndarray, tau_steps: float, initial: float) -> np.ndarray:
    """First-order lag filter (exponential smoothing with time constant ``tau_steps``)."""
    alpha = 1.0 / max(tau_steps, 1.0)
    out = np.empty_like(signal)
    state = initial
    for i, value in enumerate(signal):
        state += alpha * (value - state)
        out[i] = state
    return out


def _duty_cycle(rows: int, rng: np.random.Generator) -> np.ndarray:
    """Load set-point in [0, 1]: idle and working phases of random length."""
    load = np.empty(rows)
    i = 0
    while i < rows:
        length = int(rng.integers(120, 600))
        level = rng.choice([0.2, 0.6, 0.8, 1.0], p=[0.2, 0.3, 0.3, 0.2])
        load[i : i + length] = level
        i += length
    return load


# Products the pump moves in regime mode: a denser product needs more torque and head, and flows less per rpm.
RECIPES = {"A": {"density": 1.0, "flow": 1.0}, "B": {"density": 1.4, "flow": 0.8}, "C": {"density": 0.7, "flow": 1.15}}


def _recipes(rows: int, rng: np.random.Generator) -> np.ndarray:
    """The product run at each row: changes every 30 to 90 minutes (at 1 s per row)."""
    names = np.empty(rows, dtype=object)
    i = 0
    while i < rows:
        length = int(rng.integers(1800, 5400))
        names[i : i + length] = rng.choice(list(RECIPES))
        i += length
    return names


def normal_machine(rows: int, rng: np.random.Generator, recipes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Normal operation of one machine: ``[rows, 6]`` in :data:`FEATURES` order, and the load set-point per row.

    ``recipes`` (one of :data:`RECIPES` per row) scales torque, head and flow per product; without it the
    pump always moves the same product.
    """
    load = _duty_cycle(rows, rng)
    density = np.ones(rows) if recipes is None else np.array([RECIPES[r]["density"] for r in recipes])
    flow_gain = np.ones(rows) if recipes is None else np.array([RECIPES[r]["flow"] for r in recipes])
    speed = _lag(1500 * (0.3 + 0.7 * load), 8, 1500 * (0.3 + 0.7 * load[0]))
    rel = speed / 1500
    current = 4 + 18 * density * load * rel + rng.normal(0, 0.25, rows)
    vibration = 0.5 + 2.2 * rel**2 + rng.normal(0, 0.06, rows)
    bearing_temp = _lag(35 + 30 * density * load, 240, 35 + 30 * density[0] * load[0]) + rng.normal(0, 0.15, rows)
    pressure = 0.5 + 5.5 * density * rel**2 + rng.normal(0, 0.05, rows)
    flow = 2 + 38 * flow_gain * rel + rng.normal(0, 0.4, rows)
    speed = speed + rng.normal(0, 4, rows)
    return np.column_stack([current, speed, vibration, bearing_temp, pressure, flow]), load


def sensor_fault(part: np.ndarray, kind: str, scale: float, held: float, rng: np.random.Generator) -> None:
    """Write a one-sensor fault into ``part`` (a 1-D view of that sensor's values over the fault) in place, scaled to
    the sensor's spread ``scale``: ``spike`` (random samples at six spreads), ``drift`` (a ramp to 2.5), ``stuck``
    (``held`` repeated) or ``noise_burst`` (noise of 1.5). Shared by the simulator and ``--model auto``'s synthetic faults.
    """
    n = len(part)
    if kind == "spike":
        part += rng.choice([-1, 1]) * 6 * scale * (rng.random(n) < 0.5)
    elif kind == "drift":
        part += np.linspace(0, 2.5 * scale, n)
    elif kind == "stuck":
        part[:] = held
    elif kind == "noise_burst":
        part += rng.normal(0, 1.5 * scale, n)
    else:
        raise ValueError(f"{kind!r} is not a one-sensor fault; expected one of {SENSOR_FAULTS}")


SENSOR_FAULTS = ("spike", "drift", "stuck", "noise_burst")


def inject(values: np.ndarray, fault: Fault, rng: np.random.Generator) -> None:
    """Apply ``fault`` to one machine's values in place."""
    col = FEATURES.index(fault.feature)
    s = slice(fault.start, fault.start + fault.length)
    n = fault.length
    if fault.kind in SENSOR_FAULTS:
        sensor_fault(values[s, col], fault.kind, values[:, col].std(), values[fault.start, col], rng)
    elif fault.kind == "broken_correlation":
        # flow collapses while speed and pressure stay normal (a blocked or cavitating pump)
        flow = FEATURES.index("flow")
        values[s, flow] = values[s, flow] * 0.55 + rng.normal(0, 0.4, n)
    elif fault.kind == "degradation":
        vib = FEATURES.index("vibration")
        values[s, vib] += np.linspace(0, 1.0, n) ** 2 * 3.0
        temp = FEATURES.index("bearing_temp")
        values[s, temp] += np.linspace(0, 8.0, n)


def simulate_plant(
    machines: int = 3,
    rows: int = 6000,
    normal_rows: int = 2000,
    faults_per_machine: int = 2,
    sample_period: float = 1.0,
    seed: int = 0,
    start: str = "2026-01-01T00:00:00Z",
    regimes: bool = False,
) -> tuple[pd.DataFrame, list[Fault]]:
    """Simulate ``machines`` machines for ``rows`` samples each.

    The first ``normal_rows`` rows are fault-free (the training period); faults of rotating
    kinds are then spread over the rest. Returns a long table with columns ``time``,
    ``machine``, the sensors, ``label`` (0/1) and ``fault`` (kind or empty), and the fault list.
    With ``regimes`` the operating conditions are recorded and change during normal operation:
    ``setpoint`` (the load set-point, 0.2 to 1) and ``recipe`` (the product, see :data:`RECIPES`,
    which changes the sensors' normal relationships).
    """
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start)
    times = t0 + pd.to_timedelta(np.arange(rows) * sample_period, unit="s")
    frames, faults = [], []
    kinds = list(FAULT_KINDS)
    for m in range(machines):
        name = f"m{m + 1}"
        recipes = _recipes(rows, rng) if regimes else None
        values, setpoint = normal_machine(rows, rng, recipes)
        labels = np.zeros(rows, dtype=np.int8)
        fault_names = np.full(rows, "", dtype=object)
        if faults_per_machine and rows > normal_rows:
            slots = np.linspace(normal_rows, rows, faults_per_machine + 1).astype(int)
            for k in range(faults_per_machine):
                kind = kinds[(m * faults_per_machine + k) % len(kinds)]
                space = slots[k + 1] - slots[k]
                length = int(min(space // 2, rng.integers(60, 240) if kind != "degradation" else space // 2))
                first = int(slots[k] + rng.integers(space // 6, max(space // 6 + 1, space - length - space // 6)))
                feature = {"broken_correlation": "flow", "degradation": "vibration"}.get(kind, str(rng.choice(FEATURES)))
                fault = Fault(kind, name, first, length, feature)
                inject(values, fault, rng)
                labels[first : first + length] = 1
                fault_names[first : first + length] = kind
                faults.append(fault)
        frame = pd.DataFrame(values.astype(np.float32), columns=FEATURES)
        frame.insert(0, "machine", name)
        frame.insert(0, "time", times)
        if regimes:
            frame["setpoint"] = setpoint.astype(np.float32)
            frame["recipe"] = recipes
        frame["label"] = labels
        frame["fault"] = fault_names
        frames.append(frame)
    return pd.concat(frames, ignore_index=True), faults


def write_table(frame: pd.DataFrame, path: str) -> None:
    """Write CSV or Parquet by the file's extension."""
    if str(path).lower().endswith((".parquet", ".pq")):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
