"""Gateway settings: keyword arguments of `AtomsApp`, `ATOMS_*` environment variables, CLI flags.

Precedence: explicit argument or flag > environment > default.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Settings:
    host: str = "0.0.0.0"
    port: int = 8080
    public_url: str | None = None  # e.g. https://gw.example.com; default: from the Host header
    max_calls: int = 500
    idle_timeout: float = 60.0  # seconds without caller audio or messages
    max_call_duration: float = 3600.0  # seconds; then the gateway hangs up (recordings stop)
    max_agent_audio: float = 60.0  # seconds of agent.audio a call may have queued to play
    drain_timeout: float = 30.0  # SIGTERM: how long active calls may finish
    max_message_bytes: int = 256 * 1024
    text_turns_per_s: float = 2.0  # typed turns (`/ws` {"type": "text"}) a call may send ...
    text_turn_burst: int = 10  # ... after a burst of this many; more are refused
    ws_token: str | None = None  # bearer token for /ws and /webrtc
    twilio_auth_token: str | None = None
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

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then `ATOMS_<NAME>` variables, then non-None `overrides`."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"ATOMS_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = _parse(f, raw)
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = str(f.type)
    if "list" in kind:
        sep = "|" if "phrases" in f.name else ","
        return [p.strip() for p in raw.split(sep) if p.strip()]
    if "int" in kind:
        return int(raw)
    if "float" in kind:
        return float(raw)
    if "bool" in kind:
        return raw.lower() in ("1", "true", "yes", "on")
    return raw
