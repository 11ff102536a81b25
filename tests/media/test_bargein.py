"""Barge-in detector, simulated frame by frame as the voice loop drives it (no real time).

Per tick the agent frame goes to agent_frame() before the caller frame of the same tick
goes to caller_frame(); each case starts with an earlier playout of the same call (echo
only), then reset(), as the loop does when playout stops.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
import pytest

from media.bargein import (
    GLIDE,
    OTHER,
    TONAL,
    VOICED,
    BargeInConfig,
    BargeInDetector,
    DecisionRule,
    EchoCanceller,
    FrameFeatures,
)
from media.bargein.rule import _KindTracker
from media.far_end_clock import FarEndClock
from media.frames import FRAME_MS, FRAME_S, FRAME_SAMPLES, split_frames
from tests.kit.bargein_eval import ECHO_DELAYS_MS, Case, build_cases, play_tick
from tests.kit.speech import espeak_available

pytestmark = pytest.mark.skipif(not espeak_available(), reason="espeak-ng not installed")


@functools.lru_cache(maxsize=3)
def _cases(split: str = "dev") -> dict[str, Case]:
    return {c.name: c for c in build_cases(split)}  # type: ignore[arg-type]


def _fire_ms(case: Case, config: BargeInConfig | None = None) -> float | None:
    """Time (end of the firing frame) at which the detector interrupts, or None."""
    det = BargeInDetector(config)
    warm = case.warmup_ms // FRAME_MS
    for i, (ref, mic) in enumerate(zip(split_frames(case.agent), split_frames(case.caller),
                                       strict=True)):
        if i == warm:
            det.reset()
        if play_tick(det, i, ref, mic):
            return (i + 1) * FRAME_MS
    return None


@pytest.mark.parametrize("name", ["speech-00-en-us", "speech-05-en+f3-quiet",
                                  "speech-10-en+m3-phone", "speech-15-en-gb-quiet-phone"])
def test_speech_over_agent_interrupts(name: str) -> None:
    case = _cases()[name]
    t = _fire_ms(case)
    assert t is not None, "the caller's speech did not interrupt"
    assert case.onset_ms is not None and case.onset_ms <= t <= case.onset_ms + 1000


@pytest.mark.parametrize("name", ["click-0", "click-0-phone", "cough-0", "cough-2"])
def test_click_or_cough_does_not_interrupt(name: str) -> None:
    assert _fire_ms(_cases()[name]) is None


@pytest.mark.parametrize("name", ["white-0", "white-1-phone", "babble-0", "babble-1-phone"])
def test_noise_15_db_below_speech_does_not_interrupt(name: str) -> None:
    assert _fire_ms(_cases()[name]) is None


@pytest.mark.parametrize("delay", ECHO_DELAYS_MS)
def test_agent_echo_does_not_interrupt(delay: int) -> None:
    # 10 dB down (+-2 dB), 40 ms is the headline case; every delay 0-120 ms is checked
    assert _fire_ms(_cases()[f"echo-{delay}ms"]) is None


def test_echo_canceller_removes_most_of_the_echo() -> None:
    case = _cases()["echo-40ms"]
    aec = EchoCanceller()
    mic_pow = res_pow = 0.0
    for i, (ref, mic) in enumerate(zip(split_frames(case.agent), split_frames(case.caller),
                                       strict=True)):
        aec.write_reference(ref, i * FRAME_SAMPLES)
        e = aec.cancel(mic, (i + 1) * FRAME_SAMPLES)
        if i >= case.warmup_ms // FRAME_MS:
            mic_pow += float(np.dot(mic.astype(float), mic))
            res_pow += float(np.dot(e, e))
    assert 10 * np.log10(mic_pow / res_pow) > 15.0


def test_fires_once_until_reset_and_tolerates_missing_reference() -> None:
    case = _cases()["speech-00-en-us"]
    det = BargeInDetector()
    hits = []
    frames = split_frames(case.caller)
    for i, mic in enumerate(frames):
        # no agent frames at all: the reference is taken as silence
        if det.caller_frame(mic, (i + 1) * FRAME_S):
            hits.append(i)
    assert len(hits) == 1
    det.reset()
    t0 = len(frames) + 1
    tail = frames[hits[0] : hits[0] + 30]
    assert any(det.caller_frame(f, (t0 + j) * FRAME_S) for j, f in enumerate(tail))


def test_rejects_bad_input() -> None:
    det = BargeInDetector()
    with pytest.raises(ValueError):
        det.caller_frame(np.zeros(FRAME_SAMPLES + 1, np.int16), 0.02)
    with pytest.raises(ValueError):
        det.agent_frame(np.zeros((2, FRAME_SAMPLES), np.int16), 0.0)
    with pytest.raises(ValueError):
        BargeInConfig(min_voiced=9, window=8)
    with pytest.raises(ValueError):
        BargeInConfig(vad_aggressiveness=5)
    with pytest.raises(ValueError):
        BargeInConfig(low_cutoff_hz=50.0)
    with pytest.raises(ValueError):
        BargeInConfig(onset_quiet=9, onset_lookback=8)


@pytest.mark.parametrize("name", ["tone-0", "dtmf-0-phone", "ringback-1", "chime-0",
                                  "music-0", "music-1-phone"])
def test_tones_chimes_and_music_do_not_interrupt(name: str) -> None:
    assert _fire_ms(_cases()[name]) is None


def test_speech_without_any_echo_interrupts() -> None:
    """A line with no echo at all (the canceller never finds a delay): the guard must learn
    that the caller channel stays quiet under the agent and let real speech through."""
    case = _cases()["speech-00-en-us"]
    t = _fire_ms(replace(case, caller=case.clean))
    assert t is not None and case.onset_ms is not None
    assert case.onset_ms <= t <= case.onset_ms + 400


def test_speech_after_seconds_of_silent_line_interrupts() -> None:
    """Softphones and browsers cancel echo themselves: the line is digital silence under
    seconds of agent audio, then the caller speaks. The caller's voice must not be
    learned as echo (it was: 21 of the 48 dev voices were never detected this way, found
    on a baresip call where the guard collapsed within five frames of the first word)."""
    late = {}
    for name, case in _cases().items():
        if not name.startswith("speech") or case.onset_ms is None:
            continue
        lead = np.zeros(4 * 16000, dtype=np.int16)
        agent = np.concatenate(
            [np.tile(case.agent, 1 + len(lead) // len(case.agent))[: len(lead)], case.agent])
        caller = np.concatenate([lead, case.clean])
        t = _fire_ms(replace(case, agent=agent, caller=caller, clean=caller, warmup_ms=0))
        latency = None if t is None else t - len(lead) / 16 - case.onset_ms
        if latency is None or latency > 400:
            late[name] = latency
    assert not late, late


def test_decision_rule_replays_the_detector() -> None:
    """DecisionRule on recorded features decides exactly as the detector did."""
    case = _cases()["speech-05-en+f3-quiet"]
    det = BargeInDetector()
    rule = DecisionRule(BargeInConfig())
    warm = case.warmup_ms // FRAME_MS
    for i, (ref, mic) in enumerate(zip(split_frames(case.agent), split_frames(case.caller),
                                       strict=True)):
        if i == warm:
            det.reset()
            rule.reset()
        hit = play_tick(det, i, ref, mic)
        assert det.last is not None
        assert rule.push(det.last) == (det.last_kind, hit)


def _frame(per: float, low_per: float, lag: float) -> FrameFeatures:
    """A loud, vad-speech frame well above the floor, not tonal, with the given pitch
    correlation over the whole band and below the low-band cutoff."""
    return FrameFeatures(-25.0, 30.0, 30.0, True, True, per, per, lag, 0.5, 0.5,
                         low_per, low_per, lag)


def test_low_band_rule_fires_where_the_full_band_rule_does_not() -> None:
    """Three frames only periodic below the cutoff: the low-band rule fires on the third;
    with it off (or with the low band no more periodic) nothing fires."""
    lags = (150.0, 160.0, 171.0, 183.0)
    for low_path, low_per, expect in ((True, 0.95, [False, False, True, False]),
                                      (False, 0.95, [False] * 4),
                                      (True, 0.8, [False] * 4)):
        rule = DecisionRule(BargeInConfig(low_path=low_path))
        got = [rule.push(_frame(0.8, low_per, lag))[1] for lag in lags]
        assert got == expect, (low_path, low_per)


def test_low_band_rule_speeds_up_a_slow_phone_voice() -> None:
    """A low male voice through the phone channel (dev's slowest case with the full-band
    rule alone) interrupts earlier with the low-band rule."""
    case = _cases()["speech-10-en+m3-phone"]
    on, off = _fire_ms(case), _fire_ms(case, BargeInConfig(low_path=False))
    assert on is not None and off is not None and case.onset_ms is not None
    assert case.onset_ms <= on < off


def _voiced(lag: float, echo_lag: float = 0.0, guard: float = 20.0,
            stationarity: float = 0.5) -> FrameFeatures:
    """A voiced frame (both bands) at `lag`, -30 dBFS, `guard` dB over the expected echo,
    with the given spectral similarity to the frame before."""
    return FrameFeatures(-30.0, guard, 30.0, True, True, 0.95, 0.9, lag, 0.5, stationarity,
                         0.95, 0.9, lag, echo_lag)


def _quiet() -> FrameFeatures:
    return FrameFeatures(-60.0, 0.0, 0.0, False)


def _pair_fires(lead: list[FrameFeatures], pair: list[FrameFeatures]) -> list[bool]:
    rule = DecisionRule(BargeInConfig())
    rule.reset()
    for f in lead:
        assert not rule.push(f)[1]
    return [rule.push(f)[1] for f in pair]


def test_onset_pair_fires_on_two_voiced_frames_out_of_quiet() -> None:
    """Two voiced frames whose pitch glides, after quiet: fires on the second (the window
    rule needs a third), also when the estimate slips an octave; not for a held pitch (a
    note), a jump (two sources), a spectrum that holds still (a note), the agent's pitch
    (leftover echo), a small margin over the echo, or without the quiet lead."""
    quiet = [_quiet()] * 8
    assert _pair_fires(quiet, [_voiced(150.0), _voiced(153.0)]) == [False, True]
    assert _pair_fires(quiet, [_voiced(150.0), _voiced(306.0)]) == [False, True]
    assert _pair_fires(quiet, [_voiced(150.0), _voiced(150.1)]) == [False, False]
    assert _pair_fires(quiet, [_voiced(150.0), _voiced(200.0)]) == [False, False]
    held = _voiced(153.0, stationarity=0.99)
    assert _pair_fires(quiet, [_voiced(150.0), held]) == [False, False]
    assert _pair_fires(quiet, [_voiced(150.0, 301.0), _voiced(153.0, 301.0)]) == [False, False]
    assert _pair_fires(quiet, [_voiced(150.0, guard=8.0), _voiced(153.0)]) == [False, False]
    busy = [FrameFeatures(-32.0, 15.0, 10.0, True)] * 8  # active, about as loud as the pair
    assert _pair_fires(busy, [_voiced(150.0), _voiced(153.0)]) == [False, False]
    # right after reset nothing is known about the frames before: no onset yet
    assert _pair_fires([], [_voiced(150.0), _voiced(153.0)]) == [False, False]


def _onset(per: float = 0.65, guard: float = 25.0, share: float = 0.1, rise: float = 30.0,
           peak: float = 0.5) -> FrameFeatures:
    """A loud frame at a voice's onset: speech to webrtcvad, weakly periodic (a consonant
    going into a vowel), so neither voiced kind nor a fire."""
    return FrameFeatures(-30.0, guard, rise, True, True, per, 0.3, 180.0, peak, 0.5, per, 0.3,
                         180.0, 0.0, 0.1, share)


def _eager(frames: list[FrameFeatures]) -> list[bool]:
    rule = DecisionRule(BargeInConfig())
    rule.reset()
    out = []
    for f in frames:
        assert not rule.push(f)[1]  # (none of these fires the detector)
        out.append(rule.eager)
    return out


def test_two_loud_voice_like_frames_call_for_an_eager_pause() -> None:
    """An eager pause (the agent pauses; only a fire and the confirmation interrupt): two
    frames in a row of a loud sound with some pitch that webrtcvad calls speech. Not for
    one frame, weak pitch, a small margin over the expected echo or the recent floor, a
    tone, a sound the agent's audio explains, or with eager pauses off."""
    assert _eager([_onset(), _onset(), _onset()]) == [False, True, True]
    assert _eager([_onset(), _quiet(), _onset()]) == [False, False, False]
    assert _eager([_onset(per=0.5), _onset(per=0.5)]) == [False, False]
    assert _eager([_onset(guard=10.0), _onset(guard=10.0)]) == [False, False]
    assert _eager([_onset(rise=10.0), _onset(rise=10.0)]) == [False, False]
    assert _eager([_onset(peak=0.995), _onset(peak=0.995)]) == [False, False]
    assert _eager([_onset(share=0.7), _onset(share=0.7)]) == [False, False]
    rule = DecisionRule(BargeInConfig(eager_frames=0))
    rule.reset()
    assert [rule.push(f)[1] or rule.eager for f in [_onset()] * 3] == [False] * 3


