"""`CancellerConfig`: the echo canceller's settings, checked and applied."""

from __future__ import annotations

import pytest

from media.bargein.canceller import MAX_ECHO_MS, CancellerConfig, EchoCanceller


def test_changes_apply_over_the_config() -> None:
    base = CancellerConfig(taps=64, pre=16)
    aec = EchoCanceller(base, max_delay_ms=100, explained_ratio=0.6)
    assert (aec.taps, aec.pre, aec.explained_ratio) == (64, 16, 0.6)
    assert aec.config.max_delay_ms == 100
    assert EchoCanceller().config == CancellerConfig()


@pytest.mark.parametrize("changes", [
    {"max_delay_ms": MAX_ECHO_MS + 1}, {"max_delay_ms": -1}, {"pre": 128}, {"taps": 1024},
    {"fit_pre": 24}, {"shift_frames": 0}, {"nudge": -1},
])
def test_out_of_range_settings_are_refused(changes: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        EchoCanceller(**changes)


def test_the_detector_builds_its_canceller_from_the_barge_in_config() -> None:
    """A sweep tunes the canceller through `BargeInConfig.canceller`; the delay span and
    explained share stay `echo_tail_ms` and `echo_explained`."""
    from media.bargein import BargeInConfig, BargeInDetector

    cfg = BargeInConfig(echo_tail_ms=120, echo_explained=0.6,
                        canceller=CancellerConfig(taps=64))
    aec = BargeInDetector(cfg)._aec
    assert aec.taps == 64
    assert aec.config.max_delay_ms == 120 and aec.explained_ratio == 0.6
