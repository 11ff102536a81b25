"""Read timeouts and the cap on half-open connections (issue 23, item 9), over 127.0.0.1
sockets: HTTP slowloris (headers never finished, a body never sent in full), SIP over TCP
(partial headers, a Content-Length never met, nothing at all) and AudioSocket (a garbage
header, no first frame) are closed after the gateway's (here short) timeouts; beyond
`max_pending_connections` a new half-open connection is closed at once. Each close says
why in one log line (rationed where a flood could write them at line rate). A
well-behaved Twilio call alongside (the canary) keeps its audio: its frames are counted,
never timed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import pytest
import websockets

from tests.e2e.canary import (
    canary_call,
    canary_keeps_its_audio,
    health,
    no_tracebacks,
    until,
)
from tests.e2e.harness import HOST

SHORT = 0.5  # the timeouts these gateways run with, in seconds
PATIENT = 30.0  # long enough that nothing is closed by a timeout during a test
POLICY_VIOLATION = 1008


async def connect(port: int, first: bytes = b"") -> tuple[asyncio.StreamReader,
                                                           asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(HOST, port)
    if first:
        writer.write(first)
        await writer.drain()
    return reader, writer


async def closed_by_peer(reader: asyncio.StreamReader, within: float) -> bytes:
    """Everything the gateway sent until it closed the connection; AssertionError if it
    is still open after `within` seconds."""
    got = b""
    try:
        async with asyncio.timeout(within):
            while chunk := await reader.read(65536):
                got += chunk
    except TimeoutError:
        raise AssertionError(f"still open after {within} s (sent {got[:200]!r})") from None
    except ConnectionError:
        pass
    return got


async def still_open(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     for_s: float) -> bool:
    """True when the gateway has not closed the connection within `for_s` seconds."""
    try:
        data = await asyncio.wait_for(reader.read(1), for_s)
    except TimeoutError:
        return not writer.is_closing()
    except ConnectionError:
        return False
    return data != b""


def lines(caplog: pytest.LogCaptureFixture, text: str, level: int = logging.DEBUG) -> list[str]:
    """Logged messages holding `text`, at `level` or above."""
    return [r.getMessage() for r in caplog.records
            if text in r.getMessage() and r.levelno >= level]


def rationed(caplog: pytest.LogCaptureFixture, text: str, expected: int) -> None:
    """`expected` lines holding `text`: the first ten at INFO, the rest at DEBUG
    (`LogRation`), so a flood of slow connections cannot write the log at line rate."""
    every = lines(caplog, text)
    assert len(every) == expected, every
    assert len(lines(caplog, text, logging.INFO)) == min(expected, 10), every


def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        with contextlib.suppress(Exception):
            writer.close()


# ------------------------------------------------------------------------------ HTTP


async def test_http_slowloris_is_closed_after_the_timeouts(gateway_factory, caplog):
    caplog.set_level(logging.DEBUG, logger="gateway")
    gw = await gateway_factory(header_timeout=SHORT, body_timeout=SHORT)
    canary = await canary_call(gw)
    partial_headers = [await connect(gw.port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: ")
                       for _ in range(20)]
    nothing = [await connect(gw.port) for _ in range(10)]
    short_body = [await connect(gw.port, b"POST /twilio/voice HTTP/1.1\r\nHost: x\r\n"
                                b"Content-Type: application/x-www-form-urlencoded\r\n"
                                b"Content-Length: 1000\r\n\r\nCallSid=CA1&")
                  for _ in range(20)]
    try:
        for reader, _ in partial_headers + nothing:
            assert await closed_by_peer(reader, 10) == b""  # no request: no answer
        for reader, _ in short_body:
            answer = await closed_by_peer(reader, 10)
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert (await health(gw))["status"] == "ok"
    finally:
        close_all([w for _, w in partial_headers + nothing + short_body])
    await canary_keeps_its_audio(canary, hang_up=True)
    await until(lambda: gw.app.http_gate.pending == 0, 5, "no HTTP connection pending")
    late = [r for r in caplog.records if "body not complete within" in r.getMessage()]
    assert len(late) == len(short_body), [r.getMessage() for r in late]  # one line each
    rationed(caplog, f"HTTP connection from {HOST}:", len(partial_headers + nothing))
    assert len(lines(caplog, f"no complete request headers within {SHORT:g} s (0 bytes "
                              "received)")) == len(nothing)
    no_tracebacks(caplog)


async def test_http_half_open_connections_beyond_the_cap_are_closed_at_once(gateway_factory,
                                                                           caplog):
    caplog.set_level(logging.DEBUG, logger="gateway")
    gw = await gateway_factory(header_timeout=PATIENT, max_pending_connections=8)
    canary = await canary_call(gw)
    held = [await connect(gw.port, b"GET / HTTP/1.1\r\nHo") for _ in range(8)]
    await until(lambda: gw.app.http_gate.pending == 8, 5, "8 pending HTTP connections")
    try:
        extra, extra_writer = await connect(gw.port,
                                            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await closed_by_peer(extra, 5) == b""  # refused before its request is read
        assert gw.app.http_gate.refused >= 1
        assert lines(caplog, f"HTTP connection from {HOST}:", logging.WARNING) == [
            f"HTTP connection from {HOST}:{extra_writer.get_extra_info('sockname')[1]} "
            "refused: 8 connections have not sent a complete request yet (the limit)"]
        for reader, writer in held[:2]:  # the held ones are not closed early by the cap
            assert await still_open(reader, writer, 0.2)
    finally:
        close_all([w for _, w in held])
    await until(lambda: gw.app.http_gate.pending == 0, 5, "the held connections to go")
    assert (await health(gw))["status"] == "ok"  # new connections are welcome again
    await canary_keeps_its_audio(canary, hang_up=True)


# ------------------------------------------------------------------------------ SIP over TCP


def options(n: int, port: int, body_claim: int = 0, body: bytes = b"") -> bytes:
    return (f"OPTIONS sip:agent@{HOST}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP {HOST}:5099;branch=z9hG4bK-tcp-{n}\r\n"
            f"From: <sip:probe@{HOST}>;tag=t{n}\r\nTo: <sip:agent@{HOST}>\r\n"
            f"Call-ID: tcp-{n}@{HOST}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            f"Content-Length: {body_claim}\r\n\r\n").encode() + body


async def sip_response(reader: asyncio.StreamReader) -> str:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return head.decode()


async def test_sip_over_tcp_half_open_connections_are_closed(gateway_factory, caplog):
    caplog.set_level(logging.DEBUG, logger="gateway")
    gw = await gateway_factory(sip_port=0, header_timeout=SHORT)
    canary = await canary_call(gw)
    port = gw.app.sip_port
    whole = options(1, port)
    half_open = [await connect(port, whole[: len(whole) // 2]) for _ in range(10)]
    unmet = [await connect(port, options(2 + i, port, body_claim=500, body=b"v=0\r\n"))
             for i in range(10)]
    nothing = [await connect(port) for _ in range(10)]
    # a client that sends a complete message and then stays quiet is not half-open
    reader, writer = await connect(port, options(99, port))
    try:
        assert (await sip_response(reader)).startswith("SIP/2.0 200")
        for r, _ in half_open + unmet + nothing:
            assert await closed_by_peer(r, 10) == b""
        # ... after longer than the timeout it is still there, and answered
        assert await still_open(reader, writer, 3 * SHORT)
        writer.write(options(100, port))
        assert (await sip_response(reader)).startswith("SIP/2.0 200")
        # a message begun on it must be finished in time too
        writer.write(options(101, port)[:30])
        assert await closed_by_peer(reader, 10) == b""
    finally:
        close_all([w for _, w in half_open + unmet + nothing] + [writer])
    await until(lambda: gw.app.sip.tcp_gate.pending == 0, 5, "no SIP connection pending")
    await canary_keeps_its_audio(canary, hang_up=True)
    # one line for each, the message begun on the quiet connection included
    rationed(caplog, f"no complete message within {SHORT:g} s; closing",
             len(half_open + unmet + nothing) + 1)
    no_tracebacks(caplog)


async def test_sip_over_tcp_half_open_connections_beyond_the_cap_are_closed(gateway_factory,
                                                                           caplog):
    caplog.set_level(logging.DEBUG, logger="gateway")
    gw = await gateway_factory(sip_port=0, header_timeout=PATIENT, max_pending_connections=5)
    canary = await canary_call(gw)
    port = gw.app.sip_port
    held = [await connect(port, b"OPTIONS sip:x SIP/2.0\r\n") for _ in range(5)]
    await until(lambda: gw.app.sip.tcp_gate.pending == 5, 5, "5 pending SIP connections")
    try:
        extra, extra_writer = await connect(port, options(7, port))
        assert await closed_by_peer(extra, 5) == b""  # closed without an answer
        assert lines(caplog, "SIP over TCP connection from", logging.WARNING) == [
            f"SIP over TCP connection from {HOST}:{extra_writer.get_extra_info('sockname')[1]}"
            " refused: 5 connections have not sent a complete request yet (the limit)"]
    finally:
        close_all([w for _, w in held])
    await until(lambda: gw.app.sip.tcp_gate.pending == 0, 5, "the held connections to go")
    reader, writer = await connect(port, options(8, port))
    try:
        assert (await sip_response(reader)).startswith("SIP/2.0 200")  # welcome again
    finally:
        writer.close()
    await canary_keeps_its_audio(canary, hang_up=True)


# ------------------------------------------------------------------------------ AudioSocket


async def test_audiosocket_without_a_first_frame_is_closed(gateway_factory, caplog):
    caplog.set_level(logging.DEBUG, logger="gateway")
    gw = await gateway_factory(audiosocket_port=0, header_timeout=SHORT, idle_timeout=PATIENT)
    canary = await canary_call(gw)
    port = gw.app.audiosocket_port
    garbage = [await connect(port, bytes((0x10, 0xFF, 0xFF)) + b"\x00" * 100)
               for _ in range(10)]  # an audio header promising 65535 bytes, and no UUID
    half_header = [await connect(port, b"\x01\x00") for _ in range(5)]
    nothing = [await connect(port) for _ in range(5)]
    # a whole frame, but audio before the UUID: a protocol error, closed at once
    wrong, wrong_writer = await connect(port, bytes((0x10, 0, 4)) + b"\x00" * 4)
    try:
        for reader, _ in garbage + half_header + nothing + [(wrong, wrong_writer)]:
            await closed_by_peer(reader, 10)
    finally:
        close_all([w for _, w in garbage + half_header + nothing] + [wrong_writer])
    assert lines(caplog, "AudioSocket connection from", logging.WARNING) == [
        f"AudioSocket connection from {HOST}:{wrong_writer.get_extra_info('sockname')[1]}: "
        "audiosocket: message kind 0x10 before the UUID; closing this connection"]
    assert not any(c.call_id.startswith("audiosocket") for c in gw.app.calls.values())
    await until(lambda: gw.app.audiosocket_gate.pending == 0, 5, "no AudioSocket pending")
    await canary_keeps_its_audio(canary, hang_up=True)
    closed = f"no call started within {SHORT:g} s"
    rationed(caplog, closed, len(garbage + half_header + nothing))
    for sent, count in ((103, len(garbage)), (2, len(half_header)), (0, len(nothing))):
        assert len(lines(caplog, f"{closed} ({sent} bytes received")) == count
    no_tracebacks(caplog)


async def test_audiosocket_half_open_connections_beyond_the_cap_are_closed(gateway_factory,
                                                                            caplog):
    caplog.set_level(logging.DEBUG, logger="gateway")
    gw = await gateway_factory(audiosocket_port=0, header_timeout=PATIENT,
                               max_pending_connections=4)
    port = gw.app.audiosocket_port
    held = [await connect(port, b"\x01") for _ in range(4)]
    await until(lambda: gw.app.audiosocket_gate.pending == 4, 5, "4 pending connections")
    try:
        extra, extra_writer = await connect(port)
        await closed_by_peer(extra, 5)
        assert lines(caplog, "AudioSocket connection from", logging.WARNING) == [
            f"AudioSocket connection from {HOST}:{extra_writer.get_extra_info('sockname')[1]}"
            " refused: 4 connections have not sent a complete request yet (the limit)"]
        for reader, writer in held[:2]:
            assert await still_open(reader, writer, 0.2)
    finally:
        close_all([w for _, w in held])
    await until(lambda: gw.app.audiosocket_gate.pending == 0, 5, "the held connections to go")


# ------------------------------------------------------------------------------ media streams


async def test_a_stream_that_never_starts_a_call_is_closed(gateway_factory, caplog):
    caplog.set_level(logging.DEBUG, logger="gateway")
    gw = await gateway_factory(header_timeout=SHORT, idle_timeout=PATIENT)
    canary = await canary_call(gw)
    connected = json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    sockets = []
    try:
        for path in ("/twilio/stream", "/plivo/stream", "/vonage/stream"):
            ws = await websockets.connect(f"{gw.ws}{path}", open_timeout=5)
            sockets.append(ws)
            if path == "/twilio/stream":
                await ws.send(connected)  # and never a start message
        for ws in sockets:
            async with asyncio.timeout(10):
                await ws.wait_closed()
            assert ws.close_code == POLICY_VIOLATION, ws.close_code
            assert "no start message" in (ws.close_reason or "")
    finally:
        for ws in sockets:
            await ws.close()
    assert gw.app.stream_gate.pending == 0
    await canary_keeps_its_audio(canary, hang_up=True)
    assert sorted(lines(caplog, "no start message within")) == [
        f"{p}: no start message within {SHORT:g} s; closing" for p in ("plivo", "twilio",
                                                                        "vonage")]
    no_tracebacks(caplog)


async def test_streams_not_started_beyond_the_cap_are_refused(gateway_factory, caplog):
    caplog.set_level(logging.DEBUG, logger="gateway")
    gw = await gateway_factory(header_timeout=PATIENT, max_pending_connections=3)
    canary = await canary_call(gw)  # started: it does not count
    held = [await websockets.connect(f"{gw.ws}/twilio/stream", open_timeout=5)
            for _ in range(3)]
    try:
        await until(lambda: gw.app.stream_gate.pending == 3, 5, "3 streams not started")
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            await websockets.connect(f"{gw.ws}/twilio/stream", open_timeout=5)
        assert refused.value.response.status_code == 503
        assert len(lines(caplog, "media stream connection from", logging.WARNING)) == 1
    finally:
        for ws in held:
            await ws.close()
    await until(lambda: gw.app.stream_gate.pending == 0, 5, "the held streams to go")
    await canary_keeps_its_audio(canary, hang_up=True)


def tcp_invite(n: int, port: int, sdp: bytes, method: str = "INVITE", cseq: int = 1,
               to_tag: str = "") -> bytes:
    lines = [f"{method} sip:agent@{HOST}:{port};transport=tcp SIP/2.0",
             f"Via: SIP/2.0/TCP {HOST}:5099;branch=z9hG4bK-tcpcall-{n}-{method}",
             f"From: <sip:caller@{HOST}>;tag=c{n}",
             f"To: <sip:agent@{HOST}:{port}>" + (f";tag={to_tag}" if to_tag else ""),
             f"Call-ID: tcpcall-{n}@{HOST}", f"CSeq: {cseq} {method}", "Max-Forwards: 70",
             f"Contact: <sip:caller@{HOST}:5099;transport=tcp>"]
    if sdp:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(sdp)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + sdp


async def sip_final(reader: asyncio.StreamReader) -> str:
    """The next final (non-1xx) response on a TCP connection, head and body."""
    while True:
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode()
        length = int(next((line.split(":", 1)[1] for line in head.split("\r\n")
                           if line.lower().startswith("content-length:")), "0"))
        body = (await reader.readexactly(length)).decode() if length else ""
        if not head.startswith("SIP/2.0 1"):
            return head + body


async def test_sip_over_tcp_quiet_connections_close_unless_they_carry_a_call(
        gateway_factory, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG, logger="gateway")
    monkeypatch.setattr("gateway.transports.sip.TCP_IDLE_S", 1.0)
    gw = await gateway_factory(sip_port=0, header_timeout=SHORT)
    port = gw.app.sip_port
    prober, probe_writer = await connect(port, options(200, port))
    caller, caller_writer = await connect(port)
    sdp = (f"v=0\r\no=c 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
           f"m=audio 40002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=inactive\r\n").encode()
    try:
        assert (await sip_response(prober)).startswith("SIP/2.0 200")
        caller_writer.write(tcp_invite(1, port, sdp))
        ok = await sip_final(caller)
        assert ok.startswith("SIP/2.0 200"), ok
        tag = ok.split("To:", 1)[1].split("tag=", 1)[1].split("\r\n")[0].split(";")[0]
        caller_writer.write(tcp_invite(1, port, b"", "ACK", to_tag=tag))
        # quiet, and no call on it: closed after the (here short) quiet limit
        assert await closed_by_peer(prober, 10) == b""
        probe_port = probe_writer.get_extra_info("sockname")[1]
        assert lines(caplog, "with no call; closing") == [
            f"SIP over TCP from {HOST}:{probe_port}: quiet for 1 s with no call; closing"]
        # quiet as long, but carrying a call: still there (nothing sent, nothing closed),
        # and the call ends over it
        with pytest.raises(TimeoutError):
            got = await asyncio.wait_for(caller.read(1), 2.0)
            raise AssertionError(f"the gateway sent {got!r} or closed")
        caller_writer.write(tcp_invite(1, port, b"", "BYE", cseq=2, to_tag=tag))
        bye_ok = await sip_final(caller)
        assert bye_ok.startswith("SIP/2.0 200") and "CSeq: 2 BYE" in bye_ok, bye_ok
        assert await closed_by_peer(caller, 10) == b""  # no call left on it
        caller_port = caller_writer.get_extra_info("sockname")[1]
        assert lines(caplog, "with no call; closing")[1:] == [  # only once its call ended
            f"SIP over TCP from {HOST}:{caller_port}: quiet for 1 s with no call; closing"]
    finally:
        close_all([probe_writer, caller_writer])
    no_tracebacks(caplog)