def test_onset_pair_speeds_up_a_word_cut_by_a_stop() -> None:
    """Dev's 'Hello' by a quiet low voice on a phone line: two voiced frames, then the
    'l' that webrtcvad rejects; the window rule waits for the next syllable."""
    case = _cases()["speech-11-en+m3-quiet-phone"]
    on, off = _fire_ms(case), _fire_ms(case, BargeInConfig(onset_pair=False))
    assert on is not None and off is not None and case.onset_ms is not None
    assert case.onset_ms <= on < off
    assert on - case.onset_ms <= 150


def test_onset_pair_ignores_leftover_echo_at_the_agent_pitch() -> None:
    """Leftover echo that passes the gate is the agent's own voice (dev cough-1-phone:
    two voiced frames 7 dB over the expected echo). With the margin lowered to the gate's
    6 dB and the spectral-flux check off, the agent-pitch check alone keeps it from
    interrupting; so does the leftover-echo rule alone; with both off it interrupts."""
    case = _cases()["cough-1-phone"]
    loose = BargeInConfig(onset_min_guard_db=6.0, onset_max_stationarity=1.01)
    assert _fire_ms(case, loose) is None
    assert _fire_ms(case, replace(loose, echo_pitch_tol=0.0)) is None
    assert _fire_ms(case, replace(loose, echo_voice_tol=0.0)) is None
    # (and the canceller now finds the reference explains these frames: with that test off
    # as well, nothing else keeps them out)
    off = replace(loose, echo_pitch_tol=0.0, echo_voice_tol=0.0)
    assert _fire_ms(case, replace(off, echo_explained=1.01)) is not None


