"""SIP/RTP core for the gateway's phone transport: sans-I/O SIP, SDP, RTP, DTMF, jitter buffer.

Why our own code and not a library (checked 2025: pjsua2, pyVoIP 1.6.8, aiosip 0.2.0,
aiosipua 0.7.1): pjsua2 has no wheel and needs a native PJSIP build, and it owns the
audio device and media path. pyVoIP is thread-based with its own RTP/audio loop.
aiosip is unmaintained since 2017. aiosipua is asyncio and close in scope, but young
(alpha, one maintainer) and not sans-I/O: its UAS is bound to its transport and
retransmits from asyncio tasks on the real monotonic clock, so time cannot be
injected and calls cannot be replayed under a virtual clock; it also has no
server-side digest auth, allowlist or call limit. The gateway owns RTP and the voice
loop, so it needs only a small signalling core it can drive with injected time;
that is this package (RFC 3261 subset for a UAS, RFC 4566/3264, RFC 3550, RFC 4733).

Modules: `message` (SIP parse/serialize, stream framing), `sdp` (offer/answer),
`rtp` (packets, sender), `dtmf` (RFC 4733), `jitter` (jitter buffer), `rtp_session`
(one call's media state: answer, symmetric RTP, DTMF in/out, hold), `auth` (allowlist,
digest), `timers` (injected-time deadlines), `uas` (the UAS state machine).
"""

from gateway.sip.auth import AddressAllowlist, DigestAuth
from gateway.sip.dtmf import DtmfDecoder, TelephoneEvent, dtmf_packets, parse_event
from gateway.sip.jitter import LOST, JitterBuffer
from gateway.sip.message import (
    SipParseError,
    SipRequest,
    SipResponse,
    SipStreamParser,
    make_response,
    parse_message,
)
from gateway.sip.rtp import RtpError, RtpPacket, RtpSender, is_rtcp, parse_rtp
from gateway.sip.rtp_session import RtpSession
from gateway.sip.sdp import NoCommonCodec, SdpError, build_answer, negotiate, parse_sdp
from gateway.sip.uas import (
    CallConfirmed,
    CallEnded,
    CallOffered,
    CallUpdated,
    DtmfReceived,
    Send,
    SipCall,
    SipUas,
    TransferStatus,
    UasConfig,
)

__all__ = [
    "LOST",
    "AddressAllowlist",
    "CallConfirmed",
    "CallEnded",
    "CallOffered",
    "CallUpdated",
    "DigestAuth",
    "DtmfDecoder",
    "DtmfReceived",
    "JitterBuffer",
    "NoCommonCodec",
    "RtpError",
    "RtpPacket",
    "RtpSender",
    "RtpSession",
    "SdpError",
    "Send",
    "SipCall",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "SipStreamParser",
    "SipUas",
    "TelephoneEvent",
    "TransferStatus",
    "UasConfig",
    "build_answer",
    "dtmf_packets",
    "is_rtcp",
    "make_response",
    "negotiate",
    "parse_event",
    "parse_message",
    "parse_rtp",
    "parse_sdp",
]
