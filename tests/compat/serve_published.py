"""Serve an agent of `tests/compat/agents/` with the published SDK's own `AtomsApp`, in its
own process (so a test can kill it): `python -m tests.compat.serve_published NAME PORT`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    from loguru import logger

    from tests.compat.porting import load_agent

    name, port = sys.argv[1], int(sys.argv[2])
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    module = load_agent(name, "published")
    from smallestai.atoms.agent.server import AtomsApp

    AtomsApp(setup_handler=module.setup).run(host="127.0.0.1", port=port,
                                             log_level="warning")


@contextlib.asynccontextmanager
async def published_server_process(name: str,
                                   port: int) -> AsyncIterator[subprocess.Popen[bytes]]:
    """Start the server process; yields it once its port accepts connections."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.compat.serve_published", name,
                             str(port)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"agent server exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("agent server did not start listening within 20 s")
            await asyncio.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


if __name__ == "__main__":
    main()