def test_voiced_frame_at_the_echo_pitch_and_barely_over_it_is_leftover_echo() -> None:
    """A voiced frame within 1.5 % of the echo's pitch (or its octave) and less than 10 dB
    over the expected echo is the agent's own voice (fresh draws: a phone click followed by
    echo at 6-7 dB guard); louder, or at another pitch, it is the caller."""
    def kind(f: FrameFeatures) -> int:
        return _KindTracker(BargeInConfig(), low=False).kind(f)
    assert kind(_voiced(150.0, 150.5, guard=8.0)) == OTHER
    assert kind(_voiced(150.0, 300.5, guard=8.0)) == OTHER
    assert kind(_voiced(150.0, 150.5, guard=15.0)) == VOICED
    assert kind(_voiced(150.0, 160.0, guard=8.0)) == VOICED
    assert kind(_voiced(150.0, guard=8.0)) == VOICED  # no agent audio: no echo pitch


@functools.lru_cache(maxsize=2)
def _outcome(split: str) -> tuple[list[str], list[str]]:
    missed, false = [], []
    for case in _cases(split).values():
        t = _fire_ms(case)
        if case.is_speech:
            assert case.onset_ms is not None
            if t is None:
                missed.append(case.name)
            elif t < case.onset_ms:
                false.append(case.name)
        elif t is not None:
            false.append(case.name)
    return missed, false


