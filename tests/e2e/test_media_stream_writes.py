"""A provider stream's audio and marks reach the far end whole whether the tick writes them
to the socket as frames (no extension negotiated, as Twilio connects) or aiohttp's writer
compresses them (permessage-deflate): a real Twilio call each way, its greeting heard in
whole 20 ms frames, with marks named as ours."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import websockets

from gateway.transports.media_stream import parse_mark
from tests.e2e.harness import HOST
from tests.kit.clients import TwilioClient
from tests.kit.clients.base import FarEnd


class Client(TwilioClient):
    """A Twilio far end that offers permessage-deflate or not."""

    def __init__(self, *args: Any, compression: str | None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.compression = compression

    async def connect(self) -> None:
        self.ws = await websockets.connect(self.url(), compression=self.compression,
                                           max_size=2**22, open_timeout=5)
        self.far_end = FarEnd(self._report_mark, self.report_dropped_marks)
        self._tasks.append(asyncio.create_task(self._receive_loop()))


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_greeting_and_marks_arrive_whole(gateway_factory: Any,
                                               compression: str | None) -> None:
    gw = await gateway_factory()
    client = Client(HOST, gw.port, compression=compression)
    await client.connect()
    extensions = client.ws.response.headers.get("Sec-WebSocket-Extensions")
    assert (extensions is not None) == (compression is not None)
    await client.start()
    client.start_mic()
    await client.wait_audio(1.0)  # a second of the greeting, and the marks that came with it
    assert client.problems == []
    marks = [c.msg["mark"]["name"] for c in client.controls if c.kind == "mark"]
    assert len(marks) >= len(client.agent_frames) // 5 - 1
    assert all(parse_mark(name) is not None for name in marks)
    await client.hangup_and_wait()
    await client.close()
