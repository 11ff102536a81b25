"""Kamailio's dispatcher (the config in sip_examples/kamailio/) in front of two gateway
instances on 127.0.0.1: calls are spread over both, and BYE goes through the proxy."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sip_interop.helpers import (
    LOCALHOST,
    free_port,
    run_sipp,
    start_gateway,
    start_kamailio,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)


async def test_kamailio_spreads_calls_over_two_gateways(tmp_path: Path) -> None:
    first = await start_gateway()
    second = await start_gateway()
    proc = None
    try:
        port = free_port()
        proc = await start_kamailio(tmp_path, port, [first.sip_port, second.sip_port],
                                    log=tmp_path / "kamailio.log")

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
        await stop_process(proc)
        await first.stop(drain_timeout=0)
        await second.stop(drain_timeout=0)
