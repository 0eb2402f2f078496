"""MkDocs hook: the configuration reference is generated from the configuration dataclasses' own metadata."""

from __future__ import annotations

MARKER = "<!-- configuration-reference -->"


def _cell(value) -> str:
    text = "" if value is None else repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    return f"`{text}`" if text else "(none)"


def configuration_reference() -> str:
    """One table per TOML section: key, type, default, allowed values, what it does."""
    from edge_runtime.config import reference

    out, section = [], None
    for table, key, type_name, default, rule, help_ in reference():
        if table != section:
            section = table
            heading = f"[[{table}]]" if table in ("models", "models.inputs") else f"[{table}]"
            out += ["", f"## `{heading}`", "", "| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        out.append(f"| `{key}` | {type_name} | {_cell(default)} | {rule.replace('|', '&#124;')} | {help_.replace('|', '&#124;')} |")
    return "\n".join(out) + "\n"


def on_page_markdown(markdown: str, **_) -> str:
    """Fill the marker with the generated reference."""
    return markdown.replace(MARKER, configuration_reference()) if MARKER in markdown else markdown
