"""Gateway settings: keyword arguments of `AtomsApp`, `ATOMS_*` environment variables, CLI flags.

Precedence: explicit argument or flag > environment > default. A value a setting cannot
take raises `SettingError`, which names the setting (or its `ATOMS_*` variable).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

STT_ENGINES = ("pocketsphinx", "deepgram", "openai", "pulse")
TTS_ENGINES = ("espeak", "piper", "openai", "waves")
STT_GARBAGE = ("phones", "words")  # media.stt.pocketsphinx's out-of-grammar paths
PROVIDERS = ("twilio", "telnyx", "plivo", "exotel", "vonage")  # their webhook and stream routes
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class SettingError(ValueError):
    """A setting given a value it cannot take. `str()` names where the value came from:
    `ATOMS_<NAME>` when it came from the environment, else the keyword."""

    def __init__(self, name: str, value: Any, problem: str, env: bool = False) -> None:
        super().__init__(name, value, problem)
        self.name, self.value, self.problem, self.env = name, value, problem, env

    @property
    def source(self) -> str:
        return f"ATOMS_{self.name.upper()}" if self.env else self.name

    def __str__(self) -> str:
        return f"{self.source}={self.value!r}: {self.problem}"


@dataclass
class Settings:
    host: str = "127.0.0.1"  # 0.0.0.0 (every interface): every route needs its credential
    port: int = 8080
    public_url: str | None = None  # e.g. https://gw.example.com; default: from the Host header
    max_calls: int = 500
    idle_timeout: float = 60.0  # seconds without caller audio or messages
    max_call_duration: float = 3600.0  # seconds; then the gateway hangs up (recordings stop)
    max_agent_audio: float = 60.0  # seconds of agent.audio a call may have queued to play
    drain_timeout: float = 30.0  # SIGTERM: how long active calls may finish
    max_message_bytes: int = 256 * 1024
    header_timeout: float = 10.0  # a new connection's first request (HTTP headers, a SIP-
    # over-TCP message, AudioSocket's first frame) must be complete within this; HTTP
    # keep-alive idle too
    body_timeout: float = 10.0  # an HTTP request's body must be complete within this
    max_pending_connections: int = 256  # per listener: connections not yet past their
    # first complete request; more are closed at once
    text_turns_per_s: float = 2.0  # typed turns (`/ws` {"type": "text"}) a call may send ...
    text_turn_burst: int = 10  # ... after a burst of this many; more are refused
    ws_token: str | None = None  # bearer token for /ws and /webrtc
    providers: list[str] = field(default_factory=lambda: list(PROVIDERS))  # routes served
    twilio_auth_token: str | None = None  # X-Twilio-Signature (webhook and stream upgrade)
    telnyx_public_key: str | None = None  # base64 Ed25519 key: telnyx-signature-ed25519
    plivo_auth_token: str | None = None  # X-Plivo-Signature-V3
    vonage_signature_secret: str | None = None  # signed webhooks (JWT, HS256)
    exotel_token: str | None = None  # ?token= on Exotel's answer URL (or stream URL)
    insecure: bool = False  # listen beyond loopback with routes open (no credential set)
    audiosocket_port: int | None = None
    stt: str = "pocketsphinx"  # recogniser: "pocketsphinx" (offline), "deepgram", "openai", "pulse"
    stt_url: str | None = None  # Deepgram or Pulse endpoint; openai: a compatible server's URL
    stt_model: str | None = None  # Deepgram model (None: nova-3); openai: gpt-4o-mini-transcribe
    stt_language: str = "en"  # language of the callers
    deepgram_api_key: str | None = None  # default: DEEPGRAM_API_KEY
    stt_api_key: str | None = None  # openai: default OPENAI_API_KEY; pulse: SMALLEST_API_KEY
    stt_phrases: list[str] | None = None  # offline recogniser grammar (None: open vocabulary);
    # openai: sent as the prompt, to favour these words
    stt_pool: int = 4  # recognisers made at start-up: callers that may speak at the same time
    stt_garbage: str | None = None  # offline grammar: "phones" or "words" lets speech that is
    # none of the phrases be rejected instead of forced onto the nearest one (demo: on)
    stt_unrecognised: str | None = None  # offline grammar: the transcript given for speech
    # the grammar rejected (None: the turn has no words, as for a cough)
    tts: str = "espeak"  # speech synthesiser: "espeak", "piper" (both offline), "openai", "waves"
    tts_voice: str | None = None  # espeak voice (None: en-us); piper: .onnx model (None: joe);
    # openai: a voice name (None: alloy); waves: a voice id (None: magnus)
    tts_url: str | None = None  # openai: base URL of a compatible server; waves: its wss:// URL
    tts_model: str | None = None  # openai: model (None: gpt-4o-mini-tts)
    tts_api_key: str | None = None  # openai: default OPENAI_API_KEY; waves: SMALLEST_API_KEY
    record_dir: str | None = None
    agent_url: str | None = None
    agent_handshake_timeout: float = 10.0  # seconds for an agent server's agent.ready
    apology: str = "Sorry, something went wrong. Please call again later."
    ice_servers: list[str] = field(default_factory=list)
    sip_port: int | None = None  # SIP over UDP and TCP; off when None (0: any free port)
    sip_host: str | None = None  # address SIP and RTP bind to; default: `host`
    sip_advertise: str | None = None  # address in Contact and SDP (public IP behind NAT)
    rtp_port_min: int = 20000
    rtp_port_max: int = 30000
    sip_allow: list[str] = field(default_factory=list)  # CIDRs allowed to call; empty: all
    sip_user: str | None = None  # with sip_password: digest authentication of INVITE
    sip_password: str | None = None
    sip_realm: str = "atoms-gateway"
    sip_ring_ms: int = 0  # send 180 Ringing and wait this long before answering
    log_level: str | int = "info"  # `run()` and `serve` set up logging at this level
    log_format: str = "text"  # "json": one JSON object per log line (`gateway.convlog`)
    log_redact: bool = False  # conversation logs without the callers' or agent's words
    metrics: bool = True  # Prometheus metrics at /metrics (off: no route, no metric work)

    def __post_init__(self) -> None:
        if isinstance(self.providers, list) and [p.lower() for p in self.providers] == ["none"]:
            self.providers = []  # (ATOMS_PROVIDERS=none: no provider routes)
        for name, problem in _problems(self):
            raise SettingError(name, getattr(self, name), problem)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then `ATOMS_<NAME>` variables, then non-None `overrides`."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"ATOMS_{f.name.upper()}")
            if raw is not None and raw != "":
                try:
                    values[f.name] = _parse(f, raw)
                except ValueError as exc:
                    raise SettingError(f.name, raw, str(exc), env=True) from None
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        given = {k: v for k, v in overrides.items() if v is not None}
        values.update(given)
        try:
            return cls(**values)
        except SettingError as exc:
            exc.env = exc.name not in given  # (a default is never wrong)
            raise


def configure_logging(level: str | int = "info", fmt: str = "text") -> None:
    """Log to stderr at `level`, as `atoms-gateway serve` does, as text lines or (`fmt`
    "json") one JSON object per line; a program that has set up logging already keeps its
    own handlers (only the level changes, when given as text)."""
    root = logging.getLogger()
    if isinstance(level, str):
        level = level.strip().upper()
    if root.handlers:
        root.setLevel(level)
        return
    logging.basicConfig(level=level, format=LOG_FORMAT)
    if fmt.strip().lower() == "json":
        from gateway.convlog import JsonFormatter

        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = str(f.type)
    if "list" in kind:
        sep = "|" if "phrases" in f.name else ","
        return [p.strip() for p in raw.split(sep) if p.strip()]
    if kind.startswith("str"):  # (log_level: str | int)
        return raw
    if "int" in kind:
        try:
            return int(raw)
        except ValueError:
            raise ValueError("not a whole number") from None
    if "float" in kind:
        try:
            return float(raw)
        except ValueError:
            raise ValueError("not a number") from None
    if "bool" in kind:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("not true or false (use 1/0, true/false, yes/no, on/off)")
    return raw


# numeric settings that must be 0 or more, and those that must be more than 0
_AT_LEAST_0 = ("max_calls", "max_call_duration", "max_agent_audio", "drain_timeout",
               "text_turns_per_s", "text_turn_burst", "sip_ring_ms")
_ABOVE_0 = ("idle_timeout", "max_message_bytes", "stt_pool", "agent_handshake_timeout",
            "header_timeout", "body_timeout", "max_pending_connections")
_PORTS = ("port", "audiosocket_port", "sip_port")  # 0: any free port


def _problems(s: Settings) -> list[tuple[str, str]]:
    """(setting, what is wrong) for each value `s` cannot run with."""
    found: list[tuple[str, str]] = []
    for name in _AT_LEAST_0 + _ABOVE_0 + _PORTS + ("rtp_port_min", "rtp_port_max"):
        value = getattr(s, name, None)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            found.append((name, "not a number"))
        elif isinstance(value, float) and not math.isfinite(value):
            found.append((name, "not a finite number"))
        elif name in _AT_LEAST_0 and value < 0:
            found.append((name, "must be 0 or more"))
        elif name in _ABOVE_0 and value <= 0:
            found.append((name, "must be more than 0"))
        elif name in _PORTS and not 0 <= value <= 65535:
            found.append((name, "not a port number (0-65535; 0: any free port)"))
        elif name.startswith("rtp_") and not 1 <= value <= 65535:
            found.append((name, "not a port number (1-65535)"))
    if not found and s.rtp_port_min > s.rtp_port_max:
        found.append(("rtp_port_min", f"above rtp_port_max ({s.rtp_port_max})"))
    for cidr in s.sip_allow or []:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            found.append(("sip_allow", f"{cidr!r} is not an address or CIDR (e.g. 10.0.0.0/8)"))
    unknown = [p for p in s.providers or [] if p not in PROVIDERS]
    if unknown or not isinstance(s.providers, list):
        what = unknown[0] if unknown else s.providers
        found.append(("providers", f"unknown provider {what!r}: use some of "
                                   f"{', '.join(PROVIDERS)} (or none)"))
    if s.stt_garbage is not None and s.stt_garbage not in STT_GARBAGE:
        found.append(("stt_garbage", f"use {_either(STT_GARBAGE)} (or leave it unset)"))
    for name, engines in (("stt", STT_ENGINES), ("tts", TTS_ENGINES)):
        value = getattr(s, name)
        if not isinstance(value, str) or value.strip().lower() not in engines:
            found.append((name, f"unknown engine: use {_either(engines)}"))
    level = s.log_level
    if not (isinstance(level, int) or (isinstance(level, str)
                                       and level.strip().lower() in LOG_LEVELS)):
        found.append(("log_level", f"unknown log level: use {_either(LOG_LEVELS)}"))
    if not isinstance(s.log_format, str) or s.log_format.strip().lower() not in LOG_FORMATS:
        found.append(("log_format", f"unknown log format: use {_either(LOG_FORMATS)}"))
    return found


def _either(names: tuple[str, ...]) -> str:
    return ", ".join(names[:-1]) + " or " + names[-1]
