"""A sans-I/O SIP user agent server (RFC 3261) for inbound calls.

Feed it what arrives (`receive(data, addr, now=...)`), tell it what the application
decided (`answer`, `reject`, `ring`, `hangup`, `transfer`), and call `on_timer(now)`
at `next_deadline()`. Each call returns a list of actions: `Send` (a message for an
address) and call events (`CallOffered`, `CallConfirmed`, `CallUpdated`,
`CallEnded`, `DtmfReceived`, `TransferStatus`). No sockets, tasks or clocks.

What it does: 100 Trying at once; the application's 200 OK (Contact, SDP,
Record-Route copied) is retransmitted from T1 doubling to T2 until the ACK, and
after 64*T1 without one the call ends with a BYE. Non-2xx finals to INVITE are
retransmitted until their ACK over UDP. Retransmitted requests (same branch and
method) get the last response again and are not new calls. CANCEL before the answer
gives 200 plus 487; BYE from either side; re-INVITE (hold, resume, new codec) asks the
application for a new answer; REFER with implicit-subscription NOTIFYs (sipfrag),
and once a NOTIFY reports the transfer's 2xx we end our leg with BYE (RFC 5589 6.1);
INFO DTMF; OPTIONS 200. Unsupported methods get 405 with Allow, requests for unknown
dialogs 481, malformed requests 400 (or are dropped when too broken to answer).
Admission: CIDR allowlist (403), optional digest auth on INVITE (401; a replayed header,
its nonce and nc used before, is a wrong credential; a source that sends
five wrong credentials in a minute gets 403 for five minutes), call limit
(503). In-dialog requests we send go to the address the INVITE came from (symmetric
signalling, which is what NAT needs) with the Record-Route route set.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from gateway.logtext import LogRation
from gateway.sip.auth import AddressAllowlist, AuthFailures, DigestAuth
from gateway.sip.message import (
    MAGIC_COOKIE,
    Headers,
    SipMessage,
    SipParseError,
    SipRequest,
    SipResponse,
    make_response,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
    split_list,
)
from gateway.sip.timers import TimerHandle, Timers

__all__ = [
    "Action",
    "Addr",
    "CallConfirmed",
    "CallEnded",
    "CallOffered",
    "CallState",
    "CallUpdated",
    "DtmfReceived",
    "Send",
    "SipCall",
    "SipUas",
    "TransferStatus",
    "UasConfig",
]

log = logging.getLogger(__name__)

Addr = tuple[str, int]
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, NOTIFY"
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset()  # no 100rel, timer, replaces yet


class CallState(StrEnum):
    OFFERED = "offered"  # INVITE received, waiting for the application
    ANSWERED = "answered"  # 200 OK sent, waiting for ACK
    CONFIRMED = "confirmed"
    ENDED = "ended"


@dataclass(eq=False)
class SipCall:
    """One inbound call (a dialog). Read its fields; drive it through `SipUas`."""

    call_id: str
    invite: SipRequest
    source: Addr
    transport: str
    local_tag: str
    remote_tag: str
    from_header: str
    to_header: str
    remote_target: str
    route_set: list[str]
    remote_cseq: int
    offer: bytes
    x_headers: dict[str, str] = field(default_factory=dict)
    state: CallState = CallState.OFFERED
    end_reason: str = ""
    local_cseq: int = 0
    _invite_txn: _ServerTxn | None = field(default=None, repr=False)
    _ack_wait: _Retransmit | None = field(default=None, repr=False)
    _ack_cseq: int = field(default=-1, repr=False)
    _bye_pending: bool = field(default=False, repr=False)
    _transferring: bool = field(default=False, repr=False)  # our REFER not settled yet

    @property
    def active(self) -> bool:
        return self.state != CallState.ENDED

    @property
    def local_header(self) -> str:
        """Our From header on requests we send in this dialog."""
        return _with_tag(self.to_header, self.local_tag)

    def context(self) -> dict[str, object]:
        """Call facts for `session.context` (caller fields plus the SIP headers)."""
        caller = _user_of(self.from_header)
        callee = _user_of(self.to_header) or _user_of_uri(self.invite.uri)
        return {
            "call_id": self.call_id,
            "user_number": caller,
            "agent_number": callee,
            "direction": "inbound",
            "from": self.from_header,
            "to": self.to_header,
            "request_uri": self.invite.uri,
            "x_headers": dict(self.x_headers),
            "remote_addr": f"{self.source[0]}:{self.source[1]}",
            "transport": self.transport.lower(),
        }


# ----------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class Send:
    message: SipMessage
    addr: Addr
    transport: str = "UDP"

    def to_bytes(self) -> bytes:
        return self.message.to_bytes()


@dataclass(frozen=True)
class CallOffered:
    call: SipCall


@dataclass(frozen=True)
class CallConfirmed:
    """The ACK for our 200 OK arrived: media flows. `sdp` is the ACK's body (late offer)."""

    call: SipCall
    sdp: bytes = b""


