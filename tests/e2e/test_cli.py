"""Smoke test of the real command line: `atoms-gateway serve` in a subprocess answers a
Twilio call with the demo greeting and exits cleanly on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import shutil
import signal
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.harness import HOST, rms_dbfs
from tests.kit.clients import TwilioClient
from tests.kit.serve_process import CLI, serving, wait_url_ready
from tests.kit.serve_process import free_tcp_port as free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not CLI.exists(), reason="atoms-gateway is not installed in this venv")
async def test_serve_answers_a_call_and_stops_on_sigterm(tmp_path):
    sip_port = free_port()
    log = tmp_path / "serve.log"
    async with serving(log, "--sip-port", str(sip_port)) as port:
        # --host is the address of every listener without one of its own (SIP here)
        assert f"SIP listening on {HOST}:{sip_port}" in log.read_text(errors="replace")
        client = TwilioClient(HOST, port)
        await client.connect()
        await client.start()
        client.start_mic()
        await client.wait_audio(1.0)
        assert not client.problems
        pcm = np.concatenate([f.pcm for f in client.agent_frames])
        assert rms_dbfs(pcm) > -35
        await client.hangup_and_wait()
        assert client.closed.is_set()
        await client.close()


@pytest.mark.skipif(not CLI.exists(), reason="atoms-gateway is not installed in this venv")
async def test_sigterm_drains_a_call_with_a_nul_byte_in_its_id(tmp_path):
    """A caller's id with a NUL byte once made `end_call` raise: the call kept its slot
    and SIGTERM exited 1 at once. Now the call is hung up, recorded under a safe name and
    the process exits 0."""
    folder = tmp_path / "rec"
    async with serving(tmp_path / "serve.log", "--record-dir", str(folder),
                       "--drain-timeout", "0.5") as port:
        client = TwilioClient(HOST, port, call_id="CA\x00nul/../x")
        await client.connect()
        await client.start()
        client.start_mic()
        await client.wait_audio(0.5)
    await asyncio.wait_for(client.closed.wait(), 5)
    await client.close()
    assert [p.suffix for p in sorted(folder.iterdir())] == [".json", ".wav"]


# -- the command line a new user meets (issue 25, items 2 and 3) ---------------------------

needs_cli = pytest.mark.skipif(not CLI.exists(), reason="atoms-gateway is not installed in this venv")
PROVIDERS = ("twilio", "telnyx", "plivo", "exotel", "vonage")


async def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT,
                  program: tuple[str, ...] = (str(CLI),), timeout: float = 60.0
                  ) -> tuple[int | None, str, str]:
    """Run the command to its end: (exit code, stdout, stderr); never a traceback."""
    proc = await asyncio.create_subprocess_exec(
        *program, *args, cwd=cwd, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert b"Traceback" not in out + err, err.decode(errors="replace")[-2000:]
    return proc.returncode, out.decode(), err.decode()


async def wait_for_line(log: Path, text: str, timeout: float = 10.0) -> str:
    """The log's text once it holds `text` (another process writes it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        content = log.read_text(errors="replace")
        if text in content:
            return content
        await asyncio.sleep(0.05)
    raise AssertionError(f"{text!r} not in {log}:\n{log.read_text(errors='replace')[-2000:]}")


def test_every_flag_has_help_that_shows_its_default():
    from gateway.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parsers = [parser, *commands.choices.values()]
    checked = 0
    for p in parsers:
        for action in p._actions:
            if isinstance(action, argparse._HelpAction | argparse._VersionAction
                          | argparse._SubParsersAction) or action.dest == "wav":
                continue
            assert action.help and "default" in action.help, (p.prog, action.option_strings)
            checked += 1
    assert checked > 30


