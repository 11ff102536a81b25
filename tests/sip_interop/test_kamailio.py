"""Kamailio's dispatcher (the config in sip_examples/kamailio/) in front of two gateway
instances on 127.0.0.1: calls are spread over both, and BYE goes through the proxy."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.sip_interop.helpers import (
    LOCALHOST,
    SCENARIOS,
    free_port,
    require,
    run_sipp,
    start_gateway,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)
CONFIG = SCENARIOS.parent / "kamailio" / "kamailio.cfg"


def kamailio_config(tmp_path: Path, port: int, gateways: list[int]) -> Path:
    """The example config, listening on 127.0.0.1:`port`, dispatching to `gateways`."""
    listed = tmp_path / "dispatcher.list"
    listed.write_text("".join(f"1 sip:{LOCALHOST}:{p}\n" for p in gateways))
    text = CONFIG.read_text()
    assert "listen=udp:0.0.0.0:5060" in text and "/etc/kamailio/dispatcher.list" in text
    text = text.replace("listen=udp:0.0.0.0:5060", f"listen=udp:{LOCALHOST}:{port}")
    text = text.replace("/etc/kamailio/dispatcher.list", str(listed))
    cfg = tmp_path / "kamailio.cfg"
    cfg.write_text(text)
    return cfg


async def test_kamailio_spreads_calls_over_two_gateways(tmp_path: Path) -> None:
    kamailio = require("kamailio")
    first = await start_gateway()
    second = await start_gateway()
    proc = None
    try:
        port = free_port()
        cfg = kamailio_config(tmp_path, port, [first.sip_port, second.sip_port])
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        proc = await asyncio.create_subprocess_exec(
            kamailio, "-f", str(cfg), "-DD", "-E", "-Y", str(run_dir),
            "-P", str(run_dir / "kamailio.pid"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        probe = await run_sipp("uac_options", port, tmp_path, timeout=15)  # the proxy is up
        assert probe.returncode == 0, probe.explain()

        result = await run_sipp("uac_short_call", port, tmp_path, extra=["-m", "2", "-l", "1"],
                                timeout=40)
        assert result.returncode == 0, result.explain()
        assert len(first.opened) == 1 and len(second.opened) == 1
        await wait_for(lambda: not first.calls and not second.calls, 10,
                       "both calls to end with the BYE relayed by Kamailio")
        for app in (first, second):
            ctx = app.opened[0].session.context  # type: ignore[attr-defined]
            assert ctx["user_number"] == "+15551230005"
            assert ctx["remote_addr"] == f"{LOCALHOST}:{port}"  # it came through the proxy
    finally:
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await first.stop(drain_timeout=0)
        await second.stop(drain_timeout=0)
