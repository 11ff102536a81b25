"""The far end of a AudioSocket call, as the end-to-end tests play it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.kit.clients.base import OPEN, CallClient


class AudioSocketClient(CallClient):
    """Asterisk AudioSocket over TCP: kind(1) length(2, big-endian) payload; slin 8 kHz."""

    provider, codec, rate = "audiosocket", "l16", 8000

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.call_uuid = uuid.uuid4()
        self.call_id = str(self.call_uuid)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self._tasks.append(asyncio.create_task(self._receive_loop()))

    def _write(self, kind: int, payload: bytes = b"") -> None:
        assert self.writer is not None
        if self.writer.is_closing():
            raise ConnectionError("closed")
        self.writer.write(bytes((kind, len(payload) >> 8, len(payload) & 0xFF)) + payload)

    async def _receive_loop(self) -> None:
        assert self.reader is not None
        try:
            while True:
                head = await self.reader.readexactly(3)
                kind, length = head[0], (head[1] << 8) | head[2]
                payload = await self.reader.readexactly(length) if length else b""
                if kind == 0x10:
                    if length != self.frame_bytes:
                        self.problems.append(f"audio message of {length} bytes, not one "
                                             f"20 ms frame ({self.frame_bytes})")
                    self._got_audio(payload)
                elif kind == 0x00:
                    self._got_control("hangup")
                else:
                    self.problems.append(f"unexpected kind 0x{kind:02x}")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed.set()
            self._control_event.set()

    async def start(self) -> None:
        self._write(0x01, self.call_uuid.bytes)
        await self.writer.drain()  # type: ignore[union-attr]

    async def send_audio(self, payload: bytes) -> None:
        self._write(0x10, payload)
        await self.writer.drain()  # type: ignore[union-attr]

    async def dtmf(self, digit: str) -> None:
        self._write(0x03, digit.encode())
        await self.writer.drain()  # type: ignore[union-attr]

    async def hangup(self) -> None:
        self._write(0x00)
        await self.writer.drain()  # type: ignore[union-attr]

    async def mark_played(self, name: str) -> None:
        return None

    async def close(self) -> None:
        OPEN.discard(self)
        self.mic_stopped = True
        if self.writer is not None and not self.writer.is_closing():
            self.writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
