"""Session events: pydantic models for the Atoms wire protocol and their JSON codec.

Class names mirror the published Atoms SDK (`smallestai.atoms.agent.events`) so agents
written for it run with only their imports changed. The JSON form of an event is
`{"type": ..., ...fields}`; raw audio travels base64-encoded.

User-defined events subclass `SDKEvent` with a type string::

    class OrderPlaced(SDKAgentEvent, type="app.order.placed"):
        order_id: str
"""

from __future__ import annotations

import base64
import binascii
import json
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
)

from runtime.dtmf import DTMF_KEYS

_REGISTRY: dict[str, type[SDKEvent]] = {}
_BY_KEY: dict[str, str] = {}


def _key(name: str) -> str:
    return name.replace("_", ".")


def canonical_type(name: str) -> str:
    """Canonical event type for `name`, accepting underscore aliases (`system.user_joined`).

    Names that match no registered type are returned unchanged.
    """
    if name in _REGISTRY:
        return name
    return _BY_KEY.get(_key(name), name)


def _b64decode(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"invalid base64 audio: {exc}") from None
    return value


Base64Bytes = Annotated[
    bytes,
    BeforeValidator(_b64decode),
    PlainSerializer(lambda b: base64.b64encode(b).decode("ascii"), return_type=str, when_used="json"),
]


class SDKEvent(BaseModel):
    """Base of every event. `type` is a class attribute set by `class X(SDKEvent, type=...)`."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    type: ClassVar[str] = "base"

    def __init_subclass__(cls, type: str | None = None, **kwargs: Any) -> None:  # noqa: A002
        super().__init_subclass__(**kwargs)
        if type is None:
            return
        cls.type = type
        _REGISTRY[type] = cls
        _BY_KEY.setdefault(_key(type), type)


class SDKSystemEvent(SDKEvent, type="system.base"):
    pass


class SDKAgentEvent(SDKEvent, type="agent.base"):
    pass


class EventType(StrEnum):
    """The catalog's event type names (values are the wire names)."""

    SYSTEM_INIT = "system.init"
    SYSTEM_USER_JOINED = "system.user.joined"
    SYSTEM_USER_LEFT = "system.user.left"
    SYSTEM_USER_STARTED_SPEAKING = "system.user.started_speaking"
    SYSTEM_USER_STOPPED_SPEAKING = "system.user.stopped_speaking"
    SYSTEM_CONTROL_INTERRUPT = "system.control.interrupt"
    SYSTEM_LLM_REQUEST = "system.llm.request"
    SYSTEM_DTMF = "system.dtmf"
    SYSTEM_AUDIO_CHUNK = "system.audio.chunk"
    SYSTEM_UPDATE_OUTPUT_AGENT_SETTINGS = "system.output_agent.update_settings"
    AGENT_READY = "agent.ready"
    AGENT_ERROR = "agent.error"
    AGENT_LOG = "agent.log"
    AGENT_TRANSCRIPT_UPDATE = "agent.transcript.update"
    AGENT_LLM_RESPONSE_START = "agent.llm.response.start"
    AGENT_LLM_RESPONSE_CHUNK = "agent.llm.response.chunk"
    AGENT_LLM_RESPONSE_END = "agent.llm.response.end"
    AGENT_SPEAK = "agent.speak"
    AGENT_AUDIO = "agent.audio"
    AGENT_CONTROL_INTERRUPT = "agent.control.interrupt"
    AGENT_CONTROL_MUTE_USER = "agent.control.mute_user"
    AGENT_CONTROL_UNMUTE_USER = "agent.control.unmute_user"
    AGENT_END_CALL = "agent.end_call"
    AGENT_TRANSFER_CONVERSATION = "agent.transfer_call"
    AGENT_SEND_DTMF = "agent.send_dtmf"


class ConversationType(StrEnum):
    TELEPHONY_INBOUND = "telephonyInbound"
    TELEPHONY_OUTBOUND = "telephonyOutbound"
    CHAT = "chat"
    WEBCALL = "webcall"
    SUPERVISOR_AGENT = "supervisor_agent"


class CallerContext(BaseModel):
    """Who is on the line: numbers, direction and the call's id."""

    user_number: str | None = None
    agent_number: str | None = None
    direction: str | None = None
    call_id: str | None = None


class SessionContext(BaseModel):
    initial_variables: dict[str, Any] = Field(default_factory=dict)
    conversation_type: ConversationType = ConversationType.WEBCALL
    caller: CallerContext | None = None


class OutputAgentSettings(BaseModel):
    model_config = ConfigDict(extra="allow")
    interruptible: bool = True


# --- system events (from the caller / gateway into Root) -------------------------------


