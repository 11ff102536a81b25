"""Settings: a value a setting cannot take is refused at once, naming the setting as it
was given (its ATOMS_* variable, or the keyword)."""

from __future__ import annotations

import logging

import pytest

from gateway.settings import SettingError, Settings, configure_logging


@pytest.mark.parametrize("env, message", [
    ({"ATOMS_MAX_CALLS": "lots"}, "ATOMS_MAX_CALLS='lots': not a whole number"),
    ({"ATOMS_MAX_CALLS": "-1"}, "ATOMS_MAX_CALLS=-1: must be 0 or more"),
    ({"ATOMS_IDLE_TIMEOUT": "0"}, "ATOMS_IDLE_TIMEOUT=0.0: must be more than 0"),
    ({"ATOMS_DRAIN_TIMEOUT": "nan"}, "ATOMS_DRAIN_TIMEOUT=nan: not a finite number"),
    ({"ATOMS_MAX_AGENT_AUDIO": "ten"}, "ATOMS_MAX_AGENT_AUDIO='ten': not a number"),
    ({"ATOMS_PORT": "70000"}, "ATOMS_PORT=70000: not a port number (0-65535; 0: any free port)"),
    ({"ATOMS_SIP_PORT": "5o60"}, "ATOMS_SIP_PORT='5o60': not a whole number"),
    ({"ATOMS_RTP_PORT_MIN": "40000"}, "ATOMS_RTP_PORT_MIN=40000: above rtp_port_max (30000)"),
    ({"ATOMS_SIP_ALLOW": "10.0.0.0/8,10.1.2.3/99"},
     "ATOMS_SIP_ALLOW=['10.0.0.0/8', '10.1.2.3/99']: '10.1.2.3/99' is not an address or CIDR"
     " (e.g. 10.0.0.0/8)"),
    ({"ATOMS_STT": "whisper"},
     "ATOMS_STT='whisper': unknown engine: use pocketsphinx, deepgram, openai or pulse"),
    ({"ATOMS_LOG_LEVEL": "loud"},
     "ATOMS_LOG_LEVEL='loud': unknown log level: use debug, info, warning, error or critical"),
])
def test_a_bad_environment_value_names_its_variable(env, message):
    with pytest.raises(SettingError) as caught:
        Settings.from_env(env)
    assert str(caught.value) == message


def test_a_bad_keyword_names_the_keyword_and_wins_over_a_good_variable():
    with pytest.raises(SettingError) as caught:
        Settings.from_env({"ATOMS_MAX_CALLS": "10"}, max_calls=-3)
    assert str(caught.value) == "max_calls=-3: must be 0 or more"
    assert (caught.value.name, caught.value.env) == ("max_calls", False)
    with pytest.raises(SettingError, match="^stt_pool=0: must be more than 0$"):
        Settings(stt_pool=0)


def test_good_values_parse():
    s = Settings.from_env({"ATOMS_MAX_CALLS": "0", "ATOMS_LOG_LEVEL": "DEBUG",
                           "ATOMS_SIP_ALLOW": "10.0.0.0/8, 192.0.2.7", "ATOMS_SIP_PORT": "0",
                           "ATOMS_MAX_CALL_DURATION": "0", "ATOMS_STT": "Deepgram"})
    assert (s.max_calls, s.log_level, s.sip_allow, s.sip_port) == (
        0, "DEBUG", ["10.0.0.0/8", "192.0.2.7"], 0)
    assert Settings(log_level=logging.WARNING).log_level == logging.WARNING


def test_configure_logging_keeps_a_programs_own_handlers():
    root = logging.getLogger()
    handler = logging.NullHandler()
    before = (list(root.handlers), root.level)
    root.addHandler(handler)
    try:
        configure_logging("warning")
        assert handler in root.handlers and root.level == logging.WARNING
    finally:
        root.handlers[:] = before[0]
        root.setLevel(before[1])
