"""In-band DTMF: each key's tone holds exactly its two Q.23 frequencies, at the documented
levels, followed by silence; a Goertzel filter per keypad frequency decides."""

import numpy as np
import pytest

from media.codecs import WireFormat
from media.dtmf_tones import DTMF_KEYS, HIGH_DBFS, LOW_DBFS, dtmf_frequencies, dtmf_tones
from media.frames import SAMPLE_RATE
from tests.kit.audio import DTMF_FREQS, detect

FREQS = DTMF_FREQS
TONE = SAMPLE_RATE // 10  # 100 ms


@pytest.mark.parametrize("key", list(DTMF_KEYS))
def test_each_key_is_exactly_its_two_tones(key):
    pcm = dtmf_tones(key)
    assert pcm.dtype == np.int16 and len(pcm) == 2 * TONE
    found, amps = detect(pcm[:TONE])
    assert found == sorted(dtmf_frequencies(key))
    peaks = np.sort(amps)
    assert 20 * np.log10(peaks[-2] / peaks[-3]) > 30  # the other six are far below
    low, high = dtmf_frequencies(key)
    level = {f: 20 * np.log10(a / 32767) for f, a in zip(FREQS, amps, strict=True)}
    # Goertzel over the whole tone includes the 5 ms ramps: within 1 dB of nominal
    assert abs(level[low] - LOW_DBFS) < 1.0
    assert abs(level[high] - HIGH_DBFS) < 1.0
    assert not pcm[TONE:].any()  # then 100 ms of silence


def test_digits_in_order_and_through_g711():
    digits = "1#9*0D"
    pcm = dtmf_tones(digits)
    pcmu = WireFormat("pcmu", 16000)
    wire = pcmu.decode(pcmu.encode(pcm))
    for signal in (pcm, wire):
        got = []
        for i in range(len(digits)):
            found, _ = detect(signal[i * 2 * TONE : i * 2 * TONE + TONE])
            got.append(next(k for k in DTMF_KEYS if sorted(dtmf_frequencies(k)) == found))
        assert "".join(got) == digits
    assert np.abs(pcm.astype(np.int32)).max() < 32767 * 10 ** (-2.5 / 20)  # no clipping


def test_lowercase_accepted_and_bad_keys_rejected():
    assert np.array_equal(dtmf_tones("a"), dtmf_tones("A"))
    with pytest.raises(ValueError, match="'x'"):
        dtmf_tones("12x")
    with pytest.raises(ValueError):
        dtmf_frequencies("12")
    assert len(dtmf_tones("")) == 0