@dataclass(frozen=True)
class CallUpdated:
    """A re-INVITE: answer it with `answer(call, sdp)` or `reject(call, 488)`."""

    call: SipCall
    sdp: bytes


@dataclass(frozen=True)
class CallEnded:
    call: SipCall
    reason: str


@dataclass(frozen=True)
class DtmfReceived:
    call: SipCall
    digit: str


@dataclass(frozen=True)
class TransferStatus:
    call: SipCall
    status: int
    reason: str
    final: bool


Action = (
    Send | CallOffered | CallConfirmed | CallUpdated | CallEnded | DtmfReceived | TransferStatus
)


@dataclass
class UasConfig:
    host: str  # the address we advertise in Via and Contact
    port: int = 5060
    user: str = "atoms"
    allow: list[str] | None = None  # CIDRs allowed to send requests; None allows all
    auth: DigestAuth | None = None  # digest authentication of INVITE, if set
    max_calls: int = 100
    user_agent: str = "atoms-gateway"
    t1: float = 0.5
    t2: float = 4.0

    @property
    def transaction_timeout(self) -> float:
        """64*T1 (RFC 3261 timers B, F, H, J): when a transaction gives up, and how long
        a finished one (or an ended dialog) is remembered for retransmissions."""
        return transaction_timeout(self.t1)


def transaction_timeout(t1: float) -> float:
    """64*T1: RFC 3261's transaction timeout for a given T1."""
    return 64 * t1


# ----------------------------------------------------------------------------- internals


@dataclass(eq=False)
class _ServerTxn:
    key: tuple[object, ...]
    request: SipRequest
    addr: Addr
    transport: str
    last_response: SipResponse | None = None
    call: SipCall | None = None
    retransmit: _Retransmit | None = None

    @property
    def final(self) -> bool:
        return self.last_response is not None and self.last_response.status >= 200


@dataclass(eq=False)
class _ClientTxn:
    branch: str
    request: SipRequest
    call: SipCall
    retransmit: _Retransmit | None = None


class _Retransmit:
    """Resend one message from T1 doubling up to T2; give up at 64*T1."""

    def __init__(
        self,
        timers: Timers[Action],
        send: Send,
        now: float,
        t1: float,
        t2: float,
        on_give_up: Callable[[float], list[Action]],
    ) -> None:
        self._timers = timers
        self._send = send
        self._t2 = t2
        self._interval = t1
        self._give_up_at = now + transaction_timeout(t1)
        self._on_give_up = on_give_up
        self._handle: TimerHandle = timers.schedule(now + t1, self._fire)

    def _fire(self, when: float) -> list[Action]:
        if when >= self._give_up_at:
            return self._on_give_up(when)
        self._interval = min(self._interval * 2, self._t2)
        self._handle = self._timers.schedule(
            min(when + self._interval, self._give_up_at), self._fire
        )
        return [self._send]

    def cancel(self) -> None:
        self._handle.cancel()


def _token() -> str:
    return secrets.token_hex(6)


def _with_tag(header: str, tag: str) -> str:
    try:
        if parse_name_addr(header).tag:
            return header
    except SipParseError:
        pass
    return f"{header.strip()};tag={tag}"


def _user_of_uri(uri: str) -> str:
    try:
        return parse_uri(uri).user
    except SipParseError:
        return ""


def _user_of(header: str) -> str:
    try:
        return parse_name_addr(header).uri.user
    except SipParseError:
        return ""