class SDKSystemInitEvent(SDKSystemEvent, type="system.init"):
    version: str = "1.0"
    session_context: SessionContext = Field(default_factory=SessionContext)
    output_agent_settings: OutputAgentSettings | None = None


class SDKSystemUserJoinedEvent(SDKSystemEvent, type="system.user.joined"):
    pass


class SDKSystemUserLeftEvent(SDKSystemEvent, type="system.user.left"):
    reason: str = ""


class SDKSystemUserStartedSpeakingEvent(SDKSystemEvent, type="system.user.started_speaking"):
    pass


class SDKSystemUserStoppedSpeakingEvent(SDKSystemEvent, type="system.user.stopped_speaking"):
    pass


class SDKSystemControlInterruptEvent(SDKSystemEvent, type="system.control.interrupt"):
    pass


class SDKSystemLLMRequestEvent(SDKSystemEvent, type="system.llm.request"):
    messages: list[dict[str, Any]] | None = None
    extra_params: dict[str, Any] = Field(default_factory=dict)


class SDKSystemDtmfEvent(SDKSystemEvent, type="system.dtmf"):
    digit: str


class SDKSystemAudioChunkEvent(SDKSystemEvent, type="system.audio.chunk"):
    pcm: Base64Bytes
    sample_rate: int = 16000


class SDKSystemUpdateOutputAgentSettingsEvent(
    SDKSystemEvent, type="system.output_agent.update_settings"
):
    settings: dict[str, Any]


# --- agent events (from nodes towards the Sink) ---------------------------------------


class SDKAgentReadyEvent(SDKAgentEvent, type="agent.ready"):
    pass


class SDKAgentErrorEvent(SDKAgentEvent, type="agent.error"):
    message: str
    severity: Literal["warning", "fatal"] = "warning"
    payload: dict[str, Any] = Field(default_factory=dict)


class SDKAgentLogEvent(SDKAgentEvent, type="agent.log"):
    name: str
    payload: dict[str, Any] = Field(default_factory=dict)


class SDKAgentTranscriptUpdateEvent(SDKAgentEvent, type="agent.transcript.update"):
    role: Literal["user", "assistant"]
    content: str


class SDKAgentLLMResponseStartEvent(SDKAgentEvent, type="agent.llm.response.start"):
    request_id: str | None = None


class SDKAgentLLMResponseChunkEvent(SDKAgentEvent, type="agent.llm.response.chunk"):
    text: str


class SDKAgentLLMResponseEndEvent(SDKAgentEvent, type="agent.llm.response.end"):
    pass


class SDKAgentSpeakEvent(SDKAgentEvent, type="agent.speak"):
    text: str


class SDKAgentAudioEvent(SDKAgentEvent, type="agent.audio"):
    pcm: Base64Bytes
    sample_rate: int = 16000


class SDKAgentControlInterruptEvent(SDKAgentEvent, type="agent.control.interrupt"):
    pass


class SDKAgentControlMuteUserEvent(SDKAgentEvent, type="agent.control.mute_user"):
    pass


class SDKAgentControlUnmuteUserEvent(SDKAgentEvent, type="agent.control.unmute_user"):
    pass


class SDKAgentEndCallEvent(SDKAgentEvent, type="agent.end_call"):
    pass


class TransferOptionType(StrEnum):
    COLD_TRANSFER = "cold_transfer"
    WARM_TRANSFER = "warm_transfer"


class WarmTransferHandoffOptionType(StrEnum):
    PROMPT = "prompt"
    STATIC = "static"


class WarmTransferPrivateHandoffOption(BaseModel):
    type: WarmTransferHandoffOptionType
    prompt: str


class WarmTransferPublicHandoffOption(BaseModel):
    type: WarmTransferHandoffOptionType
    prompt: str


