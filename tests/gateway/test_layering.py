"""The import graph has no cycle through the app: transports depend on `gateway.host`, and
the provider stream routes come from one registry."""

import ast
import subprocess
import sys
from pathlib import Path

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


ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    """The modules `path` imports (absolute imports; `from x import y` gives x and x.y)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("package, forbidden", [
    ("runtime", ("agent", "media", "gateway")),  # a leaf: all three may use it
    ("agent", ("media", "gateway")),
    ("media", ("agent", "gateway")),
])
def test_the_arrows_point_one_way(package, forbidden):
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = {m for m in _imports(path) if m.split(".")[0] in forbidden}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_no_test_module_imports_another():
    """Tests share what they need through tests/kit/ (or a folder's helper modules)."""
    for path in sorted((ROOT / "tests").rglob("*.py")):
        bad = {m for m in _imports(path)
               if m.startswith("tests.") and m.split(".")[-1].startswith("test_")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_benchmarks_import_only_the_test_kit():
    """Benchmarks share the tests' sets, fakes and clients through tests/kit/ alone."""
    for path in sorted((ROOT / "benchmarks").rglob("*.py")):
        bad = {m for m in _imports(path)
               if m.startswith("tests.") and m != "tests.kit" and not m.startswith("tests.kit.")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_tests_never_import_benchmarks():
    """What a test and a benchmark share lives in tests/kit/, never in benchmarks/."""
    for path in sorted((ROOT / "tests").rglob("*.py")):
        bad = {m for m in _imports(path) if m.split(".")[0] == "benchmarks"}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
