"""Barge-in on whole calls (tests/kit/bargein_call_flows.py), a small dev subset: the caller
speaks first, the demo agent replies (its first playout of the call, or a later one), and
the caller talks over the reply, says a backchannel, slams a door, or stays quiet while the
line echoes the agent. Times are the call's own, on the virtual clock: the same every run.
benchmarks/bargein_calls.py runs the whole set, both splits."""

from __future__ import annotations

import os

import pytest

from tests.kit.bargein_call_flows import (
    ASTERISK,
    Calibration,
    CallFlow,
    Outcome,
    calibrate,
    make_flow,
    run_call_flow,
)


@pytest.fixture(scope="module")
def cal() -> Calibration:
    return calibrate()


def run(flow: CallFlow, cal: Calibration) -> Outcome:
    out = run_call_flow(flow, cal)
    assert out.ok, f"{flow.name}: {out.problem}"
    return out


def types(out: Outcome) -> list[str]:
    return [e["type"] for e in out.events if e["t_ms"] >= out.reply_start_ms]


@pytest.mark.parametrize("line", ["clean", "echo40"])
def test_a_barge_in_into_the_first_reply_pauses_at_once_and_interrupts(cal, line):
    """0.1 s into the agent's first audio of the call: the detector has heard nothing of the
    line yet. The agent pauses within 250 ms of the audible onset, and the speech, going on,
    confirms the interruption; the session hears of it."""
    out = run(make_flow("dev", "speech", line, voice="en+f3", offset_s=0.1, seed=11), cal)
    assert out.onset_ms is not None
    assert out.early_pauses == []
    assert out.pause_latency_ms is not None and out.pause_latency_ms <= 250
    assert out.caught and out.resumes == []
    assert out.interrupt_pauses == [out.sound_pauses[0]]  # the barge-in's time is the pause
    t = types(out)
    assert (t.index("bargein.pause") < t.index("bargein.confirm") < t.index("interrupt")
            < t.index("system.control.interrupt"))
    assert out.full_played is None


def test_a_barge_in_into_a_later_reply_interrupts(cal):
    out = run(make_flow("dev", "speech", "echo120", voice="en+m3", level_db=-15.0,
                        offset_s=0.5, later=True, seed=12), cal)
    assert out.early_pauses == []  # the first reply's echo paused nothing
    assert out.caught and out.pause_latency_ms is not None and out.pause_latency_ms <= 250


@pytest.mark.parametrize(("word", "voice", "line"), [
    ("uh huh", "en+f3", "clean"),
    ("okay", "en-gb", "echo40"),
    ("yeah", "en+m7", "phone"),
])
def test_a_backchannel_pauses_and_resumes_without_an_interrupt(cal, word, voice, line):
    out = run(make_flow("dev", "backchannel", line, voice=voice, word=word, offset_s=0.5,
                        seed=13), cal)
    assert out.interrupts == [] and "system.control.interrupt" not in types(out)
    assert "system.user.started_speaking" not in types(out)
    assert len(out.pauses) == len(out.resumes) == 1
    assert out.resume_after_end_ms is not None and out.resume_after_end_ms <= 300
    assert out.full_played  # every frame of the reply, and its whole text heard


@pytest.mark.skipif(not os.path.isdir(os.path.join(ASTERISK, "sounds", "en_US_f_Allison")),
                    reason="recorded voices not installed (make system-deps)")
def test_a_recorded_oh_resumes(cal):
    out = run(make_flow("dev", "backchannel", "clean", voice="rec:en_US_f_Allison",
                        word="letters/o", offset_s=1.0, seed=14), cal)
    assert out.interrupts == [] and out.full_played
    assert out.resume_after_end_ms is None or out.resume_after_end_ms <= 300


@pytest.mark.parametrize("line", ["clean", "echo40"])
def test_a_door_slam_resumes(cal, line):
    out = run(make_flow("dev", "door", line, offset_s=1.0, seed=15), cal)
    assert out.interrupts == [] and out.full_played
    assert len(out.pauses) == len(out.resumes)
    assert all(p <= 640 for _, p in out.resumes)  # shorter than the confirmation


@pytest.mark.parametrize(("line", "later"), [("echo40", False), ("echo120", True),
                                             ("echo200", False)])
def test_the_agents_echo_alone_never_pauses(cal, line, later):
    out = run(make_flow("dev", "echo", line, later=later, seed=16), cal)
    assert out.pauses == [] and out.interrupts == []
    assert out.full_played