class TransferOption(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    type: TransferOptionType = TransferOptionType.COLD_TRANSFER
    private_handoff_option: WarmTransferPrivateHandoffOption | None = Field(
        default=None, alias="privateHandoffOption"
    )
    public_handoff_option: WarmTransferPublicHandoffOption | None = Field(
        default=None, alias="publicHandoffOption"
    )


class SDKAgentTransferConversationEvent(SDKAgentEvent, type="agent.transfer_call"):
    transfer_call_number: str
    transfer_options: TransferOption = Field(default_factory=TransferOption)
    on_hold_music: Literal["ringtone", "relaxing_sound", "uplifting_beats", "none"] | None = None


class SDKAgentSendDtmfEvent(SDKAgentEvent, type="agent.send_dtmf"):
    """Press keys towards the caller's side, say to navigate a remote IVR: `digits` is a
    string of 0-9 * # A-D (lower-case a-d accepted), pressed in order. SIP calls that
    negotiated telephone-event send RFC 4733 events; every other call hears DTMF tones
    after the audio already queued.

    Our extension: the published smallestai SDK has no event for sending DTMF.
    """

    digits: str

    @field_validator("digits")
    @classmethod
    def _keys_only(cls, value: str) -> str:
        if not value:
            raise ValueError("no digits to send")
        bad = "".join(dict.fromkeys(c for c in value if c.upper() not in DTMF_KEYS))
        if bad:
            raise ValueError(f"not DTMF keys: {bad!r} (keys are 0-9 * # A-D)")
        return value.upper()


# Short names for the common events.
SystemInit = SDKSystemInitEvent
UserJoined = SDKSystemUserJoinedEvent
UserLeft = SDKSystemUserLeftEvent
UserStartedSpeaking = SDKSystemUserStartedSpeakingEvent
UserStoppedSpeaking = SDKSystemUserStoppedSpeakingEvent
Interrupt = SDKSystemControlInterruptEvent
LLMRequest = SDKSystemLLMRequestEvent
Dtmf = SDKSystemDtmfEvent
AudioChunk = SDKSystemAudioChunkEvent
TranscriptUpdate = SDKAgentTranscriptUpdateEvent
Speak = SDKAgentSpeakEvent
AgentAudio = SDKAgentAudioEvent
AgentError = SDKAgentErrorEvent
EndCall = SDKAgentEndCallEvent
TransferCall = SDKAgentTransferConversationEvent
SendDtmf = SDKAgentSendDtmfEvent


def event_class(name: str) -> type[SDKEvent]:
    """The event class for a type name (aliases accepted); ValueError names an unknown type."""
    cls = _REGISTRY.get(canonical_type(name))
    if cls is None or name in ("base", "system.base", "agent.base"):
        raise ValueError(f"unknown event type {_shown(name, 60)}")
    return cls


def _shown(text: str, limit: int = 300) -> str:
    """Text from the wire inside an error message (which ends up in log lines and close
    reasons): ASCII, control characters escaped, at most `limit` characters."""
    out = ascii(text)[1:-1]
    return out if len(out) <= limit else out[: limit - 3] + "..."


def event_to_dict(event: SDKEvent) -> dict[str, Any]:
    """JSON-ready dict `{"type": ..., ...fields}`."""
    return {"type": event.type, **event.model_dump(mode="json", by_alias=True)}


def encode_event(event: SDKEvent) -> str:
    """JSON text of an event."""
    return json.dumps(event_to_dict(event), separators=(",", ":"))


MAX_JSON_DEPTH = 64
"""How deeply JSON from the network may nest (objects and arrays). Events need a handful of
levels; a thousand make the parser, the validators and every later `json.dumps` recurse
until Python's recursion limit."""


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when JSON-like `value` nests dicts and lists more than `limit` levels deep
    (walked without recursion)."""
    if not isinstance(value, dict | list):
        return False
    stack: list[tuple[dict[Any, Any] | list[Any], int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def parse_json(data: str | bytes | bytearray, limit: int = MAX_JSON_DEPTH) -> Any:
    """JSON text from the network, nested at most `limit` levels deep. Every failure is a
    `ValueError` that says why (never a `RecursionError`)."""
    try:
        value = json.loads(data)  # (its errors are ValueErrors, UnicodeDecodeError too)
    except RecursionError:
        raise ValueError(f"JSON nested more than {limit} levels deep") from None
    if too_deep(value, limit):
        raise ValueError(f"JSON nested more than {limit} levels deep")
    return value


def decode_event(data: str | bytes | dict[str, Any]) -> SDKEvent:
    """Parse an event from JSON text/bytes or a dict. Errors are `ValueError`s that say why
    (JSON nested more than `MAX_JSON_DEPTH` levels deep among them)."""
    if isinstance(data, str | bytes | bytearray):
        try:
            data = parse_json(data)
        except ValueError as exc:
            raise ValueError(f"malformed event JSON: {exc}") from None
    elif isinstance(data, dict) and too_deep(data):
        raise ValueError(f"event nested more than {MAX_JSON_DEPTH} levels deep")
    if not isinstance(data, dict):
        raise ValueError(f"an event must be a JSON object, got {type(data).__name__}")
    name = data.get("type")
    if not isinstance(name, str):
        raise ValueError("event has no 'type' field")
    cls = event_class(name)
    fields = {k: v for k, v in data.items() if k != "type"}
    try:
        return cls.model_validate(fields)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(event)"
            what = "missing field" if err["type"] == "missing" else err["msg"]
            problems.append(f"{what} {where!r}" if err["type"] == "missing" else f"{where}: {what}")
        raise ValueError(_shown(f"invalid {cls.type} event: {'; '.join(problems)}")) from None


def all_event_types() -> list[str]:
    """Every registered concrete event type name."""
    return [t for t in _REGISTRY if t not in ("system.base", "agent.base")]
