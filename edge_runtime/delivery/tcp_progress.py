"""How far a TCP connection's writes got, as the kernel sees them (Linux's ``TCP_INFO``): the bytes the peer
acknowledged, and whether any wait to be sent or acknowledged. An application's own count of bytes written stops at
the socket's send buffer, which can hold megabytes that never leave; the kernel's count does not.
"""

from __future__ import annotations

import socket
import struct

# offsets in Linux's struct tcp_info (include/uapi/linux/tcp.h; fields are only ever appended to it)
UNACKED_AT, BYTES_ACKED_AT, NOTSENT_AT = 24, 120, 144
INFO_SIZE = NOTSENT_AT + 4


def tcp_progress(sock) -> tuple[int, bool] | None:
    """``(bytes the peer acknowledged, whether bytes wait to be sent or acknowledged)`` of a TCP socket; None where
    the platform or the socket (a websocket wrapper) does not tell.
    """
    option = getattr(socket, "TCP_INFO", None)
    if option is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, option, INFO_SIZE)
    except (OSError, AttributeError, ValueError):
        return None
    if len(info) < INFO_SIZE:
        return None
    (unacked,) = struct.unpack_from("@I", info, UNACKED_AT)
    (acked,) = struct.unpack_from("@Q", info, BYTES_ACKED_AT)
    (notsent,) = struct.unpack_from("@I", info, NOTSENT_AT)
    return acked, bool(unacked or notsent)