def run_wire(flow: CallFlow, cal: Calibration) -> Outcome:
    """The flow on a phone call's line: 8 kHz mu-law both ways, the echo made at the far
    end from what it decoded (`replay_async(wire="pcmu")`), as on Twilio or SIP."""
    out = run_call_flow(flow, cal, wire="pcmu")
    assert out.ok, f"{flow.name}: {out.problem}"
    return out


def test_over_a_phone_line_a_barge_in_into_the_first_reply_pauses_at_once(cal):
    out = run_wire(make_flow("dev", "speech", "echo40", voice="en-gb", offset_s=0.1,
                             seed=22), cal)
    assert out.early_pauses == []
    assert out.pause_latency_ms is not None and out.pause_latency_ms <= 250
    assert out.caught


def test_over_a_phone_line_a_quiet_caller_under_loud_echo_is_confirmed(cal):
    """-15 dB against the agent, under its echo 6 dB down at 120 ms (the caller 9 dB under
    the echo), 0.25 s into the first reply."""
    out = run_wire(make_flow("dev", "speech", "echo120", voice="en+f3", level_db=-15.0,
                             offset_s=0.25, seed=21), cal)
    assert out.early_pauses == [] and out.caught


@pytest.mark.parametrize(("line", "later"), [("echo40", False), ("echo200", True)])
def test_over_a_phone_line_the_agents_echo_alone_never_pauses(cal, line, later):
    out = run_wire(make_flow("dev", "echo", line, later=later, seed=23), cal)
    assert out.pauses == [] and out.interrupts == [] and out.full_played


def test_a_loud_caller_in_the_agents_own_voice_barges_in_at_once(cal):
    """A caller 6 dB louder than the agent, in its very voice, on a line with no echo, into
    a later reply: the reference "explains" parts of such a voice (live, one once seeded
    the echo filter; the rule that stops it is tested in tests/media/test_bargein.py)."""
    out = run(make_flow("dev", "speech", "clean", voice="agent", level_db=6.0, offset_s=1.0,
                        later=True, seed=25), cal)
    assert out.early_pauses == []
    assert out.pause_latency_ms is not None and out.pause_latency_ms <= 250
    assert out.caught


@pytest.mark.parametrize(("kind", "line", "level_db", "offset_s", "later", "seed"), [
    ("ringing", "clean", 0.0, 0.5, True, 30),  # a bell warbling at 20 Hz: its level flutters
    ("ringing", "echo40", 0.0, 0.5, False, 30),
    ("babble", "phone", -15.0, 0.5, False, 33),  # voices far off: no voiced frames
    # recorded music on hold and babble that pass the voiced and flutter measures: music
    # has tonal frames and no dip, a room of voices neither dips nor runs on as one voice
    ("moh", "echo120", 0.0, 1.0, False, 102),
    ("babble", "phone", 0.0, 1.8, True, 139),
    # a room of voices that calls for an eager pause at its onset and fires the detector
    # 140 ms later: weighed from the fire, it is no voice (from the pause, it passed)
    ("babble", "echo120", 0.0, 1.0, False, 222),
])
def test_a_sound_that_lasts_but_is_no_voice_resumes(cal, kind, line, level_db, offset_s,
                                                     later, seed):
    """Sounds that pass webrtcvad for longer than the confirmation (each of these flows was
    confirmed as a barge-in by duration alone before `media.bargein.voice_evidence`): the
    pause ends "not a voice", the reply goes on, and the session hears nothing of it."""
    out = run(make_flow("dev", kind, line, level_db=level_db, offset_s=offset_s,
                        later=later, seed=seed), cal)
    assert out.interrupts == [] and "system.control.interrupt" not in types(out)
    reasons = [e["reason"] for e in out.events if e["type"] == "bargein.resume"]
    assert "not a voice" in reasons
    assert out.full_played


def test_a_caller_at_the_pitch_of_the_agents_echo_barges_into_the_first_reply(cal):
    """0.1 s into the first reply on the 40 ms echo line, a caller whose pitch is an octave of
    the agent's echo: the pitch alone made it echo (paused 300 ms after the onset). The
    canceller's test finds the agent's audio explains almost none of it, so it is the
    caller."""
    out = run(make_flow("dev", "speech", "echo40", voice="en+f3", offset_s=0.1,
                        seed=2026001), cal)
    assert out.early_pauses == []
    assert out.pause_latency_ms is not None and out.pause_latency_ms <= 120
    assert out.caught


