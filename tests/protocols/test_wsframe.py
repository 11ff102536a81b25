"""`gateway.protocols.wsframe.text_frame`, read back by the `websockets` library's frame
parser (an independent implementation of RFC 6455): every length form, non-ASCII text."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from gateway.protocols.wsframe import text_frame


def parse(data: bytes) -> tuple[Frame, bytes]:
    """The first frame in `data`, and what follows it."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    with pytest.raises(StopIteration) as done:
        next(parser)
    return done.value.value, bytes(reader.buffer)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_every_length_form_reads_back(size: int) -> None:
    text = "x" * size
    frame, rest = parse(text_frame(text))
    assert frame.opcode is Opcode.TEXT and frame.fin
    assert not (frame.rsv1 or frame.rsv2 or frame.rsv3)
    assert frame.data.decode() == text and rest == b""


def test_text_is_utf8_and_frames_follow_each_other() -> None:
    first, second = '{"name":"héllo ✓"}', '{"event":"mark"}'
    frame, rest = parse(text_frame(first) + text_frame(second))
    assert frame.data.decode() == first
    frame, rest = parse(rest)
    assert frame.data.decode() == second and rest == b""
