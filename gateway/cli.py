"""`atoms-gateway` command line: `serve` the gateway, `replay` a recorded call."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import sys
from collections.abc import Callable
from typing import Any


def load_handler(spec: str) -> Callable[..., Any]:
    """Import `module:function` (or `path/to/file.py:function`)."""
    module_name, _, attr = spec.partition(":")
    attr = attr or "setup"
    if module_name.endswith(".py"):
        import pathlib

        path = pathlib.Path(module_name).resolve()
        mod_spec = importlib.util.spec_from_file_location(path.stem, path)
        if mod_spec is None or mod_spec.loader is None:
            raise SystemExit(f"cannot load {module_name}")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[path.stem] = module
        mod_spec.loader.exec_module(module)
    else:
        sys.path.insert(0, ".")
        module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise SystemExit(f"{module_name} has no {attr!r}") from None


def _serve(args: argparse.Namespace) -> None:
    from gateway.app import AtomsApp

    handler = load_handler(args.app) if args.app else None
    settings = {
        "public_url": args.public_url,
        "max_calls": args.max_calls,
        "ws_token": args.ws_token,
        "twilio_auth_token": args.twilio_auth_token,
        "audiosocket_port": args.audiosocket_port,
        "record_dir": args.record_dir,
        "agent_url": args.agent_url,
        "idle_timeout": args.idle_timeout,
        "max_call_duration": args.max_call_duration,
        "max_agent_audio": args.max_agent_audio,
        "drain_timeout": args.drain_timeout,
        "sip_port": args.sip_port,
        "sip_host": args.sip_host,
        "sip_advertise": args.sip_advertise,
        "sip_allow": args.sip_allow.split(",") if args.sip_allow else None,
        "sip_user": args.sip_user,
        "sip_password": args.sip_password,
        "sip_ring_ms": args.sip_ring_ms,
        "stt": args.stt,
        "stt_url": args.stt_url,
        "tts": args.tts,
        "tts_url": args.tts_url,
    }
    if args.rtp_ports:
        low, _, high = args.rtp_ports.partition("-")
        settings["rtp_port_min"], settings["rtp_port_max"] = int(low), int(high or low)
    app = AtomsApp(setup_handler=handler, **{k: v for k, v in settings.items() if v is not None})
    try:
        app.load_engines()  # a missing engine or key stops here with its message
    except RuntimeError as exc:
        raise SystemExit(f"atoms-gateway serve: {exc}") from None
    app.run(args.host, args.port)


def _replay(args: argparse.Namespace) -> None:
    import wave

    from gateway.testing import replay

    handler = load_handler(args.app) if args.app else None
    try:
        result = replay(args.wav, app=handler, agent_channel=args.agent_channel)
    except (OSError, EOFError, wave.Error, ValueError) as exc:
        raise SystemExit(f"atoms-gateway replay: cannot replay {args.wav}: {type(exc).__name__} {exc}") from None
    sys.stdout.write(result.describe() + "\n")
    if args.report:
        with open(args.report, "w") as fh:
            json.dump(result.report(), fh, indent=2)
    if args.plot:
        result.plot(args.plot)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="atoms-gateway", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="answer calls (default app: the offline demo agent)")
    serve.add_argument("app", nargs="?", help="module:setup of your agent")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--public-url", default=None, help="https://host as callers reach it")
    serve.add_argument("--max-calls", type=int, default=None)
    serve.add_argument("--ws-token", default=None, help="bearer token required on /ws")
    serve.add_argument("--twilio-auth-token", default=None)
    serve.add_argument("--audiosocket-port", type=int, default=None)
    serve.add_argument("--agent-url", default=None, help="ws://host:port/ws of an agent server")
    serve.add_argument("--record-dir", default=None, help="write a WAV + timeline per call")
    serve.add_argument("--idle-timeout", type=float, default=None)
    serve.add_argument("--drain-timeout", type=float, default=None)
    serve.add_argument("--max-call-duration", type=float, default=None,
                       help="hang up calls after this many seconds (default 3600)")
    serve.add_argument("--max-agent-audio", type=float, default=None,
                       help="seconds of agent.audio a call may have queued; more is dropped "
                            "(default 60)")
    serve.add_argument("--sip-port", type=int, default=None,
                       help="answer SIP (UDP and TCP) on this port; off when not set")
    serve.add_argument("--sip-host", default=None, help="address SIP and RTP bind to")
    serve.add_argument("--sip-advertise", default=None,
                       help="address put in Contact and SDP (the public IP behind NAT)")
    serve.add_argument("--rtp-ports", default=None, help="RTP port range, e.g. 20000-30000")
    serve.add_argument("--sip-allow", default=None,
                       help="comma-separated CIDRs allowed to send SIP (default: all)")
    serve.add_argument("--sip-user", default=None, help="digest auth user for INVITE")
    serve.add_argument("--sip-password", default=None, help="digest auth password")
    serve.add_argument("--sip-ring-ms", type=int, default=None,
                       help="send 180 Ringing and wait this long before answering")
    serve.add_argument("--stt", default=None,
                       choices=["pocketsphinx", "deepgram", "openai", "pulse"],
                       help="speech recogniser (deepgram needs DEEPGRAM_API_KEY, openai "
                            "OPENAI_API_KEY or --stt-url, pulse SMALLEST_API_KEY)")
    serve.add_argument("--stt-url", default=None,
                       help="Deepgram endpoint, e.g. ws://127.0.0.1:8765/v1/listen; openai: a "
                            "compatible server, e.g. http://127.0.0.1:8000/v1")
    serve.add_argument("--tts", default=None, choices=["espeak", "piper", "openai", "waves"],
                       help="speech synthesiser (piper: pip install 'atoms-gateway[piper]'; "
                            "openai needs OPENAI_API_KEY or --tts-url, waves SMALLEST_API_KEY)")
    serve.add_argument("--tts-url", default=None,
                       help="openai: a compatible speech server, e.g. http://127.0.0.1:8880/v1;"
                            " waves: its WebSocket URL")
    serve.set_defaults(func=_serve)

    rep = sub.add_parser("replay", help="run a recorded call through the voice loop")
    rep.add_argument("wav")
    rep.add_argument("--app", default=None, help="module:setup (default: the demo agent)")
    rep.add_argument("--agent-channel", action="store_true",
                     help="stereo file: play the right channel as the agent instead of an app")
    rep.add_argument("--report", default=None, help="write a JSON report here")
    rep.add_argument("--plot", default=None, help="write a PNG plot here")
    rep.set_defaults(func=_replay)

    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.func(args)


if __name__ == "__main__":
    main()