def test_a_quiet_caller_in_the_agents_own_voice_leaves_the_echo_path_alone(cal):
    """-15 dB, in the agent's own voice, 0.5 s into a later reply on the 40 ms echo line.
    The agent's audio "explains" parts of that voice at lags that wander from frame to
    frame; taken for echo, three such frames moved the learned echo path away, and the
    caller was gated until it was learned again (paused 840 ms after the onset). Fits away
    from the learned path now count only when they agree on a lag."""
    out = run(make_flow("dev", "speech", "echo40", voice="agent", level_db=-15.0,
                        offset_s=0.5, later=True, seed=2026062), cal)
    assert out.early_pauses == []
    assert out.pause_latency_ms is not None and out.pause_latency_ms <= 250
    assert out.caught


def test_a_held_synthetic_vowel_is_a_voice_not_a_note(cal):
    """espeak holds a vowel as steady as a note: its frames counted as tonal, and a loud
    caller on a clean line paused the agent only 800 ms after the onset. The pitch glides
    one way over the vowel, which a note's does not: now within 300 ms."""
    out = run(make_flow("dev", "speech", "clean", voice="en-us+f4", offset_s=0.5,
                        seed=2026025), cal)
    assert out.early_pauses == []
    assert out.pause_latency_ms is not None and out.pause_latency_ms <= 300
    assert out.caught


def test_a_recorded_voice_that_runs_on_without_a_dip_is_confirmed(cal):
    """A recorded prompt (Asterisk's Allison) runs 1.2 s without dipping 20 dB: no dip, but
    13 voiced frames and 3 tonal ones in the 640 ms, a fluent voice, so it confirms as
    before (the dip alone would have resumed it: a missed barge-in)."""
    out = run(make_flow("dev", "speech", "echo120", voice="rec:en_US_f_Allison",
                        offset_s=1.0, later=True, seed=2026064), cal)
    assert out.caught and out.early_pauses == []


def test_over_a_phone_line_a_quiet_recorded_caller_is_judged_alone_once_the_echo_is_over(
        cal):
    """A recorded voice at -15 dB, 1.0 s into the first reply on the 120 ms echo line, 8 kHz
    mu-law. While paused, the detector's gate weighs the caller against the echo until the
    echo is over, then the plain VAD judges it. That moment is now the learned echo path's
    end (about 150 ms here), not the longest echo searched for (220 ms; 370 ms over SIP):
    the quiet voice, gated against a gone echo, resumed the agent and was never confirmed."""
    out = run_wire(make_flow("dev", "speech", "echo120", voice="rec:fr_CA_f_June",
                             level_db=-15.0, offset_s=1.0, seed=2026047), cal)
    assert out.early_pauses == [] and out.caught


def test_over_a_phone_line_a_synthetic_caller_with_held_vowels_is_confirmed_at_once(cal):
    """espeak on the wire: no dip in the first 640 ms and held vowels (6 tonal frames), but
    13 voiced or glide frames: a fluent voice, confirmed at the first pause (before, the
    agent resumed for half a second and paused again)."""
    out = run_wire(make_flow("dev", "speech", "clean", voice="en-us+f4", offset_s=0.5,
                             seed=2026025), cal)
    assert out.caught and len(out.pauses) == 1 and out.resumes == []


@pytest.mark.parametrize(("voice", "line", "offset_s", "later", "seed"), [
    ("en+m3", "clean", 0.25, False, 2026005),
    ("en-us+f4", "phone", 1.0, False, 2026029),
    pytest.param("rec:fr_CA_f_June", "phone", 1.8, True, 2026068, marks=pytest.mark.skipif(
        not os.path.isdir(os.path.join(ASTERISK, "sounds", "fr_CA_f_June")),
        reason="recorded voices not installed (make system-deps)")),
])
def test_a_quiet_caller_pauses_the_agent_at_the_first_syllable(cal, voice, line, offset_s,
                                                               later, seed):
    """-15 dB callers whose first frames are loud but only weakly periodic (a consonant
    into a vowel): the detector fired 210-450 ms after the onset; the eager pause holds
    the agent within 120 ms, and the fire and the speech going on confirm it."""
    out = run(make_flow("dev", "speech", line, voice=voice, level_db=-15.0,
                        offset_s=offset_s, later=later, seed=seed), cal)
    assert out.early_pauses == []
    assert out.pause_latency_ms is not None and out.pause_latency_ms <= 120
    assert out.caught and out.interrupt_pauses[0] in out.sound_pauses
