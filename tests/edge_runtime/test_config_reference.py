"""The configuration has one source: the dataclasses' fields. The example file shows every key with its default."""

import sys
from pathlib import Path

from edge_runtime.config import reference

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXAMPLE = Path(__file__).parents[2] / "edge_runtime" / "gateway.example.toml"


def example_settings() -> dict[tuple[str, str], object]:
    """``(section, key) -> value`` of every setting the example file shows (tables of arrays: every entry)."""
    data = tomllib.loads(EXAMPLE.read_text())
    shown = {}
    for section in ("broker", "runtime", "sparkplug"):
        shown.update({(section, k): v for k, v in data[section].items()})
    for model in data["models"]:
        for key, value in model.items():
            if isinstance(value, dict):
                shown.update({(f"models.{key}", k): v for k, v in value.items()})
            elif isinstance(value, list):
                for entry in value:
                    shown.update({(f"models.{key}", k): v for k, v in entry.items()})
            else:
                shown[("models", key)] = value
    return shown


def test_every_setting_is_documented_and_the_example_shows_it_with_its_default():
    rows = reference()
    assert len(rows) >= 70 and all(help_.strip() for *_, help_ in rows)
    shown = example_settings()
    documented = {(section, key): default for section, key, _, default, _, _ in rows}
    assert set(shown) <= set(documented), sorted(set(shown) - set(documented))
    # commented out in the example: the override that has no default, and the condition format's own key
    assert set(documented) - set(shown) == {("models", "threshold"), ("models.inputs", "condition")}
    examples_by_design = {("models", "name"), ("models", "bundle"), ("models.inputs", "topic"), ("models.inputs", "format")}
    differing = {key for key, value in shown.items() if key not in examples_by_design and value != documented[key]}
    assert not differing, sorted(differing)
