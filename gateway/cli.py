"""`atoms-gateway` command line: `serve` the gateway, `replay` a recorded call."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn, cast

from gateway.settings import (
    LOG_FORMATS,
    LOG_LEVELS,
    STT_ENGINES,
    TTS_ENGINES,
    SettingError,
    Settings,
    configure_logging,
)


class UsageError(Exception):
    """A mistake the user can fix, reported as one line (no traceback)."""


def load_handler(spec: str) -> Callable[..., Any]:
    """Import `module:function` (or `path/to/file.py:function`; the function defaults to
    `setup`). A module or function that is not there raises `UsageError` naming it."""
    module_name, _, attr = spec.partition(":")
    attr = attr or "setup"
    if not module_name:
        raise UsageError(f"{spec!r}: give the module, as module:setup or path/to/file.py:setup")
    if module_name.endswith(".py"):
        import pathlib

        path = pathlib.Path(module_name).resolve()
        if not path.is_file():
            raise UsageError(f"{spec!r}: there is no file {module_name}")
        mod_spec = importlib.util.spec_from_file_location(path.stem, path)
        if mod_spec is None or mod_spec.loader is None:
            raise UsageError(f"{spec!r}: cannot load {module_name} as a module")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[path.stem] = module
        _import_or_explain(spec, lambda: mod_spec.loader.exec_module(module))  # type: ignore[union-attr]
    else:
        sys.path.insert(0, ".")
        found: list[Any] = []
        _import_or_explain(spec, lambda: found.append(importlib.import_module(module_name)))
        module = found[0]
    handler = getattr(module, attr, None)
    if handler is None:
        options = sorted(n for n, v in vars(module).items()
                         if inspect.iscoroutinefunction(v) and not n.startswith("_"))
        hint = f" (async functions there: {', '.join(options)})" if options else ""
        raise UsageError(f"{spec!r}: {module_name} has no {attr!r}{hint}")
    if not callable(handler):
        raise UsageError(f"{spec!r}: {module_name}.{attr} is not a function")
    return cast(Callable[..., Any], handler)


def _import_or_explain(spec: str, load: Callable[[], Any]) -> None:
    """Run `load` (an import); turn a missing module or a broken one into a `UsageError`."""
    module_name = spec.partition(":")[0]
    try:
        load()
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise UsageError(
                f"{spec!r}: no module named {missing!r} (check the spelling; run from the "
                "folder that holds it, or give its path: path/to/file.py:setup)") from None
        raise UsageError(f"{spec!r}: importing {module_name} failed: {exc} (pip install "
                         f"the package that provides {missing or 'it'}?)") from None
    except SyntaxError as exc:
        raise UsageError(f"{spec!r}: {exc.msg} ({exc.filename}, line {exc.lineno})") from None
    except Exception as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        raise UsageError(f"{spec!r}: importing {module_name} failed: {type(exc).__name__}: "
                         f"{exc} ({where.filename}, line {where.lineno})") from None


# `serve` flags that set an `AtomsApp` setting: (flag, setting, type, help). The help
# gets the setting's default and its ATOMS_* variable appended.
_SERVE_FLAGS: list[tuple[str, str, Callable[[str], Any], str]] = [
    ("--host", "host", str, "address every listener binds to (SIP can have its own)"),
    ("--port", "port", int, "HTTP and WebSocket port, 0 for any free one"),
    ("--public-url", "public_url", str,
     "https://host as callers reach it, for provider webhooks' stream URLs (default: from "
     "the Host header)"),
    ("--max-calls", "max_calls", int, "calls at once; more are refused cleanly"),
    ("--ws-token", "ws_token", str,
     "bearer token required on /ws and /webrtc (default: none, open)"),
    ("--providers", "providers", lambda text: [p.strip().lower() for p in text.split(",")
                                               if p.strip()],
     "comma-separated providers whose webhook and stream routes are served, or none "
     "(default: twilio,telnyx,plivo,exotel,vonage)"),
    ("--twilio-auth-token", "twilio_auth_token", str,
     "check X-Twilio-Signature with this token, 403 when wrong"),
    ("--telnyx-public-key", "telnyx_public_key", str,
     "check Telnyx's Ed25519 webhook signature with this public key (base64), and give "
     "the stream a per-call token"),
    ("--plivo-auth-token", "plivo_auth_token", str,
     "check X-Plivo-Signature-V3 with this auth token, and give the stream a per-call token"),
    ("--vonage-signature-secret", "vonage_signature_secret", str,
     "check Vonage's signed webhooks (JWT) with this secret, and give the stream a "
     "per-call token"),
    ("--exotel-token", "exotel_token", str,
     "require ?token=THIS on Exotel's answer URL (or its stream URL); the stream gets a "
     "per-call token"),
    ("--audiosocket-port", "audiosocket_port", int,
     "answer Asterisk AudioSocket on this TCP port, 0 for any free one"),
    ("--agent-url", "agent_url", str,
     "run no agent here: connect each call to this agent server, ws://host:port/ws "
     "(default: none, agents run here)"),
    ("--record-dir", "record_dir", str, "write a WAV and a JSON timeline per call here"),
    ("--idle-timeout", "idle_timeout", float,
     "seconds without caller audio or messages before a call is closed"),
    ("--drain-timeout", "drain_timeout", float,
     "seconds active calls may finish after SIGTERM"),
    ("--max-call-duration", "max_call_duration", float,
     "hang up calls after this many seconds, 0 for no limit"),
    ("--max-agent-audio", "max_agent_audio", float,
     "seconds of agent audio a call may have queued; more agent.audio is dropped"),
    ("--sip-port", "sip_port", int, "answer SIP, UDP and TCP, on this port, 0 for any free one"),
    ("--sip-host", "sip_host", str, "address SIP and RTP bind to (default: --host)"),
    ("--sip-advertise", "sip_advertise", str,
     "address put in Contact and SDP, the public IP behind NAT (default: the bound address)"),
    ("--sip-allow", "sip_allow", lambda text: [c.strip() for c in text.split(",") if c.strip()],
     "comma-separated CIDRs allowed to send SIP (default: all)"),
    ("--sip-user", "sip_user", str,
     "digest authentication user for INVITE (default: none, no authentication)"),
    ("--sip-password", "sip_password", str, "digest authentication password (default: none)"),
    ("--sip-ring-ms", "sip_ring_ms", int, "send 180 Ringing and wait this long before answering"),
    ("--stt", "stt", str,
     "speech recogniser: pocketsphinx (offline), deepgram (needs DEEPGRAM_API_KEY), openai "
     "(OPENAI_API_KEY or --stt-url) or pulse (SMALLEST_API_KEY)"),
    ("--stt-url", "stt_url", str,
     "deepgram/pulse: the endpoint, e.g. ws://127.0.0.1:8765/v1/listen; openai: a "
     "compatible server, e.g. http://127.0.0.1:8000/v1 (default: the engine's own)"),
    ("--tts", "tts", str,
     "speech synthesiser: espeak, piper (pip install 'atoms-gateway[piper]'), openai "
     "(OPENAI_API_KEY or --tts-url) or waves (SMALLEST_API_KEY)"),
    ("--tts-url", "tts_url", str,
     "openai: a compatible speech server, e.g. http://127.0.0.1:8880/v1; waves: its "
     "WebSocket URL (default: the engine's own)"),
]
_CHOICES = {"stt": STT_ENGINES, "tts": TTS_ENGINES}


def _flag_help(text: str, name: str) -> str:
    """`text` with the setting's default and its ATOMS_* variable: '(default: 500; env
    ATOMS_MAX_CALLS)'. A text that ends by saying its default keeps it."""
    env = f"env ATOMS_{name.upper()}"
    if text.endswith(")") and "(default:" in text:
        return f"{text[:-1]}; {env})".replace("%", "%%")
    f = next(f for f in dataclasses.fields(Settings) if f.name == name)
    value = f.default if f.default is not dataclasses.MISSING else None
    shown = "off" if value in (None, []) else value
    return f"{text} (default: {shown}; {env})".replace("%", "%%")


