"""The import graph has no cycle through the app: transports depend on `gateway.host`, and
the provider stream routes come from one registry."""

import subprocess
import sys

import pytest

from gateway.protocols import WEBSOCKET_PROTOCOLS
from gateway.settings import PROVIDERS

TRANSPORTS = ["atoms_ws", "audiosocket", "media_stream", "rtp", "sip", "webclient", "webrtc"]


@pytest.mark.parametrize("name", TRANSPORTS)
def test_a_transport_imports_without_the_app(name):
    code = (f"import sys, gateway.transports.{name}\n"
            "assert 'gateway.app' not in sys.modules, 'imports gateway.app'\n"
            "assert 'gateway.routes' not in sys.modules, 'imports gateway.routes'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_app_imports_first():
    done = subprocess.run([sys.executable, "-c", "import gateway.app"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr


def test_the_provider_registry_is_the_settings_list():
    assert tuple(WEBSOCKET_PROTOCOLS) == PROVIDERS


def test_listeners_are_declared():
    from gateway.app import AtomsApp

    app = AtomsApp(setup_handler=lambda session: session.start())
    assert app.sip.port is None and app.sip_port is None
    assert app.audiosocket.port is None and app.audiosocket_port is None
    assert app.audiosocket_gate is app.audiosocket.gate
    assert app.stream_gate.pending == 0
    paths = {r.canonical for r in app.web.router.resources()}
    for provider, entry in WEBSOCKET_PROTOCOLS.items():
        assert set(entry.paths(provider)) <= paths
