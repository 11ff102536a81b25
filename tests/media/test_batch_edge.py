"""Many calls' G.711 <-> 16 kHz in one pass gives each call the audio its own AudioEdge would."""

from __future__ import annotations

import numpy as np

from gateway.audio_edge import AudioEdge
from media.batch_edge import BatchEdge, codec_index
from media.codecs import WireFormat
from tests.kit.speech import speech

ENCODINGS = ("pcmu", "pcma")


def test_batch_matches_one_edge_per_call_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    edges = BatchEdge()
    encodings = [ENCODINGS[i % 2] for i in range(40)]  # past the first 16 slots: it grows
    slots = [edges.acquire() for _ in encodings]
    assert len(set(slots)) == len(slots)
    codecs = [codec_index(e) for e in encodings]
    own = [AudioEdge(WireFormat(e, 8000)) for e in encodings]  # type: ignore[arg-type]
    voice = WireFormat("pcmu", 8000).encode(speech("one two three")[::2])
    for tick in range(8):
        payloads = [voice[tick * 160 : tick * 160 + 160] if i % 3 == 0
                    else rng.integers(0, 256, 160, dtype=np.uint8).tobytes()
                    for i in range(len(slots))]
        frames = edges.decode(slots, codecs, payloads)
        assert frames.shape == (len(slots), 320) and frames.dtype == np.int16
        for edge, payload, frame in zip(own, payloads, frames, strict=True):
            (expected,) = edge.decode(payload)
            assert np.array_equal(frame, expected)
        sent = edges.encode(slots, codecs, list(frames))
        assert sent == [edge.encode(frame) for edge, frame in zip(own, frames, strict=True)]
        assert all(len(p) == 160 for p in sent)


def test_a_released_slot_starts_the_next_call_with_silent_history() -> None:
    edges = BatchEdge()
    slot = edges.acquire()
    loud = WireFormat("pcma", 8000).encode(np.full(160, 20000, np.int16))
    edges.decode([slot], [1], [loud])
    edges.encode([slot], [1], [np.full(320, 20000, np.int16)])
    edges.release(slot)
    again = edges.acquire()
    assert again == slot
    fresh = AudioEdge(WireFormat("pcma", 8000))
    payload = WireFormat("pcma", 8000).encode(np.zeros(160, np.int16))
    assert np.array_equal(edges.decode([again], [1], [payload])[0], fresh.decode(payload)[0])
    quiet = np.zeros(320, np.int16)
    assert edges.encode([again], [1], [quiet]) == [fresh.encode(quiet)]


def test_nothing_to_do_is_cheap_and_empty() -> None:
    edges = BatchEdge()
    assert edges.decode([], [], []).shape == (0, 320)
    assert edges.encode([], [], []) == []