def test_dev_set_quality_gate() -> None:
    """The whole dev set (tuned on): every speech case but two interrupts, and at most one
    noise case does. Before the echo estimate started from 'no echo' (it learns only from what
    the reference explains) it was none and none; that change made the first reply of a
    call 5-10x faster on the conversation flows (tests/kit/bargein_flows.py). The misses are
    quiet voices on a phone line whose frames the rule calls noise (the residual passes
    the gate): the rule's weakness, not the echo estimate's."""
    missed, false = _outcome("dev")
    assert len(missed) <= 2, missed
    assert len(false) <= 1, false


def test_holdout_set_quality_gate() -> None:
    """The held-out set (other voices, sentences, agent voice, seed): every speech case
    interrupts; two false interrupts are the measured level (music-2-phone: the first note
    of music has no tonal context yet; white-0-phone since the echo estimate starts from
    'no echo'; see benchmarks/README.md)."""
    missed, false = _outcome("holdout")
    assert len(missed) <= 2, missed  # quiet voices, as on dev
    assert len(false) <= 2, false


def test_echo_that_stops_does_not_interrupt() -> None:
    """The echo path changes under a converged canceller (the echo vanishes mid-playout):
    the canceller's now-wrong estimate must not look like the caller talking."""
    case = _cases()["echo-40ms"]
    caller = case.caller.copy()
    cut = len(caller) * 2 // 3
    caller[cut:] = 0
    det = BargeInDetector()
    for i, (ref, mic) in enumerate(zip(split_frames(case.agent), split_frames(caller),
                                       strict=True)):
        assert not play_tick(det, i, ref, mic)


