"""A scripted SIP phone (UAC side) and a driver for `SipUas` under injected time."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from gateway.sip.message import SipRequest, SipResponse, parse_message
from gateway.sip.uas import Action, Send, SipUas
from tests.sip.samples import SDP_PCMU

_counter = itertools.count(1)


class Phone:
    def __init__(self, addr: tuple[str, int] = ("127.0.0.1", 5061), transport: str = "UDP"):
        n = next(_counter)
        self.addr = addr
        self.transport = transport
        self.call_id = f"call-{n}@phone"
        self.tag = f"ptag{n}"
        self.cseq = 1
        self.remote_tag: str | None = None
        self.invite_branch = ""
        self.invite_cseq = 1

    def _via(self, branch: str) -> str:
        return f"SIP/2.0/{self.transport} {self.addr[0]}:{self.addr[1]};branch={branch}"

    def invite(
        self,
        *,
        branch: str | None = None,
        body: str | bytes = SDP_PCMU,
        headers: Iterable[str] = (),
        cseq: int | None = None,
    ) -> bytes:
        if branch is None:
            branch = f"z9hG4bK-inv-{next(_counter)}"
        self.invite_branch = branch
        self.invite_cseq = self.cseq if cseq is None else cseq
        body_bytes = body.encode() if isinstance(body, str) else body
        lines = [
            "INVITE sip:agent@192.0.2.10:5060 SIP/2.0",
            f"Via: {self._via(branch)}",
            "Max-Forwards: 70",
            f'From: "Caller" <sip:+15551234567@{self.addr[0]}>;tag={self.tag}',
            "To: <sip:agent@192.0.2.10>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.invite_cseq} INVITE",
            f"Contact: <sip:phone@{self.addr[0]}:{self.addr[1]}>",
            *headers,
        ]
        if body_bytes:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body_bytes)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body_bytes

    def ack(self, resp: SipResponse) -> bytes:
        """ACK: same branch as the INVITE for a non-2xx, a new one for a 2xx."""
        self.remote_tag = resp.to_addr.tag
        branch = self.invite_branch if resp.status >= 300 else f"z9hG4bK-ack-{next(_counter)}"
        to = resp.headers.get("To")
        return self._request("ACK", branch, to, self.invite_cseq)

    def cancel(self) -> bytes:
        return self._request(
            "CANCEL", self.invite_branch, "<sip:agent@192.0.2.10>", self.invite_cseq
        )

    def in_dialog(
        self,
        method: str,
        *,
        body: bytes = b"",
        headers: Iterable[str] = (),
        branch: str | None = None,
        content_type: str | None = None,
    ) -> bytes:
        self.cseq += 1
        if method == "INVITE":
            self.invite_cseq = self.cseq
        to = f"<sip:agent@192.0.2.10>;tag={self.remote_tag}"
        branch = branch or f"z9hG4bK-{method.lower()}-{next(_counter)}"
        if method == "INVITE":
            self.invite_branch = branch
        return self._request(method, branch, to, self.cseq, body, headers, content_type)

    def _request(
        self,
        method: str,
        branch: str,
        to: str | None,
        cseq: int,
        body: bytes = b"",
        headers: Iterable[str] = (),
        content_type: str | None = None,
    ) -> bytes:
        lines = [
            f"{method} sip:agent@192.0.2.10:5060 SIP/2.0",
            f"Via: {self._via(branch)}",
            "Max-Forwards: 70",
            f'From: "Caller" <sip:+15551234567@{self.addr[0]}>;tag={self.tag}',
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            *headers,
        ]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    @staticmethod
    def respond(req: SipRequest, status: int, reason: str = "OK") -> bytes:
        """A response to a request the UAS sent us (BYE, REFER)."""
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {v}" for v in req.headers.get_all("Via")]
        for name in ("From", "To", "Call-ID", "CSeq"):
            lines.append(f"{name}: {req.headers.get(name)}")
        lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


def sent(actions: list[Action]) -> list[SipRequest | SipResponse]:
    """The messages in `actions`, each put through serialize + parse like the wire would."""
    out = []
    for a in actions:
        if isinstance(a, Send):
            msg = parse_message(a.to_bytes())
            out.append(msg)
    return out


def responses(actions: list[Action]) -> list[SipResponse]:
    return [m for m in sent(actions) if isinstance(m, SipResponse)]


def statuses(actions: list[Action]) -> list[int]:
    return [m.status for m in responses(actions)]


def of_type(actions: list[Action], kind: type) -> list:
    return [a for a in actions if isinstance(a, kind)]


def run_until(uas: SipUas, until: float) -> list[tuple[float, Action]]:
    """Fire every timer due up to `until`, as the I/O shell would, with their times."""
    fired: list[tuple[float, Action]] = []
    while (deadline := uas.next_deadline()) is not None and deadline <= until:
        fired += [(deadline, a) for a in uas.on_timer(deadline)]
    return fired
