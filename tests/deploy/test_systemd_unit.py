"""deploy/systemd/atoms-gateway.service: `systemd-analyze verify` accepts it without a
warning (its ExecStart pointed at this venv's atoms-gateway, which it checks exists), and
systemd waits longer for a stop than the gateway's drain."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.kit import DEPLOY

UNIT = DEPLOY / "systemd" / "atoms-gateway.service"
INSTALLED = "/opt/atoms-gateway/bin/atoms-gateway"


def verify(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is not installed; run scripts/system-deps.sh",
                    pytrace=False)
    unit = tmp_path / "atoms-gateway.service"
    unit.write_text(text.replace(INSTALLED, str(Path(sys.executable).parent / "atoms-gateway")))
    return subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)


def test_systemd_analyze_verify_is_silent(tmp_path) -> None:
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED} serve" in text
    done = verify(text, tmp_path)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_systemd_analyze_would_catch_a_mistake(tmp_path) -> None:
    done = verify(UNIT.read_text().replace("Type=exec", "Tpye=exec"), tmp_path)
    assert "Unknown key" in done.stderr


def service_section() -> dict[str, list[str]]:
    """The [Service] section's settings, each with every value it is given (a unit file may
    repeat a key, as Environment= here)."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service":
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_stop_timeout_covers_the_drain() -> None:
    service = service_section()
    environment = " ".join(service["Environment"])
    drain = float(re.search(r"ATOMS_DRAIN_TIMEOUT=(\d+)", environment).group(1))
    (stop,) = map(float, service["TimeoutStopSec"])
    assert drain + 5 <= stop <= drain + 60
    assert service["KillSignal"] == ["SIGTERM"] and service["User"][0] not in ("root", "0")
    assert "TOKEN" not in environment and "PASSWORD" not in environment  # EnvironmentFile