def _txn_key(req: SipRequest, method: str | None = None) -> tuple[object, ...]:
    via = req.top_via
    method = method or ("INVITE" if req.method == "ACK" else req.method)
    branch = via.branch or ""
    if branch.startswith(MAGIC_COOKIE):
        return (branch, via.host, via.port, method)
    return (req.call_id, req.from_addr.tag, req.cseq[0], via.host, via.port, method)


def _sipfrag_status(body: bytes) -> tuple[int, str] | None:
    first = body.decode("utf-8", "replace").strip().split("\n", 1)[0].strip()
    parts = first.split(" ", 2)
    if len(parts) >= 2 and parts[0].upper() == "SIP/2.0" and parts[1].isdigit():
        return int(parts[1]), parts[2] if len(parts) > 2 else ""
    return None


def _info_digit(req: SipRequest) -> str | None:
    text = req.body.decode("utf-8", "replace").strip()
    if req.content_type == "application/dtmf-relay":
        for line in text.splitlines():
            name, _, value = line.partition("=")
            if name.strip().lower() == "signal" and value.strip():
                return value.strip()[:1]
    elif req.content_type == "application/dtmf" and text:
        return text[:1]
    return None


# ----------------------------------------------------------------------------- the UAS


class SipUas:
    def __init__(self, config: UasConfig) -> None:
        self.config = config
        self.allowlist = AddressAllowlist(config.allow)
        self._timers: Timers[Action] = Timers()
        self._auth_failures = AuthFailures()  # wrong passwords per source: 403 for a while
        # lines about what we drop or refuse: anyone who reaches the port can send garbage
        # at line rate, and must not write the log at that rate
        self._dropped_log = LogRation(log, "malformed or refused SIP messages")
        self._server_txns: dict[tuple[object, ...], _ServerTxn] = {}
        self._client_txns: dict[str, _ClientTxn] = {}
        self._dialogs: dict[tuple[str, str], SipCall] = {}

    # -- public API -------------------------------------------------------------------------

    @property
    def calls(self) -> list[SipCall]:
        """Calls not ended yet."""
        return [c for c in self._dialogs.values() if c.active]

    def next_deadline(self) -> float | None:
        return self._timers.next_deadline()

    def on_timer(self, now: float) -> list[Action]:
        return self._timers.run(now)

    def receive(
        self, data: bytes | SipMessage, addr: Addr, *, now: float, transport: str = "UDP"
    ) -> list[Action]:
        """Handle one datagram (or one message framed off a stream) from `addr`."""
        transport = transport.upper()
        if isinstance(data, SipMessage):
            msg: SipMessage = data
        else:
            if not bytes(data).strip():
                return []  # keep-alive
            try:
                msg = parse_message(bytes(data))
            except SipParseError as exc:
                return self._malformed(exc, addr, transport, now)
        if isinstance(msg, SipResponse):
            return self._on_response(msg, addr, now)
        assert isinstance(msg, SipRequest)
        try:
            return self._on_request(msg, addr, now, transport)
        except SipParseError as exc:  # a header the checks up front did not cover
            self._dropped(now, "dropped %s from %s: %s", msg.method, addr[0], exc)
            return []

    def _dropped(self, now: float, msg: str, *args: object, level: int = logging.INFO) -> None:
        """A line about a message we drop or refuse: rationed (`LogRation`: 10 a minute,
        then one line saying how many more), its text from the wire escaped."""
        if self._dropped_log.log(now, level, msg, *args):
            self._timers.schedule(self._dropped_log.window_end, self._flush_dropped)

    def _flush_dropped(self, when: float) -> list[Action]:
        self._dropped_log.flush(when)
        return []

    def ring(self, call: SipCall, *, now: float) -> list[Action]:
        """Send 180 Ringing for a call not answered yet."""
        txn = call._invite_txn
        if call.state != CallState.OFFERED or txn is None or txn.final:
            return []
        return self._respond(txn, 180, now, headers=[("Contact", self._contact(call.transport))])

    def answer(self, call: SipCall, sdp: bytes, *, now: float) -> list[Action]:
        """200 OK with `sdp` to the pending INVITE or re-INVITE of `call`."""
        txn = call._invite_txn
        if txn is None or txn.final or call.state == CallState.ENDED:
            log.info("answer(%s) ignored: no INVITE waiting (state %s)", call.call_id, call.state)
            return []
        headers: list[tuple[str, str]] = [
            ("Contact", self._contact(call.transport)),
            ("Allow", ALLOW),
            ("Content-Type", "application/sdp"),
        ]
        if call.state == CallState.OFFERED:
            headers[:0] = [
                ("Record-Route", rr) for rr in txn.request.headers.get_all("Record-Route")
            ]
            call.state = CallState.ANSWERED
        call._invite_txn = None
        call._ack_cseq = txn.request.cseq[0]
        actions = self._respond(txn, 200, now, headers=headers, body=sdp)
        send = actions[0]
        assert isinstance(send, Send)

        def give_up(when: float) -> list[Action]:
            log.warning("call %s: no ACK for 200 OK after %.1fs", call.call_id,
                        self.config.transaction_timeout)
            call._ack_wait = None
            return self._end(call, "no ACK", when) + self._send_bye(call, when)

        call._ack_wait = _Retransmit(
            self._timers, send, now, self.config.t1, self.config.t2, give_up
        )
        return actions

    def reject(
        self, call: SipCall, status: int = 486, *, now: float, reason: str | None = None
    ) -> list[Action]:
        """A final error to the pending INVITE (ends the call) or re-INVITE (call goes on)."""
        if not 300 <= status <= 699:
            raise ValueError(f"reject needs a 3xx-6xx status, got {status}")
        txn = call._invite_txn
        if txn is None or txn.final:
            return []
        call._invite_txn = None
        headers = [("Retry-After", "5")] if status in (480, 486, 503) else []
        if status == 488:
            headers = [("Warning", f'304 {self.config.host} "media type not available"')]
        actions = self._respond(txn, status, now, reason=reason, headers=headers)
        if call.state == CallState.OFFERED:
            actions += self._end(call, f"rejected {status}", now)
        return actions

    def hangup(self, call: SipCall, *, now: float) -> list[Action]:
        """End the call from our side: BYE once confirmed, 480 if not answered yet."""
        if call.state == CallState.ENDED:
            return []
        if call.state == CallState.OFFERED:
            return self.reject(call, 480, now=now)
        if call.state == CallState.ANSWERED:
            call._bye_pending = True  # RFC 3261 15: BYE only after the ACK (or its timeout)
            return self._end(call, "local hangup", now)
        return self._end(call, "local hangup", now) + self._send_bye(call, now)

    def transfer(self, call: SipCall, target: str, *, now: float) -> list[Action]:
        """Blind transfer: REFER the caller to `target` (a URI, or a number/user at the
        caller's domain). Progress comes back as `TransferStatus` actions."""
        if call.state != CallState.CONFIRMED:
            raise ValueError(f"cannot transfer a call in state {call.state}")
        target = target.strip()
        if not target:
            raise ValueError("empty transfer target")
        if target.lower().startswith(("sip:", "sips:", "tel:")):
            refer_to = parse_uri(target)  # raises SipParseError (a ValueError) if bad
        else:
            host = parse_name_addr(call.from_header).uri.host or call.source[0]
            refer_to = parse_uri(f"sip:{target}@{host}")
        req = self._in_dialog_request(call, "REFER")
        req.headers.add("Refer-To", f"<{refer_to}>")
        req.headers.add("Referred-By", f"<{self._local_uri()}>")
        call._transferring = True
        return self._send_request(call, req, now)

    # -- requests -----------------------------------------------------------------------------

    def _malformed(self, exc: SipParseError, addr: Addr, transport: str,
                   now: float) -> list[Action]:
        partial = exc.partial
        if not isinstance(partial, SipRequest) or partial.method == "ACK":
            self._dropped(now, "dropped malformed SIP from %s:%s: %s", addr[0], addr[1], exc)
            return []
        if not self.allowlist.allows(addr[0]) or "Via" not in partial.headers:
            self._dropped(now, "dropped malformed SIP from %s:%s: %s", addr[0], addr[1], exc)
            return []
        self._dropped(now, "400 to malformed %s from %s:%s: %s", partial.method, addr[0],
                      addr[1], exc)
        return [Send(self._bad_request(partial, str(exc), addr), addr, transport)]

    def _bad_request(self, req: SipRequest, detail: str, addr: Addr) -> SipResponse:
        detail = "".join(c if c.isprintable() and c != '"' else "?" for c in detail)[:120]
        resp = make_response(
            req, 400, headers=[("Warning", f'399 {self.config.host} "{detail}"')], to_tag=_token()
        )
        self._fix_via(resp, addr)
        return resp

    def _on_request(self, req: SipRequest, addr: Addr, now: float, transport: str) -> list[Action]:
        if not self.allowlist.allows(addr[0]) and req.method == "ACK":
            return []
        if req.method == "ACK":
            try:
                return self._on_ack(req, now)
            except SipParseError as exc:
                self._dropped(now, "dropped malformed ACK from %s:%s: %s", addr[0], addr[1], exc)
                return []
        try:
            key = _txn_key(req)
            _ = req.call_id
            cseq_num, cseq_method = req.cseq
            from_tag = req.from_addr.tag
            to_tag = req.to_addr.tag
            if cseq_method != req.method:
                raise SipParseError(f"CSeq method {cseq_method} does not match {req.method}")
            if not from_tag:
                raise SipParseError("From without tag")
        except SipParseError as exc:
            if "Via" not in req.headers:
                self._dropped(now, "dropped %s without Via from %s", req.method, addr[0])
                return []
            self._dropped(now, "400 to %s from %s: %s", req.method, addr[0], exc)
            return [Send(self._bad_request(req, str(exc), addr), addr, transport)]

        if not self.allowlist.allows(addr[0]):
            self._dropped(now, "403 to %s from %s: not in the allowlist", req.method, addr[0],
                          level=logging.WARNING)
            resp = make_response(req, 403, to_tag=_token())
            self._fix_via(resp, addr)
            return [Send(resp, addr, transport)]

        if req.method == "CANCEL":
            return self._on_cancel(req, addr, now, transport)

        old = self._server_txns.get(key)
        if old is not None:  # a retransmission: repeat what we said, nothing new happens
            if old.last_response is None:
                return []
            return [Send(old.last_response, old.addr, old.transport)]
        txn = _ServerTxn(key=key, request=req, addr=addr, transport=transport)
        self._server_txns[key] = txn

        unsupported = [
            tag
            for value in req.headers.get_all("Require")
            if (tag := value.strip().lower()) not in SUPPORTED_EXTENSIONS
        ]
        if unsupported:
            return self._respond(
                txn, 420, now, headers=[("Unsupported", ", ".join(unsupported))], tag=True
            )
        if to_tag:
            return self._in_dialog(txn, req, to_tag, cseq_num, now)
        if req.method == "INVITE":
            return self._new_invite(txn, req, addr, now, transport)
        if req.method == "OPTIONS":
            return self._respond(txn, 200, now, headers=self._capabilities(), tag=True)
        if req.method in ("BYE", "INFO", "NOTIFY"):
            return self._respond(txn, 481, now, tag=True)
        return self._respond(txn, 405, now, headers=[("Allow", ALLOW)], tag=True)

    def _new_invite(
        self, txn: _ServerTxn, req: SipRequest, addr: Addr, now: float, transport: str
    ) -> list[Action]:
        from_tag = req.from_addr.tag or ""
        call_id = req.call_id
        for call in self._dialogs.values():
            if call.call_id == call_id and call.remote_tag == from_tag and call.active:
                return self._respond(txn, 482, now, tag=True)  # merged or looped request
        auth = self.config.auth
        if auth is not None:
            if self._auth_failures.blocked(addr[0], now):
                return self._respond(txn, 403, now, tag=True)
            credentials = req.headers.get("Authorization")
            verdict = auth.check("INVITE", credentials, now, request_uri=req.uri)
            # 'replay': a genuine header sent again (its nonce and nc used before), i.e.
            # captured: as wrong as a bad password
            if (verdict in ("fail", "replay") and credentials
                    and self._auth_failures.record(addr[0], now)):
                log.warning("403 to %s for %.0f s: %d wrong credentials in %.0f s", addr[0],
                            self._auth_failures.block, self._auth_failures.limit,
                            self._auth_failures.window)
                return self._respond(txn, 403, now, tag=True)
            if verdict != "ok":
                self._dropped(now, "401 to INVITE %s from %s (%s)", req.call_id, addr[0],
                              verdict)
                challenge = auth.challenge(now, stale=verdict == "stale")
                return self._respond(
                    txn, 401, now, headers=[("WWW-Authenticate", challenge)], tag=True
                )
        active = sum(1 for c in self._dialogs.values() if c.state != CallState.ENDED)
        if active >= self.config.max_calls:
            log.warning("503 to INVITE %s: %d calls is the limit", call_id, active)
            return self._respond(txn, 503, now, headers=[("Retry-After", "5")], tag=True)
        if req.body and req.content_type != "application/sdp":
            return self._respond(txn, 415, now, headers=[("Accept", "application/sdp")], tag=True)
        try:
            contact = req.headers.get_all("Contact")
            target = str(parse_name_addr(contact[0]).uri) if contact else ""
        except SipParseError as exc:
            return [Send(self._bad_request(req, str(exc), addr), addr, transport)]
        x_headers: dict[str, str] = {}
        for name, value in req.headers:
            if name.lower().startswith("x-"):
                x_headers[name] = f"{x_headers[name]}, {value}" if name in x_headers else value
        call = SipCall(
            call_id=req.call_id,
            invite=req,
            source=addr,
            transport=transport,
            local_tag=_token(),
            remote_tag=from_tag,
            from_header=req.headers.get("From") or "",
            to_header=req.headers.get("To") or "",
            remote_target=target or str(req.from_addr.uri),
            route_set=req.headers.get_all("Record-Route"),
            remote_cseq=req.cseq[0],
            offer=req.body,
            x_headers=x_headers,
            local_cseq=secrets.randbelow(10000) + 1,
        )
        txn.call = call
        call._invite_txn = txn
        self._dialogs[(call.call_id, call.local_tag)] = call
        return self._respond(txn, 100, now) + [CallOffered(call)]

    def _find_dialog(self, req: SipRequest, to_tag: str | None = None) -> SipCall | None:
        tag = to_tag if to_tag is not None else req.to_addr.tag
        if not tag:
            return None
        call = self._dialogs.get((req.call_id, tag))
        if call is None or call.remote_tag != (req.from_addr.tag or ""):
            return None
        return call

    def _in_dialog(
        self, txn: _ServerTxn, req: SipRequest, to_tag: str, cseq: int, now: float
    ) -> list[Action]:
        call = self._find_dialog(req, to_tag)
        if call is None or (call.state == CallState.ENDED and req.method != "BYE"):
            return self._respond(txn, 481, now)
        if cseq <= call.remote_cseq and req.method != "BYE":
            return self._respond(txn, 500, now, reason="CSeq Out Of Order")
        call.remote_cseq = max(call.remote_cseq, cseq)
        txn.call = call
        method = req.method
        if method == "BYE":
            actions = self._respond(txn, 200, now)
            pending = call._invite_txn
            if pending is not None and not pending.final:
                call._invite_txn = None
                actions += self._respond(pending, 487, now)
            if call._ack_wait is not None:
                call._ack_wait.cancel()
                call._ack_wait = None
            call._bye_pending = False
            if call.state != CallState.ENDED:
                actions += self._end(call, "bye", now)
            return actions
        if method == "INVITE":
            if call._invite_txn is not None:
                return self._respond(txn, 500, now, headers=[("Retry-After", "1")])
            if call.state == CallState.ANSWERED:
                return self._respond(txn, 491, now)
            contact = req.headers.get_all("Contact")
            if contact:
                try:
                    call.remote_target = str(parse_name_addr(contact[0]).uri)
                except SipParseError:
                    pass
            if req.body and req.content_type != "application/sdp":
                return self._respond(txn, 415, now, headers=[("Accept", "application/sdp")])
            call._invite_txn = txn
            return self._respond(txn, 100, now) + [CallUpdated(call, req.body)]
        if method == "INFO":
            actions = self._respond(txn, 200, now)
            digit = _info_digit(req)
            if digit:
                actions.append(DtmfReceived(call, digit))
            return actions
        if method == "NOTIFY":
            event = (req.headers.get("Event") or "").split(";")[0].strip().lower()
            if event != "refer":
                return self._respond(txn, 489, now, reason="Bad Event")
            actions = self._respond(txn, 200, now)
            frag = _sipfrag_status(req.body)
            state = (req.headers.get("Subscription-State") or "").split(";")[0].strip().lower()
            if frag is not None:
                status, reason = frag
                final = status >= 200 or state == "terminated"
                actions.append(TransferStatus(call, status, reason, final=final))
                if final and call._transferring:
                    call._transferring = False
                    if 200 <= status < 300 and call.state == CallState.CONFIRMED:
                        # the caller reached the target: our leg is done (RFC 5589 6.1)
                        actions += self._end(call, "transferred", now) + self._send_bye(call, now)
            return actions
        if method == "OPTIONS":
            return self._respond(txn, 200, now, headers=self._capabilities())
        return self._respond(txn, 405, now, headers=[("Allow", ALLOW)])

    def _on_ack(self, req: SipRequest, now: float) -> list[Action]:
        txn = self._server_txns.get(_txn_key(req))
        if txn is not None and txn.last_response is not None and txn.last_response.status >= 300:
            if txn.retransmit is not None:  # ACK for a non-2xx final: stop Timer G
                txn.retransmit.cancel()
                txn.retransmit = None
            return []
        call = self._find_dialog(req)
        if call is None or call._ack_wait is None or req.cseq[0] != call._ack_cseq:
            return []
        call._ack_wait.cancel()
        call._ack_wait = None
        actions: list[Action] = []
        if call.state == CallState.ANSWERED:
            call.state = CallState.CONFIRMED
            actions.append(CallConfirmed(call, req.body))
        if call._bye_pending:
            call._bye_pending = False
            actions += self._send_bye(call, now)
        return actions

    def _on_cancel(self, req: SipRequest, addr: Addr, now: float, transport: str) -> list[Action]:
        key = _txn_key(req)
        old = self._server_txns.get(key)
        if old is not None:
            return [Send(old.last_response, old.addr, old.transport)] if old.last_response else []
        txn = _ServerTxn(key=key, request=req, addr=addr, transport=transport)
        self._server_txns[key] = txn
        invite = self._server_txns.get(_txn_key(req, "INVITE"))
        if invite is None:
            return self._respond(txn, 481, now, tag=True)
        call = invite.call
        tag = call.local_tag if call is not None else None
        actions = self._respond(txn, 200, now, to_tag=tag, tag=tag is None)
        if not invite.final:
            if call is not None:
                call._invite_txn = None
            actions += self._respond(invite, 487, now)
            if call is not None and call.state == CallState.OFFERED:
                actions += self._end(call, "cancelled", now)
        return actions

    # -- responses to our requests ------------------------------------------------------------

    def _on_response(self, resp: SipResponse, addr: Addr, now: float) -> list[Action]:
        try:
            branch = resp.top_via.branch or ""
            _, method = resp.cseq
        except SipParseError as exc:
            self._dropped(now, "dropped malformed response from %s:%s: %s", addr[0], addr[1],
                          exc)
            return []
        txn = self._client_txns.get(branch)
        if txn is None or txn.request.method != method:
            return []
        if resp.status < 200:
            return []
        del self._client_txns[branch]
        if txn.retransmit is not None:
            txn.retransmit.cancel()
        if method == "REFER":
            if resp.status >= 300:
                txn.call._transferring = False
            return [TransferStatus(txn.call, resp.status, resp.reason, final=resp.status >= 300)]
        return []

    # -- building and sending -----------------------------------------------------------------

    def _respond(
        self,
        txn: _ServerTxn,
        status: int,
        now: float,
        *,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        to_tag: str | None = None,
        tag: bool = False,
    ) -> list[Action]:
        """Send a response in `txn`; finals are remembered for retransmitted requests."""
        if to_tag is None and status > 100:
            if txn.call is not None:
                to_tag = txn.call.local_tag
            elif tag:
                to_tag = _token()
        all_headers = list(headers)
        all_headers.append(("User-Agent", self.config.user_agent))
        resp = make_response(
            txn.request, status, reason, to_tag=to_tag, headers=all_headers, body=body
        )
        self._fix_via(resp, txn.addr)
        txn.last_response = resp
        send = Send(resp, txn.addr, txn.transport)
        if status >= 200:
            self._timers.schedule(now + self.config.transaction_timeout, self._forget(txn))
            if txn.request.method == "INVITE" and status >= 300 and txn.transport == "UDP":
                txn.retransmit = _Retransmit(
                    self._timers, send, now, self.config.t1, self.config.t2, self._stop(txn)
                )
        return [send]

    def _forget(self, txn: _ServerTxn) -> Callable[[float], list[Action]]:
        def forget(_: float) -> list[Action]:
            if self._server_txns.get(txn.key) is txn:
                del self._server_txns[txn.key]
            if txn.retransmit is not None:
                txn.retransmit.cancel()
            return []

        return forget

    def _stop(self, txn: _ServerTxn) -> Callable[[float], list[Action]]:
        def stop(_: float) -> list[Action]:
            txn.retransmit = None
            return []

        return stop

    def _fix_via(self, resp: SipResponse, addr: Addr) -> None:
        """RFC 3581 / 3261 18.2.1: add received= and fill rport= on the top Via."""
        items = resp.headers.items()
        for i, (name, value) in enumerate(items):
            if name.lower() not in ("via", "v"):
                continue
            values = split_list(value)
            try:
                via = parse_via(values[0])
            except (SipParseError, IndexError):
                return
            if "rport" in via.params and via.params["rport"] is None:
                via.params["rport"] = str(addr[1])
            if via.host.strip("[]") != addr[0]:
                via.params["received"] = addr[0]
            values[0] = str(via)
            items[i] = (name, ", ".join(values))
            resp.headers = Headers(items)
            return

    def _end(self, call: SipCall, reason: str, now: float) -> list[Action]:
        if call.state == CallState.ENDED:
            return []
        call.state = CallState.ENDED
        call.end_reason = reason
        key = (call.call_id, call.local_tag)

        def drop(_: float) -> list[Action]:
            if self._dialogs.get(key) is call:
                del self._dialogs[key]
            return []

        self._timers.schedule(now + self.config.transaction_timeout, drop)
        return [CallEnded(call, reason)]

    def _local_uri(self, transport: str = "UDP") -> str:
        host = self.config.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        params = "" if transport == "UDP" else f";transport={transport.lower()}"
        return f"sip:{self.config.user}@{host}:{self.config.port}{params}"

    def _contact(self, transport: str) -> str:
        return f"<{self._local_uri(transport)}>"

    def _capabilities(self) -> list[tuple[str, str]]:
        return [("Allow", ALLOW), ("Accept", "application/sdp")]

    def _in_dialog_request(self, call: SipCall, method: str) -> SipRequest:
        call.local_cseq += 1
        host = self.config.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        branch = MAGIC_COOKIE + secrets.token_hex(8)
        headers = Headers(
            [
                (
                    "Via",
                    f"SIP/2.0/{call.transport} {host}:{self.config.port};branch={branch};rport",
                ),
                ("Max-Forwards", "70"),
            ]
        )
        uri = call.remote_target
        routes = list(call.route_set)
        if routes:
            try:
                first = parse_name_addr(routes[0]).uri
            except SipParseError:
                first = None
            if first is not None and "lr" not in first.params:  # strict router (RFC 2543)
                uri = str(first)
                routes = routes[1:] + [f"<{call.remote_target}>"]
        for route in routes:
            headers.add("Route", route)
        headers.add("From", call.local_header)
        headers.add("To", call.from_header)
        headers.add("Call-ID", call.call_id)
        headers.add("CSeq", f"{call.local_cseq} {method}")
        headers.add("Contact", self._contact(call.transport))
        headers.add("User-Agent", self.config.user_agent)
        return SipRequest(method=method, uri=uri, headers=headers)

    def _send_request(self, call: SipCall, req: SipRequest, now: float) -> list[Action]:
        branch = req.top_via.branch or ""
        txn = _ClientTxn(branch=branch, request=req, call=call)
        self._client_txns[branch] = txn
        send = Send(req, call.source, call.transport)

        def timeout(_: float) -> list[Action]:
            if self._client_txns.pop(branch, None) is None:
                return []
            log.info("call %s: %s timed out", call.call_id, req.method)
            if req.method == "REFER":
                call._transferring = False
                return [TransferStatus(call, 408, "Request Timeout", final=True)]
            return []

        if call.transport == "UDP":
            txn.retransmit = _Retransmit(
                self._timers, send, now, self.config.t1, self.config.t2, timeout
            )
        else:
            self._timers.schedule(now + self.config.transaction_timeout, timeout)
        return [send]

    def _send_bye(self, call: SipCall, now: float) -> list[Action]:
        return self._send_request(call, self._in_dialog_request(call, "BYE"), now)
