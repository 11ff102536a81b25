"""AtomsApp: one aiohttp server that answers every kind of call with the user's agent.

Each call gets its own `AgentSession` (built by the setup handler) and its own voice
loop (`Call`). `/health` reports liveness and active calls; `/ready` is 503 until the
setup handler has been dry-run at start-up. SIGTERM stops new calls and lets active
ones finish up to the drain timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import gc
import inspect
import logging
import re
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from agent.events import SDKSystemInitEvent
from agent.session import AgentSession
from gateway.call import Call, CallSettings, Transport
from gateway.drain import SHUTDOWN_S, OpenRequests
from gateway.engines import make_stt, make_tts
from gateway.gc_pacing import collect_on_schedule
from gateway.host import CallRefused, EventSession, call_label
from gateway.logtext import printable, redact_url
from gateway.media_tick import MediaTick
from gateway.observability import Observability
from gateway.read_limits import GuardedHttpServer, PendingGate, body_timeout_middleware
from gateway.remote_agent import RemoteSession
from gateway.route_auth import StreamTokens, is_loopback, open_routes
from gateway.routes import add_routes
from gateway.settings import Settings, configure_logging
from gateway.transports.audiosocket import AudioSocketListener, add_audiosocket_listener
from gateway.transports.sip import SipServer, add_sip_listener
from gateway.transports.webrtc import WebRtcServer, add_webrtc_routes
from media.bargein import BargeInConfig
from media.recording_stream import StreamingRecorder
from media.tts.cache import CachedTTS
from runtime.clock import Clock

log = logging.getLogger(__name__)

SetupHandler = Callable[[AgentSession], Awaitable[None]]


class StartupError(RuntimeError):
    """The server cannot start (a port in use, an address it cannot bind): one line that
    names what to change."""


SHUTDOWN = "the gateway is shutting down"  # what a caller still connected at shutdown is told


class AtomsApp:
    """The gateway server. `AtomsApp(setup_handler=setup).run()`."""

    def __init__(self, setup_handler: SetupHandler | None = None, **settings: Any) -> None:
        if setup_handler is None:
            from gateway.demo import GARBAGE, PHRASES, UNRECOGNISED, setup

            setup_handler = setup
            settings.setdefault("stt_phrases", PHRASES)
            settings.setdefault("stt_garbage", GARBAGE)  # other speech: "didn't catch that"
            settings.setdefault("stt_unrecognised", UNRECOGNISED)
        self.setup_handler = setup_handler
        self.settings = Settings.from_env(**settings)
        self.calls: dict[str, Call] = {}  # by the gateway's own id (`Call.gateway_id`)
        # Atoms event-protocol sessions on /ws (no voice loop, so not `Call`s): they count
        # toward `max_calls` and /health like calls, by an id of the gateway's own
        self.sessions: dict[str, EventSession] = {}
        self._ending: set[str] = set()  # calls whose end_call runs
        self._limits: dict[str, asyncio.Task[None]] = {}  # max call duration timers
        self.ready_reason: str | None = "starting"
        self.draining = False
        self.stt: Any = None
        self.tts: Any = None
        self.engines: dict[str, str] = {}  # "stt", "tts": what `load_engines` made
        self.web = web.Application(
            client_max_size=self.settings.max_message_bytes,
            middlewares=[body_timeout_middleware(self.settings.body_timeout)])
        self.open_requests = OpenRequests()  # (a shutdown lets them finish: gateway.drain)
        self.web.middlewares.append(self.open_requests.middleware)
        self.http_gate: PendingGate | None = None  # HTTP connections without a request yet
        self.web.router.add_get("/health", self._health)
        self.web.router.add_get("/ready", self._ready)
        self._runner: web.AppRunner | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._on_start: list[Callable[[], Awaitable[None]]] = []
        self._on_stop: list[Callable[[], Awaitable[None]]] = []
        self.media_tick = MediaTick()  # paces every WebSocket media stream's audio
        self.on_stop(self.media_tick.stop)
        # provider streams that have not started their call yet (`max_pending_connections`)
        self.stream_gate = PendingGate("media stream", self.settings.max_pending_connections)
        self.stream_tokens = StreamTokens()  # per-call tokens of the stream URLs we answer with
        add_routes(self)  # providers' webhooks and streams, /ws, the demo page
        # the listeners: each is there whether or not its port is set (then it never binds)
        self.webrtc: WebRtcServer = add_webrtc_routes(self)
        self.audiosocket: AudioSocketListener = add_audiosocket_listener(self)
        self.sip: SipServer = add_sip_listener(self)
        self.observe = Observability(self)  # /metrics, conversation logs, traces

    @property
    def sip_port(self) -> int | None:
        """The SIP listener's bound port, once listening."""
        return self.sip.port

    @property
    def audiosocket_port(self) -> int | None:
        """The AudioSocket listener's bound port, once listening."""
        return self.audiosocket.port

    @property
    def audiosocket_gate(self) -> PendingGate:
        """AudioSocket connections that have not started their call yet."""
        return self.audiosocket.gate

    # -- start-up ------------------------------------------------------------------------
    def load_engines(self) -> None:
        """Create and check the speech engines; a missing engine (or key) fails here, not
        mid-call. `stt` names the recogniser (`media.stt.ENGINES`: "pocketsphinx" offline,
        "deepgram", "openai", "pulse"), `tts` the synthesiser (`media.tts.ENGINES`: "espeak"
        or "piper" offline, "openai", "waves"), cached in every case; each is made from its
        own typed options, filled from the settings (`gateway.engines`)."""
        if self.stt is None:
            stt, self.engines["stt"] = make_stt(self.settings)
            stt.check()  # (pocketsphinx has checked already, building its recognisers)
            aclose = getattr(stt, "aclose", None)  # connections
            if aclose is not None:
                self.on_stop(aclose)
            self.stt = stt
        if self.tts is None:
            engine, self.engines["tts"] = make_tts(self.settings)
            aclose = getattr(engine, "aclose", None)  # worker threads, connections
            if aclose is not None:
                self.on_stop(aclose)
            tts = CachedTTS(engine)
            tts.check()
            self.tts = tts

    async def dry_run(self) -> None:
        """Run the setup handler once on a session with no caller; /ready reflects the result."""
        session = AgentSession(session_id="dry-run")
        task = asyncio.create_task(self.setup_handler(session))
        started = asyncio.create_task(session.wait_until_started())
        try:
            done, _ = await asyncio.wait({task, started}, timeout=10.0,
                                         return_when=asyncio.FIRST_COMPLETED)
            if started in done:
                self.ready_reason = None
            elif task in done and task.exception() is not None:
                exc = task.exception()
                self.ready_reason = f"setup handler failed: {type(exc).__name__}: {exc}"
            elif task in done:
                self.ready_reason = "setup handler returned without calling session.start()"
            else:
                self.ready_reason = "setup handler did not call session.start() within 10 s"
        finally:
            started.cancel()
            await session.close("dry run")
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 2.0)
        if self.ready_reason:
            log.error("not ready: %s", self.ready_reason)
        else:
            log.info("setup handler dry run passed; ready")

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        """Start serving (for embedding and tests). Returns the bound HTTP port.

        `host` also becomes the address of the other listeners (SIP, AudioSocket) that
        have none of their own. Routes without a credential (`gateway.route_auth`) are
        logged, one line each, and refused (`StartupError`) on an address other than
        loopback unless the `insecure` setting says so."""
        if host is not None:
            self.settings.host = host
        self._check_exposure()
        self.load_engines()
        if self.settings.agent_url:
            self.ready_reason = None  # agents run on the agent server
        else:
            await self.dry_run()
        # /ready says ready once every listener is up and the start-up lines are out
        dry_run_reason, self.ready_reason = self.ready_reason, "starting listeners"
        # a connection has `header_timeout` to send a complete request (aiohttp's
        # keep-alive timer runs from the connection's start); an unread body is not
        # lingered over (bodies are read within `body_timeout`, `body_timeout_middleware`)
        self._runner = web.AppRunner(self.web, handle_signals=False, access_log=None,
                                     keepalive_timeout=self.settings.header_timeout,
                                     lingering_time=0, shutdown_timeout=SHUTDOWN_S)
        await self._runner.setup()
        self.http_gate = PendingGate("HTTP", self.settings.max_pending_connections)
        self._runner._server = GuardedHttpServer(  # type: ignore[assignment]
            self._runner.server, self.http_gate)  # (type: ignore: a stand-in of the Server)
        listen_host = host or self.settings.host
        listen_port = self.settings.port if port is None else port
        site = web.TCPSite(self._runner, listen_host, listen_port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise StartupError(_bind_problem("HTTP", listen_host, listen_port, exc,
                                             "--port or ATOMS_PORT")) from None
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        for hook in self._on_start:
            try:
                await hook()
            except OSError as exc:
                await self.stop(drain_timeout=0)
                raise StartupError(self._listener_problem(hook, exc)) from None
        log.info("atoms-gateway listening on http://%s:%s", _url_host(listen_host), bound)
        self._log_startup(listen_host, bound)
        self.ready_reason = dry_run_reason
        return bound

    def _check_exposure(self) -> None:
        """Anyone who can reach an open route runs the agent (and its speech and LLM
        bills): beyond loopback that takes `insecure`."""
        exposed = [r for r in open_routes(self.settings) if not is_loopback(r.host)]
        if not exposed:
            return
        for route in exposed:
            (log.warning if self.settings.insecure else log.error)("%s", route.line())
        if not self.settings.insecure:
            hosts = ", ".join(sorted({r.host for r in exposed}))
            raise StartupError(
                f"refusing to listen on {hosts} with {len(exposed)} route(s) open to anyone "
                "(above): set their secrets, listen on 127.0.0.1 (--host or ATOMS_HOST), or "
                "accept it with --insecure (ATOMS_INSECURE=1)")

    def _listener_problem(self, hook: Callable[[], Awaitable[None]], exc: OSError) -> str:
        """One line for an extra listener that could not bind (SIP, AudioSocket)."""
        name = getattr(hook, "__qualname__", "")
        s = self.settings
        if "sip" in name.lower():
            return _bind_problem("SIP", s.sip_host or s.host, s.sip_port, exc,
                                 "--sip-port or ATOMS_SIP_PORT",
                                 "--sip-host or ATOMS_SIP_HOST" if s.sip_host else
                                 "--host or ATOMS_HOST")
        if "audiosocket" in name.lower():
            return _bind_problem("AudioSocket", s.host, s.audiosocket_port, exc,
                                 "--audiosocket-port or ATOMS_AUDIOSOCKET_PORT")
        return f"a listener could not start: {exc}"

    def _log_startup(self, host: str, port: int) -> None:
        """Where to go: the demo page, each listener, the agent and the speech engines."""
        shown = _url_host(host)
        base = f"http://{shown}:{port}"
        public = (self.settings.public_url or base).rstrip("/")
        ws_public = public.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        log.info("demo page: %s/", base)
        log.info("web clients and Atoms orchestrators: ws://%s:%s/ws", shown, port)
        log.info("WebRTC: POST %s/webrtc/offer", base)
        paths: dict[str, list[str]] = {}
        for resource in self.web.router.resources():
            parts = resource.canonical.strip("/").split("/")
            if len(parts) == 2 and parts[0] not in ("webrtc", "static"):
                paths.setdefault(parts[0], []).append(parts[1])
        for provider, leaves in paths.items():
            if "stream" not in leaves:
                continue
            hooks = [f"{public}/{provider}/{leaf}" for leaf in leaves
                     if leaf in ("voice", "answer")]
            log.info("%s: %sstream %s/%s/stream", provider.capitalize(),
                     f"webhook {hooks[0]}, " if hooks else "", ws_public, provider)
        if self.sip.port is not None:
            log.info("SIP: %s:%s", _url_host(self.sip.bind_host), self.sip.port)
        if self.audiosocket_port is not None:
            log.info("AudioSocket: %s:%s", _url_host(host), self.audiosocket_port)
        if self.settings.agent_url:
            log.info("agent: remote, at %s", redact_url(self.settings.agent_url))
        else:
            handler = self.setup_handler
            name = (f"{getattr(handler, '__module__', '?')}:"
                    f"{getattr(handler, '__qualname__', repr(handler))}")
            log.info("agent: %s%s", name, " (the offline demo agent)"
                     if name == "gateway.demo:setup" else "")
        secret = ("token", "password", "api_key", "secret")
        log.debug("settings: %s", ", ".join(
            f"{k}={'***' if v and any(w in k for w in secret) else _redacted(v)!r}"
            for k, v in dataclasses.asdict(self.settings).items()))
        for line in self.observe.startup_lines():
            log.info("%s", line)
        log.info("speech recognition: %s", self.engines.get("stt") or _engine_name(self.stt))
        log.info("text-to-speech: %s", self.engines.get("tts") or _engine_name(self.tts))

    def on_start(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run `fn` once the server listens (extra listeners: AudioSocket, SIP)."""
        self._on_start.append(fn)

    def on_stop(self, fn: Callable[[], Awaitable[None]]) -> None:
        self._on_stop.append(fn)

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Refuse new calls, let active ones finish (up to the drain timeout), then stop."""
        self.draining = True
        timeout = self.settings.drain_timeout if drain_timeout is None else drain_timeout
        if self.calls or self.sessions:
            log.info("draining %d active call(s) for up to %.0f s", self.active, timeout)
            waits = [asyncio.create_task(c.wait_closed()) for c in list(self.calls.values())]
            waits += [asyncio.create_task(s.wait_closed()) for s in list(self.sessions.values())]
            await asyncio.wait(waits, timeout=timeout)
            for w in waits:
                w.cancel()
        for hook in self._on_stop:  # listeners (WebRTC, SIP, AudioSocket) end their own calls
            await hook()
        for call in list(self.calls.values()):
            label = call_label(call.call_id, call.gateway_id)
            if not call.closed:  # (one that has just ended leaves in its own task: no
                # hang-up racing its transport's own close)
                log.info("%s: still active after the drain timeout; hanging up", label)
                try:
                    await hang_up(call.transport, SHUTDOWN)  # closes the socket
                except Exception:
                    log.exception("%s: hang-up at shutdown failed", label)
            await self.end_call(call, "server shutdown")  # (never raises: see end_call)
        for key, session in list(self.sessions.items()):
            log.info("%s: still active after the drain timeout; closing", key)
            try:
                await session.close(SHUTDOWN)
            except Exception:
                log.exception("%s: closing at shutdown failed", key)
            self.sessions.pop(key, None)
        if self._runner is not None:
            # the sockets of calls that just ended finish their close handshakes first:
            # the server's shutdown would drop the far end's close frame (gateway.drain)
            await self.open_requests.settle()
            await self._runner.cleanup()
            self._runner = None
        for task in list(self._background):
            task.cancel()

    def run(self, host: str | None = None, port: int | None = None) -> None:
        """Serve until SIGINT/SIGTERM (blocking). Logging goes to stderr at the `log_level`
        setting, as with `atoms-gateway serve`, unless the program has set it up itself. A
        server that cannot start (a port in use) logs why in one line and exits with 1."""
        configure_logging(self.settings.log_level, self.settings.log_format)
        try:
            self._run(host, port)
        except StartupError as exc:
            log.error("cannot start: %s", exc)
            raise SystemExit(1) from None

    def _run(self, host: str | None, port: int | None) -> None:

        async def main() -> None:
            await self.start(host, port)
            # Everything built at start-up (modules, models, the app) lives as long as the
            # process: move it out of the collector's sight. Full collections then scan only
            # the calls' objects (measured: a 117 ms pause with 100 SIP calls, before).
            gc.collect()
            gc.freeze()
            # ... and no automatic full collections: they paused every call (gateway.gc_pacing)
            pacing = asyncio.create_task(collect_on_schedule(), name="gc-pacing")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            log.info("shutting down")
            pacing.cancel()
            await self.stop()

        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(main())

    # -- calls -----------------------------------------------------------------------------
    async def open_call(
        self,
        transport: Transport,
        *,
        context: dict[str, Any] | None = None,
        init_event: SDKSystemInitEvent | None = None,
        call_id: str | None = None,
        clock: Clock | None = None,
        call_settings: CallSettings | None = None,
        far_end_confirms: bool = False,
    ) -> Call:
        """Start a call: session from the setup handler, voice loop, then init + joined.

        `call_id` is the caller's (the provider's) id: kept as data, for the session and
        the logs. The registry keys the call by an id of the gateway's own
        (`Call.gateway_id`), so duplicate or hostile caller ids cannot share a slot, a
        count or a recording."""
        try:
            self._check_room()
        except CallRefused:
            self.observe.refused(transport, context)
            raise
        key = self._new_key()
        # the caller's id as the call's logs, utterance labels and session id show it:
        # printable and bounded (the id as sent stays in `context` and `init_event`)
        call_id = printable(call_id, MAX_CALL_ID_CHARS) if call_id else key
        label = call_label(call_id, key)
        init_event = init_event or SDKSystemInitEvent()
        if call_settings is None:
            call_settings = CallSettings(record=self.settings.record_dir is not None,
                                         far_end_confirms=far_end_confirms,
                                         max_agent_audio_s=self.settings.max_agent_audio,
                                         max_duration_s=(self.settings.max_call_duration
                                                         if self.settings.max_call_duration > 0
                                                         else None))  # (0: no limit)
            # a transport whose line's echo comes back later than the default reach (SIP:
            # the far end's jitter buffer on top of the line) says how far to look
            tail = getattr(transport, "echo_tail_ms", None)
            if tail is not None:
                call_settings.bargein = dataclasses.replace(call_settings.bargein,
                                                            echo_tail_ms=tail)
        if self.settings.agent_url:
            remote = RemoteSession(self.settings.agent_url, init_event, call_id=call_id,
                                   apology=self.settings.apology,
                                   handshake_timeout=self.settings.agent_handshake_timeout)
            remote.context = dict(context or {})
            call = Call(transport, remote, self.stt, self.tts, init_event=init_event,
                        settings=call_settings, call_id=call_id, clock=clock)
            call.gateway_id = key
            self.observe.attach(call, context)
            self.calls[key] = call
            await self._start_recording(call, clock)
            self._limit_duration(call, clock)
            await call.start()  # system.init connects to the agent server
            log.info("%s: call started with remote agent %s (%d active)", label,
                     redact_url(self.settings.agent_url), len(self.calls))
            return call
        session = AgentSession(session_id=call_id, init_event=init_event, context=context)
        call = Call(transport, session, self.stt, self.tts, init_event=init_event,
                    settings=call_settings, call_id=call_id, clock=clock)
        call.gateway_id = key
        self.observe.attach(call, context)
        self.calls[key] = call
        await self._start_recording(call, clock)
        bound = self.observe.bind(call)  # (the session's tasks report to this call)
        setup = asyncio.create_task(self._run_setup(call, session), name=f"setup:{key}")
        self.observe.unbind(bound)
        self._background.add(setup)
        setup.add_done_callback(self._background.discard)
        started = asyncio.create_task(session.wait_until_started())
        await asyncio.wait({setup, started}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if not session.is_started:
            self.calls.pop(key, None)
            await self._stop_recording(call)
            raise CallRefused(f"{label}: the setup handler failed before starting the session")
        self._limit_duration(call, clock)
        await call.start()
        log.info("%s: call started (%d active)", label, len(self.calls))
        return call

    @property
    def active(self) -> int:
        """Calls and Atoms event sessions now: what `max_calls` and /health count."""
        return len(self.calls) + len(self.sessions)

    def _check_room(self) -> None:
        if self.draining:
            raise CallRefused("server is shutting down")
        if self.active >= self.settings.max_calls:
            raise CallRefused(f"call limit reached ({self.settings.max_calls})")

    def add_session(self, session: EventSession) -> str:
        """Register an Atoms event session (CallRefused when there is no room); returns the
        gateway's id for it, to give to `remove_session` when it ends."""
        try:
            self._check_room()
        except CallRefused:
            self.observe.refused("atoms")
            raise
        key = f"session-{uuid.uuid4().hex[:12]}"
        while key in self.sessions:
            key = f"session-{uuid.uuid4().hex[:12]}"
        self.sessions[key] = session
        return key

    def remove_session(self, key: str) -> None:
        if self.sessions.pop(key, None) is not None:
            self.observe.session_ended()

    async def _start_recording(self, call: Call, clock: Clock | None) -> None:
        """With `record_dir`: the call's recording streams to disk from now on
        (`media.recording_stream`), named by `recording_name`. A recording that cannot be
        opened is logged and the call goes on unrecorded. A call on an injected clock (a
        replay, whose recording is its input) is not recorded."""
        if not self.settings.record_dir or not call.settings.record or clock is not None:
            return
        label = call_label(call.call_id, call.gateway_id)
        recorder = StreamingRecorder(Path(self.settings.record_dir),
                                     recording_name(call.call_id, call.gateway_id),
                                     max_seconds=call.settings.max_duration_s)
        try:
            await recorder.open()
        except Exception:
            log.exception("%s: cannot record this call", label)
            call.recorder = None
            return
        call.recorder = recorder
        tail = call.settings.bargein.echo_tail_ms
        if tail != BargeInConfig.echo_tail_ms:  # (replay takes it from the recording)
            recorder.event(0.0, "call.settings", echo_tail_ms=tail)

    async def _stop_recording(self, call: Call) -> None:
        """Finish a streamed recording: the rest written, the WAV's sizes patched, the
        timeline made `.json` (in a worker thread: never on the loop)."""
        recorder = call.recorder
        if isinstance(recorder, StreamingRecorder):
            try:
                await recorder.close()
            except Exception:
                log.exception("%s: could not finish the call recording",
                              call_label(call.call_id, call.gateway_id))

    def _limit_duration(self, call: Call, clock: Clock | None) -> None:
        """Hang up `call` once it has lasted `max_call_duration` (live calls: a call on an
        injected clock, a replay, ends with its recording)."""
        if clock is not None or self.settings.max_call_duration <= 0:
            return
        task = asyncio.create_task(self._end_at_max_duration(call),
                                   name=f"max-duration:{call.gateway_id}")
        self._limits[call.gateway_id] = task
        task.add_done_callback(lambda _: self._limits.pop(call.gateway_id, None))

    async def _end_at_max_duration(self, call: Call) -> None:
        limit = self.settings.max_call_duration
        await asyncio.sleep(limit)
        if call.closed:
            return
        log.warning("%s: maximum call duration (%g s) reached; hanging up",
                    call_label(call.call_id, call.gateway_id), limit)
        try:
            await hang_up(call.transport, "maximum call duration reached")
        except Exception:
            log.exception("%s: hang-up at the maximum duration failed",
                          call_label(call.call_id, call.gateway_id))
        await self.end_call(call, "maximum call duration")  # (whatever the transport does)

    def _new_key(self) -> str:
        while True:
            key = f"call-{uuid.uuid4().hex[:12]}"
            if key not in self.calls:
                return key

    async def _run_setup(self, call: Call, session: AgentSession) -> None:
        try:
            await self.setup_handler(session)
        except Exception:
            log.exception("%s: setup handler failed", call_label(call.call_id, call.gateway_id))
            await call.close("setup handler failed")

    async def end_call(self, call: Call, reason: str) -> None:
        """The transport is gone: close the call, write its recording, forget it.

        The call leaves the registry whatever fails on the way (a session that raises on
        close, a recording that cannot be written): a failure here must never keep a
        `max_calls` slot, nor stop a shutdown's drain."""
        key = call.gateway_id
        label = call_label(call.call_id, key)
        if key in self._ending:
            await call.wait_closed()
            return
        self._ending.add(key)
        limit = self._limits.pop(key, None)
        if limit is not None and limit is not asyncio.current_task():
            limit.cancel()
        try:
            try:
                await call.close(reason)
            except Exception:
                log.exception("%s: closing the call failed", label)
            await self._stop_recording(call)
            if self.calls.get(key) is not call:
                return
        finally:
            self._ending.discard(key)
            if self.calls.get(key) is call:
                del self.calls[key]
                self.observe.removed(call)
                log.info("%s: call ended (%s); %d active", label, call.end_reason or reason,
                         len(self.calls))
            _unlink(call)

    # -- HTTP ------------------------------------------------------------------------------
    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "active_calls": self.active,
                                  "event_sessions": len(self.sessions),
                                  "draining": self.draining})

    async def _ready(self, request: web.Request) -> web.Response:
        if self.ready_reason is None and not self.draining:
            return web.json_response({"ready": True})
        reason = "draining" if self.draining else self.ready_reason
        return web.json_response({"ready": False, "reason": reason}, status=503)


def _unlink(call: Call) -> None:
    """An ended call's transport (and a SIP call's media session) forget the call: the
    link back is a reference cycle (call -> transport -> call) that only a full garbage
    collection frees, and `serve` runs one every 5 minutes (`gateway.gc_pacing`), so each
    ended call's recogniser stream, barge-in detector and playout stayed in memory until
    then (about 110 KB a /ws call: 1.5 GB after 12,000 calls, benchmarks/soak.py)."""
    transport = getattr(call, "transport", None)
    for holder in (transport, getattr(transport, "media", None)):
        if holder is not None and getattr(holder, "call", None) is call:
            holder.call = None


def _redacted(value: object) -> object:
    """A setting's value for the log: URLs without the secrets they carry."""
    return redact_url(value) if isinstance(value, str) and "://" in value else value


def _url_host(host: str) -> str:
    """`host` as it goes in a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _bind_problem(what: str, host: str, port: int | None, exc: OSError, change: str,
                  host_change: str = "--host or ATOMS_HOST") -> str:
    """'HTTP port 8080 on 127.0.0.1 is already in use: ...' and the like."""
    code = exc.errno
    if code is None and isinstance(exc.__cause__, OSError):  # (uvloop's UDP bind)
        code = exc.__cause__.errno
    if code == errno.EADDRINUSE:
        return (f"{what} port {port} on {host} is already in use (by another program, or "
                f"another gateway); choose another with {change}")
    if code == errno.EACCES:
        return (f"{what} port {port} on {host} needs privileges (ports under 1024 need root "
                f"or CAP_NET_BIND_SERVICE); choose another with {change}")
    if code == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return (f"{what} cannot listen on {host}:{port}: {host} is not an address of this "
                f"machine; choose another with {host_change}")
    return f"{what} cannot listen on {host}:{port}: {exc.strerror or exc}"


def _engine_name(engine: Any) -> str:
    """The name of a speech engine given to the app ready-made (a test's fake, say)."""
    if engine is None:
        return "none"
    inner = getattr(engine, "engine", None)  # (CachedTTS)
    return type(inner if inner is not None else engine).__name__


async def hang_up(transport: Transport, reason: str) -> None:
    """Hang up for the gateway's own `reason` (shutdown, maximum duration) rather than the
    agent's: transports whose `hangup` takes a `reason` tell the far end."""
    if "reason" in inspect.signature(transport.hangup).parameters:
        await transport.hangup(reason=reason)  # type: ignore[call-arg]
    else:
        await transport.hangup()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (Linux, macOS): its C event loop and socket I/O cost
    measurably less per media frame; the standard loop elsewhere."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]+")
MAX_NAME_CHARS = 64  # of the caller's id in a recording's name
MAX_CALL_ID_CHARS = 128  # of a caller's id as a call shows it (`open_call`)


def recording_name(call_id: str, gateway_id: str) -> str:
    """A recording's file name (without extension): the caller's id reduced to
    `[A-Za-z0-9_-]` and `MAX_NAME_CHARS`, then the gateway's own unique id. Never a path:
    no separator, no dot, no NUL can come through, whatever the caller sent."""
    safe = _UNSAFE_NAME.sub("_", call_id)[:MAX_NAME_CHARS].strip("_")
    if not safe or call_id == gateway_id:
        return gateway_id
    return f"{safe}-{gateway_id}"

