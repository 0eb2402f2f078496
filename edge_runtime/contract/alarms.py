"""Alarm state per stream, in the spirit of ISA-18.2: on-delay, off-delay and deadband.

An alarm is raised when ``on_k`` of the last ``on_n`` windows score above the threshold, and
cleared after ``off_m`` consecutive windows below ``threshold * (1 - deadband)``. One fault
gives one raise and one clear, not a flood.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_runtime.contract.settings import setting

RAISED = "alarm_raised"
CLEARED = "alarm_cleared"


class Alarm:
    """The alarm of one stream."""

    __slots__ = ("on_k", "on_n", "off_m", "deadband", "recent", "active", "below")

    def __init__(self, on_k: int, on_n: int, off_m: int, deadband: float) -> None:
        self.on_k, self.on_n, self.off_m, self.deadband = on_k, on_n, off_m, deadband
        self.recent = 0  # bit i set: the window i steps ago exceeded the threshold
        self.active = False
        self.below = 0

    @property
    def rising(self) -> bool:
        """Not raised yet, but one of the last ``on_n`` windows exceeded the threshold: on its way to raising."""
        return not self.active and self.recent != 0

    def windows_since_first_exceeded(self) -> int:
        """At a raise: how many windows before this one the first of those that raised it exceeded the threshold."""
        return self.recent.bit_length() - 1

    def state(self) -> tuple[int, bool, int]:
        """Everything :meth:`update` changes, for :meth:`restore`."""
        return self.recent, self.active, self.below

    def restore(self, state: tuple[int, bool, int]) -> None:
        """Undo updates back to a :meth:`state` (when the event of a transition could not be made)."""
        self.recent, self.active, self.below = state

    def update(self, score: float, threshold: float) -> str | None:
        """Feed one window's score; returns ``alarm_raised``, ``alarm_cleared`` or None."""
        self.recent = ((self.recent << 1) | (score > threshold)) & ((1 << self.on_n) - 1)
        if not self.active:
            if self.recent.bit_count() >= self.on_k:
                self.active, self.below = True, 0
                return RAISED
            return None
        self.below = self.below + 1 if score < threshold * (1 - self.deadband) else 0
        if self.below >= self.off_m:
            self.active, self.recent = False, 0
            return CLEARED
        return None


@dataclass
class AlarmConfig:
    """Alarm semantics in the spirit of ISA-18.2."""

    on_k: int = setting(2, lo=1, help="raise when k of the last n windows exceed the threshold (on-delay)")
    on_n: int = setting(3, lo=1, hi=64, help="the window count on_k is taken over (on-delay)")
    off_m: int = setting(3, lo=1, help="clear after m consecutive windows below threshold * (1 - deadband) (off-delay)")
    deadband: float = setting(0.1, lo=0, hi=0.99, help="clearing needs scores below threshold * (1 - deadband), so a score near the threshold cannot flap")

    def policy(self) -> tuple[int, int, int, float]:
        """``(on_k, on_n, off_m, deadband)``: the arguments of :class:`edge_runtime.contract.alarms.Alarm` and of the offline replay."""
        return self.on_k, self.on_n, self.off_m, self.deadband
