"""WebSocket text frames as a server writes them (RFC 6455 section 5.2), sans-I/O.

The media tick sends each provider stream a message every 20 ms; written straight to the
socket as whole frames they skip two coroutines of aiohttp's writer per message, and an
audio message and its mark go out in one write. Only for a connection without a
negotiated extension (permessage-deflate): a server's frames are unmasked, final, and
carry their length in the header.
"""

from __future__ import annotations

import struct

__all__ = ["text_frame"]

_FIN_TEXT = 0x81  # FIN, opcode 1 (text)
_LEN16 = struct.Struct("!BBH")
_LEN64 = struct.Struct("!BBQ")


def text_frame(text: str) -> bytes:
    """One unfragmented, unmasked text frame carrying `text` (UTF-8)."""
    data = text.encode()
    n = len(data)
    if n < 126:
        return bytes((_FIN_TEXT, n)) + data
    if n < 65536:
        return _LEN16.pack(_FIN_TEXT, 126, n) + data
    return _LEN64.pack(_FIN_TEXT, 127, n) + data
