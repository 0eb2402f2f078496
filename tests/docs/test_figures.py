"""Every figure the docs quote traces to a committed result file.

A figure is a number in the docs' prose, tables or transcripts written with a decimal point, a
thousands separator or a unit of measure (``ms``, ``µs``, ``%``, ``msg/s`` ...). Each must appear in
a file under ``benchmarks/results/`` (the Markdown tables and JSON the benchmarks write). Numbers that
are settings, definitions or published figures of others, not our measurements, are listed in the page's
front matter under ``constants``, where a reader can see them. Code (``max_gap = 3``, fenced examples of
payloads and commands) is not a figure; a transcript worth quoting is included from its result file.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
RESULTS = ROOT / "benchmarks" / "results"
UNITS = r"(?:\s?(?:ms|µs|us|%|msg/s|samples/s|windows/s|events/s|MB|KB|GB|MiB|GiB|s\b|x\b|×))"
FIGURE = re.compile(r"(?<![\w.`/#-])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+|\d+(?=" + UNITS + r"))(?![\w.]*\d)")
FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.S)


def pages() -> list[Path]:
    """The docs' own pages (not the results they link, not the generated references)."""
    return sorted(p for p in DOCS.rglob("*.md") if "results" not in p.relative_to(DOCS).parts and p.parent.name != "reference")


@lru_cache(maxsize=1)
def committed_numbers() -> set[str]:
    """Every number written in a committed result file, as written and without thousands separators."""
    numbers: set[str] = set()
    for path in RESULTS.rglob("*"):
        if path.suffix in (".md", ".json", ".txt"):
            for token in re.findall(r"\d[\d,]*(?:\.\d+)?", path.read_text(errors="replace")):
                numbers.update({token.strip(","), token.replace(",", "")})
    return numbers


def variants(figure: str) -> set[str]:
    """How a result file may have written the figure: as given, without separators, and with trailing zeros dropped."""
    plain = figure.replace(",", "")
    forms = {figure, plain}
    if "." in plain:
        forms.add(plain.rstrip("0").rstrip("."))
    return forms


def figures(text: str) -> list[str]:
    """The figures of a page's text: code (fenced and inline) and link targets left out."""
    text = re.sub(r"^\s*```.*?^\s*```", " ", text, flags=re.M | re.S)
    text = re.sub(r"`[^`\n]*`", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return [m.group(1) for m in FIGURE.finditer(text)]


def constants_of(text: str) -> set[str]:
    """The ``constants:`` list of a page's front matter."""
    match = FRONT_MATTER.match(text)
    meta = yaml.safe_load(match.group(1)) if match else None
    return {str(item) for item in (meta or {}).get("constants", [])}


def test_the_checker_finds_figures_and_ignores_code():
    assert figures("p99 2.41 ms at 12,000 msg/s, 3 of 8 windows, `max_gap = 3.5` and 40 %") == ["2.41", "12,000", "40"]
    assert figures("```json\n{\"score\": 9.4}\n```\nthen 1.5 ms") == ["1.5"]
    assert variants("1,424") == {"1,424", "1424"} and "3.8" in variants("3.80")


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_every_figure_in_the_docs_is_in_a_committed_result(page: Path):
    text = page.read_text()
    allowed = constants_of(text)
    body = FRONT_MATTER.sub("", text)
    untraced = sorted({f for f in figures(body) if f not in allowed and not variants(f) & committed_numbers()}, key=body.find)
    assert not untraced, f"{page.name}: figures found in no file under benchmarks/results/ (nor in its constants): {untraced}"
