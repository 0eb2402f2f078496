"""Topic templates such as ``plant/{line}/{machine}/telemetry``: subscription filter and field match."""

from __future__ import annotations

import re


class TopicTemplate:
    """A topic with ``{field}`` placeholders, each standing for exactly one topic level.

    The stream key is the fields other than ``tag``, joined with ``/`` in template order.
    """

    def __init__(self, template: str) -> None:
        self.template = template
        self.fields = re.findall(r"\{(\w+)\}", template)
        if not self.fields:
            raise ValueError(f"topic template {template!r} has no {{field}}: every stream would be the same")
        pattern = "".join(
            f"(?P<{part[1:-1]}>[^/]+)" if re.fullmatch(r"\{\w+\}", part) else re.escape(part)
            for part in re.split(r"(\{\w+\})", template)
            if part
        )
        self.regex = re.compile(f"^{pattern}$")
        self.subscription = re.sub(r"\{\w+\}", "+", template)
        self.key_fields = [f for f in self.fields if f != "tag"]

    def match(self, topic: str) -> tuple[str, str | None] | None:
        """``(stream key, tag or None)`` for a matching topic, else None."""
        found = self.regex.match(topic)
        if found is None:
            return None
        groups = found.groupdict()
        return "/".join(groups[f] for f in self.key_fields), groups.get("tag")