def test_reference_timeline_survives_skipped_caller_frames() -> None:
    """The loop skips caller_frame while the caller already speaks; agent frames keep the
    echo reference in time, so echo after such a gap still does not interrupt."""
    case = _cases()["echo-40ms"]
    det = BargeInDetector()
    frames = list(zip(split_frames(case.agent), split_frames(case.caller), strict=True))
    for i, (ref, mic) in enumerate(frames):
        det.agent_frame(ref, i * FRAME_S)
        if 90 <= i < 110:
            continue  # caller frames not passed to the detector for 400 ms
        assert not det.caller_frame(mic, (i + 1) * FRAME_S)


def _line_call(speech: np.ndarray | None, rng: np.random.Generator) -> tuple[int, bool]:
    """A call as the network delivers it. Our ticker sends the agent's talkspurts at any
    phase of the far end's 20 ms grid, now and then a few ticks late; the far end plays
    each frame in the first grid slot after it arrives (10 ms later), or right after the
    frame before; the line echoes that 10 dB down 37 ms later. Caller frames arrive a few
    ms late (exponential, 2 ms mean) and, in stalls of 20-100 ms (2 % of frames start
    one), together at the end of the stall. `FarEndClock` numbers both, as in the voice
    loop. `speech` (the caller's words) starts in the last talkspurt. Returns (caller
    frames past the gate after the first talkspurt, whether the detector fired)."""
    source = np.tile(_cases()["echo-40ms"].agent, 2)
    n = 16 * 16000
    echo = np.zeros(n + 16000)
    sends: list[tuple[float, int, np.ndarray]] = []  # (time, order, agent frame)
    slot, t, first_end = -1, 0.5 + float(rng.uniform(0, 0.02)), 0
    for k in range(6):  # 1.6 s talkspurts with gaps of 0.3-0.8 s
        for f in range(80):
            frame = source[(k * 12 + f) * FRAME_SAMPLES : (k * 12 + f + 1) * FRAME_SAMPLES]
            late = float(rng.uniform(0.02, 0.06)) if rng.random() < 0.03 else 0.0
            sent = max(t + f * FRAME_S + late, sends[-1][0] if f else 0.0)  # a tick late:
            sends.append((sent, 0, frame))  # the ones after it wait, then all go at once
            slot = max(int(np.ceil((sent + 0.01) / FRAME_S)), slot + 1)  # far-end playout
            at = slot * FRAME_SAMPLES + 592
            echo[at : at + FRAME_SAMPLES] += 0.316 * frame
        first_end = first_end or (slot + 1) * FRAME_SAMPLES + 592
        t += 1.6 + float(rng.uniform(0.3, 0.8))
    caller = echo[:n] + rng.normal(0.0, 18.4, n)  # -65 dBFS floor
    if speech is not None:
        at = int((t - 1.6 - 0.5) * 16000)
        caller[at : at + len(speech)] += speech
    mics = split_frames(np.clip(np.round(caller), -32768, 32767).astype(np.int16))
    arrivals: list[float] = []
    stall_end = 0.0
    for j in range(len(mics)):
        sent = (j + 1) * FRAME_S
        if sent > stall_end and rng.random() < 0.02:
            stall_end = sent + float(rng.uniform(0.02, 0.1))
        late = sent + 0.01 + float(rng.exponential(0.002))
        arrivals.append(max(late, stall_end if sent <= stall_end else 0.0,
                            arrivals[-1] if arrivals else 0.0))
    events = sorted(sends + [(a, 1, m) for a, m in zip(arrivals, mics, strict=True)],
                    key=lambda e: (e[0], e[1]))
    det, clock = BargeInDetector(), FarEndClock()
    past, fired = 0, False
    for t, kind, frame in events:
        if kind == 0:
            det.agent_frame(frame, clock.agent_frame(t) * FRAME_S)
            continue
        j = clock.caller_frame(t)
        fired |= det.caller_frame(frame, (j + 1) * FRAME_S)
        past += bool(det.last is not None and det.last.active and j * FRAME_SAMPLES > first_end)
    return past, fired


