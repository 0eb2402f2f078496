"""Topic templates such as ``plant/{line}/{machine}/telemetry``: subscription filter and field match."""

from __future__ import annotations

import re


class TopicTemplate:
    """A topic with ``{field}`` placeholders, each standing for exactly one topic level.

    The stream key is the fields other than ``tag``, joined with ``/`` in template order.
    """

    def __init__(self, template: str) -> None:
        """Refuses (``ValueError``) a field that is not a whole level, wildcards, repeated fields, or no stream field."""
        self.template = template
        self.fields = re.findall(r"\{(\w+)\}", template)
        for level in template.split("/"):
            if ("{" in level or "}" in level) and not re.fullmatch(r"\{\w+\}", level):
                raise ValueError(f"topic template {template!r}: {level!r} is not one whole {{field}} per level")
            if "+" in level or "#" in level:
                raise ValueError(f"topic template {template!r}: write {{field}} instead of MQTT wildcards")
        if len(set(self.fields)) != len(self.fields):
            raise ValueError(f"topic template {template!r}: a field appears twice")
        if not [f for f in self.fields if f != "tag"]:
            raise ValueError(f"topic template {template!r} has no {{field}} naming the stream: every stream would be the same")
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
