"""systemd's service notification protocol (``Type=notify``, ``WatchdogSec=``), without a dependency.

The runtime says ``READY=1`` once it is started, ``STOPPING=1`` when it begins to shut down, and
``WATCHDOG=1`` from its housekeeping thread at half the watchdog interval: a runtime whose housekeeping
stops (a deadlock, a hung disk) stops pinging, and systemd restarts it. Outside systemd
(``$NOTIFY_SOCKET`` unset) every call does nothing.
"""

from __future__ import annotations

import os
import socket


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to the service manager; False when not run by one or the send failed."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), address)
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings (half of ``WatchdogSec=``), or None when no watchdog is asked for this process."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6