def test_echo_stays_cancelled_across_talkspurts_and_network_jitter() -> None:
    """Caller frames and agent frames are paired by their frame numbers on the far end's
    grid, not by arrival order: with talkspurts at any phase, late ticks and bursty
    arrivals, no echo frame passes the gate once the canceller has locked on, and the
    agent is never interrupted; speech still is."""
    rng = np.random.default_rng(3)
    past, fired = _line_call(None, rng)
    assert past == 0 and not fired
    words = _cases()["speech-00-en-us"].clean.astype(np.float64)
    assert _line_call(words[len(words) // 3 :], rng)[1]


def _shifted_echo_erle(shifts: dict[int, int]) -> tuple[float, bool]:
    """The agent's echo, 10 dB down 40 ms later, whose delay grows by `shifts[frame]`
    samples from that frame on (a far end that plays from arrival when its queue runs dry
    moves the echo by each lateness, a fraction of a frame). Returns the echo removed (dB)
    from 300 ms after the last shift to the end, and whether the detector fired."""
    agent = _cases()["echo-40ms"].agent.astype(np.float64)
    n = len(agent)
    rng = np.random.default_rng(5)
    echo = np.zeros(n)
    delay, last = 640, 0
    for i in range(n // FRAME_SAMPLES):
        if i in shifts:
            delay, last = delay + shifts[i], i
        a = i * FRAME_SAMPLES
        src = np.arange(a, a + FRAME_SAMPLES) - delay
        echo[a : a + FRAME_SAMPLES] = np.where(src >= 0, agent[np.clip(src, 0, None)], 0) * 0.316
    mic = np.clip(np.round(echo + rng.normal(0.0, 18.4, n)), -32768, 32767).astype(np.int16)
    det = BargeInDetector()
    fired = False
    mic_pow = res_pow = 0.0
    for i, (ref, m) in enumerate(zip(split_frames(agent.astype(np.int16)), split_frames(mic),
                                     strict=True)):
        det.agent_frame(ref, i * FRAME_S)
        fired |= det.caller_frame(m, (i + 1) * FRAME_S)
        e = det.echo_canceller._res[-FRAME_SAMPLES:]
        if i >= last + 15:
            mic_pow += float(np.dot(m.astype(float), m))
            res_pow += float(np.dot(e, e))
    return 10 * np.log10(mic_pow / res_pow), fired


def test_echo_path_moved_by_a_fraction_of_a_frame_is_cancelled_again() -> None:
    """A converged canceller whose echo moves by a few samples leaves most of the echo
    behind (5 samples: 2 dB removed) until it finds the shift that cancels the residual
    again; later or earlier, once or again and again; the agent is never interrupted."""
    base, fired = _shifted_echo_erle({})
    assert not fired and base > 25.0
    for shifts in ({100: 5}, {60: 5, 100: 3, 140: -7}, {100: 20}, {100: -12}):
        moved, fired = _shifted_echo_erle(shifts)
        assert not fired, shifts
        assert moved > base - 6.0, shifts


def _copy_of_reference(gain_db: float) -> EchoCanceller:
    """A canceller fed the agent's audio and, as the caller, that audio 40 ms later at
    `gain_db` (what the reference explains perfectly)."""
    agent = _cases()["echo-40ms"].agent.astype(np.float64)
    mic = np.zeros_like(agent)
    mic[640:] = agent[:-640] * 10 ** (gain_db / 20)
    mic = np.clip(np.round(mic + np.random.default_rng(1).normal(0, 18.4, len(mic))),
                  -32768, 32767).astype(np.int16)
    aec = EchoCanceller()
    for i, (ref, m) in enumerate(zip(split_frames(agent.astype(np.int16)), split_frames(mic),
                                     strict=True)):
        aec.write_reference(ref, i * FRAME_SAMPLES)
        aec.cancel(m, (i + 1) * FRAME_SAMPLES)
        if i == 40:
            break
    return aec


def test_a_copy_of_the_agent_louder_than_the_agent_is_not_echo() -> None:
    """A line's echo is a loss: what the reference explains but comes back 6 dB louder
    than the agent played it is a caller (the agent's own voice, a loud caller whose voice
    a fit happens to match), never learned as the echo path; 10 dB down it is echo."""
    echo = _copy_of_reference(-10.0)
    assert echo.h is not None and echo.delay is not None and abs(echo.delay - 640) <= 8
    loud = _copy_of_reference(6.0)
    assert loud.h is None and loud.delay is None
    assert loud.raw_leak_db < -50.0


def _kinds(lags: list[float], stationarity: float = 0.99) -> list[int]:
    """Kinds of a run of voiced frames at these pitch lags, each as steady in spectrum as
    the one before (a held vowel, or a note)."""
    tracker = _KindTracker(BargeInConfig(), low=False)
    return [tracker.kind(_voiced(lag, stationarity=stationarity)) for lag in lags]


def test_a_steady_spectrum_whose_pitch_glides_one_way_is_a_voice() -> None:
    """espeak holds a vowel's spectrum as steady as a note's (three frames over 0.975 alike),
    and repeats its pitch from frame to frame, but over five frames the pitch moves one way
    (dev: 70.3 -> 73.6 samples in 200 ms): a glide, which fires like a voiced frame. A note
    holds its pitch; vibrato turns back."""
    glide = [70.0, 70.0, 70.2, 70.4, 70.4, 70.7, 71.0, 71.0]
    assert _kinds(glide)[-3:] == [GLIDE, GLIDE, GLIDE]
    assert set(_kinds([70.0] * 8)[1:]) == {TONAL}  # a held note (after its first frame)
    vibrato = [70.0, 70.6, 71.0, 70.5, 70.0, 70.6, 71.0, 70.5]
    assert GLIDE not in _kinds(vibrato)
    assert GLIDE not in _kinds([70.0, 70.0, 70.0, 70.1, 70.1, 70.1, 70.1, 70.1])  # too little
    assert VOICED in _kinds(glide, stationarity=0.5)  # (unsteady: voiced, as before)


def test_a_glide_fires_but_is_no_voice_evidence_for_a_confirmation() -> None:
    """GLIDE frames count with voiced ones in the firing window, but a pause's confirmation by
    duration counts only VOICED frames (`media.bargein.voice_evidence`): a glide is enough
    to stop the agent's audio, not to interrupt it."""
    from media.bargein.rule import _window_ok
    from media.bargein.voice_evidence import VoiceEvidence

    assert _window_ok(np.array([GLIDE, GLIDE, GLIDE, OTHER]), 3, 3)
    ev = VoiceEvidence(BargeInConfig())
    frame = np.full(FRAME_SAMPLES, 1000, np.int16)
    for _ in range(10):
        ev.add(frame, GLIDE)
    assert ev.voiced == 0 and not ev.voice()


def test_a_frame_at_the_echo_pitch_the_reference_plainly_does_not_explain_is_the_caller(
) -> None:
    """A voiced frame at an octave of the agent's echo pitch is taken for echo, unless the
    canceller tested it and the agent's audio explains less than `echo_unexplained` of it
    (dev, first reply: a caller at 69.5 samples under echo at 137, shares 0.10 and 0.06;
    echo itself scores 0.28 at its lowest on the labelled sets)."""
    cfg = BargeInConfig()
    echoish = replace(_voiced(68.6, echo_lag=137.0, guard=8.0), echo_share=0.5)
    assert _KindTracker(cfg, low=False).kind(echoish) == OTHER
    untested = _voiced(68.6, echo_lag=137.0, guard=8.0)  # echo_share -1: not tested
    assert _KindTracker(cfg, low=False).kind(untested) == OTHER
    caller = replace(echoish, echo_share=0.06)
    assert _KindTracker(cfg, low=False).kind(caller) == VOICED
