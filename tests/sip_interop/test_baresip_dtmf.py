"""baresip (a real softphone) calls the gateway, and the agent presses 1 and # on the
call (`agent.send_dtmf`): baresip decodes our RFC 4733 events and reports each key
(`CALL_DTMF_START`/`CALL_DTMF_END` on its control socket, "received event: '1' (end=0)"
and "(end=1)" in its verbose log). The end of the last key reaches baresip only because
we send a little silence after it: its jitter buffer holds the last packets until more
arrive."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import numpy as np
import pytest

from agent.events import SDKAgentSendDtmfEvent
from agent.nodes import Node
from tests.sip_interop.helpers import (
    BaresipControl,
    require,
    start_gateway,
    stop_baresip,
    wait_for,
    write_baresip_config,
    write_wav,
)

pytestmark = pytest.mark.timeout(90)


async def press_keys(session):
    class Presser(Node):
        async def process_event(self, event):
            if event.type == "system.user.joined":
                await asyncio.sleep(1.0)  # the caller's side has set up its media
                await self.send_event(SDKAgentSendDtmfEvent(digits="1#"))

    session.add_node(Presser("presser"))
    await session.start()
    await session.wait_until_complete()


async def test_baresip_receives_the_agents_keys(tmp_path: Path) -> None:
    baresip = require("baresip")
    app = await start_gateway(setup_handler=press_keys)
    proc = ctrl = None
    try:
        write_wav(tmp_path / "mic.wav", np.zeros(16000 * 10, np.int16))
        cfg = tmp_path / "baresip"
        ctrl_port = write_baresip_config(cfg, tmp_path / "mic.wav")
        proc = await asyncio.create_subprocess_exec(
            baresip, "-v", "-f", str(cfg), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL)
        ctrl = await BaresipControl.connect(ctrl_port, proc)
        await ctrl.command("dial", f"sip:agent@127.0.0.1:{app.sip_port}")
        await wait_for(lambda: ctrl.saw("CALL_ESTABLISHED"), 15, "baresip: call established")
        await wait_for(lambda: sum(e.get("type") == "CALL_DTMF_END" for e in ctrl.events) >= 2,
                       15, "baresip to report two key presses (start and end)")
        await ctrl.command("hangup")
        await wait_for(lambda: app.opened and app.opened[0].closed, 10, "the call to end")
    finally:
        await stop_baresip(ctrl, proc)
        await app.stop(drain_timeout=0)

    log = (await proc.stdout.read()).decode(errors="replace")
    starts = [e for e in ctrl.events if e.get("type") == "CALL_DTMF_START"]
    assert [e.get("param") for e in starts] == ["1", "#"], ctrl.events
    # baresip -v logs each RFC 4733 event it decodes: the key, then the same key ended
    seen = re.findall(r"received event: '(.)' \(end=([01])\)", log)
    assert seen == [("1", "0"), ("1", "1"), ("#", "0"), ("#", "1")], log