def _port_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port range; give LOW-HIGH, e.g. 20000-30000") from None


def _log_level(text: str) -> str:
    if text.strip().lower() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a log level; use {', '.join(LOG_LEVELS)}")
    return text.strip().lower()


def _serve(args: argparse.Namespace) -> None:
    from gateway.app import AtomsApp

    handler = load_handler(args.app) if args.app else None
    settings: dict[str, Any] = {name: getattr(args, name) for _, name, _, _ in _SERVE_FLAGS}
    if args.rtp_ports:
        settings["rtp_port_min"], settings["rtp_port_max"] = args.rtp_ports
    if args.log_level:
        settings["log_level"] = args.log_level
    if args.log_format:
        settings["log_format"] = args.log_format
    if args.log_redact:
        settings["log_redact"] = True
    if args.insecure:
        settings["insecure"] = True
    try:
        app = AtomsApp(setup_handler=handler,
                       **{k: v for k, v in settings.items() if v is not None})
    except SettingError as exc:
        raise UsageError(_setting_problem(exc)) from None
    try:
        app.load_engines()  # a missing engine or key stops here with its message
    except RuntimeError as exc:
        raise UsageError(str(exc)) from None
    app.run()  # (a port in use: one log line, exit 1)


def _setting_problem(exc: SettingError) -> str:
    """A bad setting, named as the user gave it: the flag, or the ATOMS_* variable."""
    flags = {name: flag for flag, name, _, _ in _SERVE_FLAGS}
    flags.update(rtp_port_min="--rtp-ports", rtp_port_max="--rtp-ports",
                 log_level="--log-level", log_format="--log-format")
    if exc.env or exc.name not in flags:
        return str(exc)
    value = exc.value
    if isinstance(value, list):
        value = ",".join(map(str, value))
    return f"{flags[exc.name]} {value}: {exc.problem}"