@needs_cli
async def test_version_help_and_make_serve_flags():
    code, out, _ = await run_cli("--version")
    assert (code, out.strip()) == (0, f"atoms-gateway {importlib.metadata.version('atoms-gateway')}")
    code, out, _ = await run_cli("serve", "--help")
    text = " ".join(out.split())
    assert code == 0
    assert "--port N HTTP and WebSocket port, 0 for any free one (default: 8080; env ATOMS_PORT)" in text
    assert "--log-level LEVEL" in text
    if shutil.which("make"):
        proc = await asyncio.create_subprocess_exec(
            "make", "-n", "serve", "ARGS=--sip-port 5060 mymodule:setup", cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        made, _ = await proc.communicate()
        assert ".venv/bin/atoms-gateway serve --sip-port 5060 mymodule:setup" in made.decode()


@needs_cli
async def test_start_up_lines_say_where_to_go(tmp_path):
    """`serve --log-level debug` is accepted, and the start-up lines give the demo page's
    URL with the listen host, every listener and the engines in use."""
    sip_port, audiosocket_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    async with serving(log, "--sip-port", str(sip_port), "--audiosocket-port",
                       str(audiosocket_port), "--log-level", "debug") as port:
        text = log.read_text(errors="replace")
        base, ws = f"http://{HOST}:{port}", f"ws://{HOST}:{port}"
        lines = {line.split(": ", 1)[1] for line in text.splitlines()
                 if " INFO gateway.app: " in line}
        assert f"demo page: {base}/" in lines
        assert f"web clients and Atoms orchestrators: {ws}/ws" in lines
        assert f"WebRTC: POST {base}/webrtc/offer" in lines
        assert (f"Twilio: webhook {base}/twilio/voice, stream {ws}/twilio/stream") in lines
        for provider in PROVIDERS[1:]:
            assert any(line.startswith(f"{provider.capitalize()}: webhook {base}/{provider}/")
                       and line.endswith(f"stream {ws}/{provider}/stream") for line in lines)
        assert f"SIP: {HOST}:{sip_port}" in lines
        assert f"AudioSocket: {HOST}:{audiosocket_port}" in lines
        assert "agent: gateway.demo:setup (the offline demo agent)" in lines
        assert any(line.startswith("speech recognition: pocketsphinx (offline, a grammar of ")
                   for line in lines)
        assert "text-to-speech: espeak (en-us)" in lines
        assert "DEBUG gateway.app: settings: host='127.0.0.1', " in text  # the level took


MISTAKES = [
    (["serve", "--max-calls", "-1"], {}, 1, "atoms-gateway serve: --max-calls -1: must be 0 or more"),
    (["serve", "--drain-timeout", "-0.5"], {}, 1,
     "atoms-gateway serve: --drain-timeout -0.5: must be 0 or more"),
    (["serve"], {"ATOMS_MAX_CALLS": "lots"}, 1,
     "atoms-gateway serve: ATOMS_MAX_CALLS='lots': not a whole number"),
    (["serve"], {"ATOMS_IDLE_TIMEOUT": "-5"}, 1,
     "atoms-gateway serve: ATOMS_IDLE_TIMEOUT=-5.0: must be more than 0"),
    (["serve", "--log-level", "loud"], {}, 2,
     "atoms-gateway serve: error: argument --log-level: 'loud' is not a log level; use debug, "
     "info, warning, error, critical (see atoms-gateway serve --help)"),
    (["serve"], {"ATOMS_LOG_LEVEL": "loud"}, 1,
     "atoms-gateway serve: ATOMS_LOG_LEVEL='loud': unknown log level: use debug, info, "
     "warning, error, critical"),
    (["--log-level", "shout", "replay", "x.wav"], {}, 2,
     "atoms-gateway: error: argument --log-level: 'shout' is not a log level; use debug, "
     "info, warning, error, critical (see atoms-gateway --help)"),
    (["serve", "mymodlue:setup"], {}, 1,
     "atoms-gateway serve: 'mymodlue:setup': no module named 'mymodlue' (check the spelling; "
     "run from the folder that holds it, or give its path: path/to/file.py:setup)"),
    (["serve", "--rtp-ports", "20000:30000"], {}, 2,
     "atoms-gateway serve: error: argument --rtp-ports: '20000:30000' is not a port range; "
     "give LOW-HIGH, e.g. 20000-30000 (see atoms-gateway serve --help)"),
]


@needs_cli
async def test_mistakes_are_one_line_naming_what_to_fix():
    results = await asyncio.gather(*(run_cli(*args, env=env) for args, env, _, _ in MISTAKES))
    for (args, env, code, line), (got_code, out, err) in zip(MISTAKES, results, strict=True):
        assert (got_code, err.strip()) == (code, line), (args, env)
        assert out == ""


@needs_cli
async def test_a_function_typo_lists_what_the_module_has(tmp_path):
    (tmp_path / "myagent.py").write_text("async def setup(session):\n    pass\n")
    (tmp_path / "broken.py").write_text("import nosuchpackage_xyz\n")
    (code, _, err), (code2, _, err2), (code3, _, err3) = await asyncio.gather(
        run_cli("serve", "myagent:stup", cwd=tmp_path),
        run_cli("serve", "myagent.py:setpu", cwd=tmp_path),
        run_cli("serve", "broken:setup", cwd=tmp_path))
    assert (code, err.strip()) == (1, "atoms-gateway serve: 'myagent:stup': myagent has no "
                                      "'stup' (async functions there: setup)")
    assert (code2, err2.strip()) == (1, "atoms-gateway serve: 'myagent.py:setpu': myagent.py "
                                        "has no 'setpu' (async functions there: setup)")
    assert (code3, err3.strip()) == (
        1, "atoms-gateway serve: 'broken:setup': importing broken failed: No module named "
           "'nosuchpackage_xyz' (pip install the package that provides nosuchpackage_xyz?)")


@needs_cli
@pytest.mark.parametrize("listener", ["HTTP", "SIP", "AudioSocket"])
async def test_a_port_in_use_is_one_line_naming_the_port(listener):
    """Another program holds the port (a real socket on 127.0.0.1): one error line that
    names the port and the flag, exit 1, no traceback."""
    kind = socket.SOCK_DGRAM if listener == "SIP" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as held:
        held.bind((HOST, 0))
        if kind == socket.SOCK_STREAM:
            held.listen()
        taken = held.getsockname()[1]
        flags = {"HTTP": ["--port", str(taken)],
                 "SIP": ["--port", "0", "--sip-port", str(taken)],
                 "AudioSocket": ["--port", "0", "--audiosocket-port", str(taken)]}[listener]
        code, out, err = await run_cli("serve", "--host", HOST, *flags, "--log-level", "warning")
    flag = {"HTTP": "--port or ATOMS_PORT", "SIP": "--sip-port or ATOMS_SIP_PORT",
            "AudioSocket": "--audiosocket-port or ATOMS_AUDIOSOCKET_PORT"}[listener]
    assert code == 1
    assert err.strip().endswith(
        f"ERROR gateway.app: cannot start: {listener} port {taken} on {HOST} is already in use "
        f"(by another program, or another gateway); choose another with {flag}"), err
    assert len(err.strip().splitlines()) == 1, err


@needs_cli
async def test_plot_without_matplotlib_names_the_extra(tmp_path):
    (tmp_path / "matplotlib.py").write_text("raise ImportError('No module named matplotlib')\n")
    code, _, err = await run_cli("replay", "call.wav", "--plot", str(tmp_path / "out.png"),
                                 env={"PYTHONPATH": str(tmp_path)})
    assert (code, err.strip()) == (1, "atoms-gateway replay: --plot needs matplotlib, which is "
                                      "not installed: pip install 'atoms-gateway[plot]'")


MODULE = '''\
import sys

from agent.nodes import OutputAgentNode
from agent.session import AgentSession
from gateway import AtomsApp


class Hello(OutputAgentNode):
    async def generate_response(self):
        yield "hello"


async def setup(session: AgentSession) -> None:
    session.add_node(Hello(name="hello"))
    await session.start()
    await session.wait_until_complete()


if __name__ == "__main__":
    AtomsApp(setup_handler=setup, stt_phrases=["hello"]).run("127.0.0.1", int(sys.argv[1]))
'''


@needs_cli
async def test_python_mymodule_run_logs_like_serve(tmp_path):
    """`AtomsApp(...).run()` from `python mymodule.py`: the start-up lines appear as with
    `serve`, SIGTERM stops it with exit 0; a second copy on the same port says the port is
    in use in one line and exits 1."""
    (tmp_path / "mymodule.py").write_text(MODULE)
    port = free_port()
    log = tmp_path / "run.log"
    python = (sys.executable, str(tmp_path / "mymodule.py"))
    with open(log, "wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *python, str(port), cwd=tmp_path, stdout=out, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        await wait_url_ready(f"http://{HOST}:{port}/ready", proc)
        text = log.read_text(errors="replace")
        assert f"INFO gateway.app: demo page: http://{HOST}:{port}/" in text
        assert "INFO gateway.app: agent: __main__:setup" in text
        code, _, err = await run_cli(str(port), program=python, cwd=tmp_path)
        assert code == 1
        assert err.strip().endswith(f"HTTP port {port} on {HOST} is already in use (by another "
                                    "program, or another gateway); choose another with --port "
                                    "or ATOMS_PORT"), err
        assert [line for line in err.splitlines() if " ERROR " in line] == [err.strip().splitlines()[-1]]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = log.read_text(errors="replace")
    assert "INFO gateway.app: shutting down" in text and "Traceback" not in text
