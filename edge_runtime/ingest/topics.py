"""Topic templates such as ``plant/{line}/{machine}/telemetry``, and Sparkplug B's fixed namespace
``spBv1.0/{group}/{kind}/{node}[/{device}]``: subscription filter and field match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

SPARKPLUG_NAMESPACE = "spBv1.0"
SHARED_PREFIX = "$share/"  # an MQTT 5 shared subscription: the broker hands each message to one member of the group
SPARKPLUG_NODE_KINDS = ("NBIRTH", "NDATA", "NDEATH", "NCMD")
SPARKPLUG_DEVICE_KINDS = ("DBIRTH", "DDATA", "DDEATH", "DCMD")


class TopicTemplate:
    """A topic with ``{field}`` placeholders, each standing for exactly one topic level.

    The stream key is the fields other than ``tag``, joined with ``/`` in template order; a ``+`` level matches
    any one level and is not part of the key (``part/+/plant/{line}/{machine}/telemetry``). A template
    may start with ``$share/<group>/``: an MQTT 5 shared subscription, where the broker hands each message
    to one subscriber of the group; messages arrive on the topic without that prefix.
    """

    def __init__(self, template: str) -> None:
        """Refuses (``ValueError``) a field that is not a whole level, wildcards, repeated fields, or no stream field."""
        share = ""
        if template.startswith(SHARED_PREFIX):
            _, group, rest = (template.split("/", 2) + ["", ""])[:3]
            if not group or any(c in group for c in "+#{}") or not rest:
                raise ValueError(f"topic template {template!r}: a shared subscription is $share/<group>/<topic>")
            share, template = f"$share/{group}/", rest
        self.template = template
        self.fields = re.findall(r"\{(\w+)\}", template)
        for level in template.split("/"):
            if ("{" in level or "}" in level) and not re.fullmatch(r"\{\w+\}", level):
                raise ValueError(f"topic template {template!r}: {level!r} is not one whole {{field}} per level")
            if ("+" in level and level != "+") or "#" in level:
                raise ValueError(f"topic template {template!r}: write {{field}} for a level of the stream key, + for a level "
                                 "that is not part of it; no #")
        if len(set(self.fields)) != len(self.fields):
            raise ValueError(f"topic template {template!r}: a field appears twice")
        if not [f for f in self.fields if f != "tag"]:
            raise ValueError(f"topic template {template!r} has no {{field}} naming the stream: every stream would be the same")
        pattern = "/".join(
            "[^/]+" if level == "+" else "".join(
                f"(?P<{part[1:-1]}>[^/]+)" if re.fullmatch(r"\{\w+\}", part) else re.escape(part)
                for part in re.split(r"(\{\w+\})", level) if part)
            for level in template.split("/")
        )
        self.regex = re.compile(f"^{pattern}$")
        self.subscription = share + re.sub(r"\{\w+\}", "+", template)
        self.key_fields = [f for f in self.fields if f != "tag"]

    def match(self, topic: str) -> tuple[str, str | None] | None:
        """``(stream key, tag or None)`` for a matching topic, else None."""
        found = self.regex.match(topic)
        if found is None:
            return None
        groups = found.groupdict()
        return "/".join(groups[f] for f in self.key_fields), groups.get("tag")


@dataclass(frozen=True, slots=True)
class SparkplugTopic:
    """A Sparkplug topic ``spBv1.0/{group}/{kind}/{node}[/{device}]``."""

    group: str
    kind: str
    node: str
    device: str | None

    @property
    def key(self) -> str:
        """The stream key: ``node/device``, or ``node`` for the node's own metrics."""
        return self.node if self.device is None else f"{self.node}/{self.device}"


@lru_cache(maxsize=65_536)  # the router matches a topic once, ingest reads its parts on every message: parse each once
def parse_sparkplug(topic: str) -> SparkplugTopic | None:
    """The parts of a Sparkplug B node or device topic, or None for anything else (STATE, other namespaces)."""
    parts = topic.split("/")
    if parts[0] != SPARKPLUG_NAMESPACE or len(parts) not in (4, 5):
        return None
    if parts[2] not in (SPARKPLUG_NODE_KINDS if len(parts) == 4 else SPARKPLUG_DEVICE_KINDS):
        return None
    return SparkplugTopic(parts[1], parts[2], parts[3], parts[4] if len(parts) == 5 else None)


class SparkplugTemplate:
    """The topic of a ``sparkplug`` input: ``spBv1.0/<group>``, subscribed as ``spBv1.0/<group>/#``.

    Each ``{node}/{device}`` is a stream (``{node}`` for node metrics); ``node`` is the field an event topic
    can name beside ``stream``. :meth:`match` returns ``(stream key, message kind)``.
    """

    def __init__(self, template: str) -> None:
        """Refuses (``ValueError``) anything but the namespace and one group id."""
        parts = template.split("/")
        if len(parts) != 2 or parts[0] != SPARKPLUG_NAMESPACE or not parts[1] or any(c in parts[1] for c in "+#{}"):
            raise ValueError(f"a sparkplug input's topic is {SPARKPLUG_NAMESPACE}/<group id>, got {template!r}")
        self.template, self.group = template, parts[1]
        self.subscription = f"{template}/#"
        self.fields = self.key_fields = ["node"]

    def match(self, topic: str) -> tuple[str, str | None] | None:
        """``(stream key, kind)`` for a node or device message of this group, else None."""
        found = parse_sparkplug(topic)
        if found is None or found.group != self.group:
            return None
        return found.key, found.kind


def template_for(topic: str, format: str) -> TopicTemplate | SparkplugTemplate:
    """The template of an input: Sparkplug's namespace for ``format = "sparkplug"``, ``{field}`` placeholders otherwise."""
    return SparkplugTemplate(topic) if format == "sparkplug" else TopicTemplate(topic)