def _replay(args: argparse.Namespace) -> None:
    import wave

    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("--plot needs matplotlib, which is not installed: "
                             "pip install 'atoms-gateway[plot]'") from None
    from gateway.testing import replay

    handler = load_handler(args.app) if args.app else None
    try:
        result = replay(args.wav, app=handler, agent_channel=args.agent_channel)
    except (OSError, EOFError, wave.Error, ValueError) as exc:
        raise UsageError(f"cannot replay {args.wav}: {type(exc).__name__} {exc}") from None
    sys.stdout.write(result.describe() + "\n")
    if args.report:
        with open(args.report, "w") as fh:
            json.dump(result.report(), fh, indent=2)
    if args.plot:
        result.plot(args.plot)


class _Parser(argparse.ArgumentParser):
    """Reports a mistake on the command line in one line, not after the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _version() -> str:
    try:
        return importlib.metadata.version("atoms-gateway")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The `atoms-gateway` parser: `serve` and `replay`, `--version`, `--log-level`."""
    parser = _Parser(prog="atoms-gateway", description=__doc__,
                     epilog="Each command has its own --help.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    level_help = (f"log level: {', '.join(LOG_LEVELS)} (default: info; env ATOMS_LOG_LEVEL)")
    parser.add_argument("--log-level", type=_log_level, default=None, metavar="LEVEL",
                        help=level_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve", help="answer calls (default app: the offline demo agent)",
        description="Answer calls: provider media streams, /ws, WebRTC, and SIP and "
                    "AudioSocket when their ports are set. Flags win over ATOMS_* variables.")
    serve.add_argument("app", nargs="?", metavar="module:setup",
                       help="your agent's setup function, as module:function or "
                            "path/to/file.py:function (default: the offline demo agent)")
    for flag, name, kind, text in _SERVE_FLAGS:
        serve.add_argument(flag, dest=name, type=kind, default=None,
                           metavar=_metavar(kind, name), help=_flag_help(text, name))
    serve.add_argument("--rtp-ports", type=_port_range, default=None, metavar="LOW-HIGH",
                       help="RTP port range, e.g. 20000-30000 (default: 20000-30000; env "
                            "ATOMS_RTP_PORT_MIN, ATOMS_RTP_PORT_MAX)")
    serve.add_argument("--insecure", action="store_true",
                       help="listen on an address other than loopback even with routes "
                            "that have no credential set (each is logged); without it "
                            "the gateway refuses (default: off; env ATOMS_INSECURE=1)")
    serve.add_argument("--log-level", type=_log_level, default=argparse.SUPPRESS,
                       metavar="LEVEL", help=level_help)
    serve.add_argument("--log-format", choices=LOG_FORMATS, default=None,
                       help="text lines, or json: one JSON object per line for log shippers "
                            "(default: text; env ATOMS_LOG_FORMAT)")
    serve.add_argument("--log-redact", action="store_true", default=None,
                       help="conversation log lines without what the caller and the agent "
                            "said (default: off; env ATOMS_LOG_REDACT=1)")
    serve.set_defaults(func=_serve)

    rep = sub.add_parser("replay", help="run a recorded call through the voice loop",
                         description="Replay a recorded call (WAV) through the voice loop "
                                     "under a virtual clock and report its interrupts.")
    rep.add_argument("wav", help="the recording: mono (the caller), or stereo with "
                                 "--agent-channel")
    rep.add_argument("--app", default=None, metavar="module:setup",
                     help="your agent's setup function (default: the demo agent)")
    rep.add_argument("--agent-channel", action="store_true",
                     help="stereo file: play the right channel as the agent instead of an app "
                          "(default: off)")
    rep.add_argument("--report", default=None, metavar="PATH",
                     help="write a JSON report here (default: none)")
    rep.add_argument("--plot", default=None, metavar="PATH",
                     help="write a PNG plot here; needs matplotlib, pip install "
                          "'atoms-gateway[plot]' (default: none)")
    rep.add_argument("--log-level", type=_log_level, default=argparse.SUPPRESS,
                     metavar="LEVEL", help=level_help)
    rep.set_defaults(func=_replay)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    prog = f"atoms-gateway {args.command}"
    level = args.log_level or os.environ.get("ATOMS_LOG_LEVEL") or "info"
    if level.strip().lower() not in LOG_LEVELS:
        _fail(prog, f"ATOMS_LOG_LEVEL={level!r}: unknown log level: use "
                    f"{', '.join(LOG_LEVELS)}")
    fmt = getattr(args, "log_format", None) or os.environ.get("ATOMS_LOG_FORMAT") or "text"
    configure_logging(level, fmt if fmt.strip().lower() in LOG_FORMATS else "text")
    try:
        args.func(args)
    except UsageError as exc:
        _fail(prog, str(exc))


def _metavar(kind: Callable[[str], Any], name: str) -> str:
    if name in _CHOICES:
        return "{" + ",".join(_CHOICES[name]) + "}"
    names = {"sip_advertise": "ADDRESS", "sip_allow": "CIDRS", "sip_host": "ADDRESS",
             "host": "ADDRESS", "providers": "NAMES", "telnyx_public_key": "KEY",
             "vonage_signature_secret": "SECRET"}
    if name in names:
        return names[name]
    if kind is int:
        return "N"
    if kind is float:
        return "SECONDS"
    return name.rsplit("_", 1)[-1].upper()


def _fail(prog: str, message: str) -> NoReturn:
    """The command's one error line, on stderr, and exit status 1."""
    sys.stderr.write(f"{prog}: {message}\n")
    raise SystemExit(1)


if __name__ == "__main__":
    main()
