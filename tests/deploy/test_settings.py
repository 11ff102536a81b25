"""The settings every deployment file gives the gateway are ones it accepts: each ATOMS_*
name is a real setting (a misspelt one would be silently ignored), each value parses, and
listening on 0.0.0.0 leaves no route open (`gateway.route_auth.open_routes`: the gateway
would refuse to start), except where the file says so explicitly (ATOMS_INSECURE=1).
Secrets and node addresses, which come from outside the files, are stand-ins here."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
import yaml

from gateway.route_auth import open_routes
from gateway.settings import Settings
from tests.deploy.kit import DEPLOY

SECRET = "stand-in-secret"
FIELDS = {f"ATOMS_{f.name.upper()}" for f in dataclasses.fields(Settings)}


def k8s_env(name: str) -> dict[str, str]:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()) if d]
    (workload,) = [d for d in docs if d["kind"] in ("Deployment", "DaemonSet")]
    env = {}
    for entry in workload["spec"]["template"]["spec"]["containers"][0]["env"]:
        source = entry.get("valueFrom", {})
        env[entry["name"]] = (entry["value"] if "value" in entry else SECRET
                              if "secretKeyRef" in source else "10.0.0.7")
    return env


def compose_env(service: str) -> dict[str, str]:
    doc = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())
    env = doc["services"][service].get("environment", {})
    return {k: SECRET if str(v).startswith("${") else str(v) for k, v in env.items()}


def systemd_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in (DEPLOY / "systemd" / "atoms-gateway.service").read_text().splitlines():
        if line.startswith("Environment="):
            env.update(pair.split("=", 1) for pair in line[len("Environment="):].split())
    for line in (DEPLOY / "systemd" / "env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    return env


def dockerfile_env() -> dict[str, str]:
    text = (DEPLOY / "Dockerfile").read_text()
    env = dict(re.findall(r"\b(ATOMS_\w+)=(\S+)", text.split("\nENV ", 1)[1].split("\nUSER")[0]))
    # plus what its header comment puts in gateway.env
    env.update(re.findall(r"\b(ATOMS_\w+)=(\S+)", text.split("gateway.env holding")[1]
                          .split("\n#\n")[0]))
    return {k: SECRET if v == "..." else v for k, v in env.items()}


CONFIGS: dict[str, Any] = {
    "Dockerfile": dockerfile_env,
    "k8s/gateway.yaml": lambda: k8s_env("gateway.yaml"),
    "k8s/sip-gateway.yaml": lambda: k8s_env("sip-gateway.yaml"),
    "systemd": systemd_env,
    "compose gateway-a": lambda: compose_env("gateway-a"),
    "compose gateway-b": lambda: compose_env("gateway-b"),
    "compose agents": lambda: compose_env("agents"),
}


@pytest.mark.parametrize("where", CONFIGS)
def test_settings_are_real_valid_and_leave_nothing_open(where: str) -> None:
    env = CONFIGS[where]()
    atoms = {k: v for k, v in env.items() if k.startswith("ATOMS_")}
    assert atoms and set(atoms) <= FIELDS, set(atoms) - FIELDS
    settings = Settings.from_env(env=env)
    host = env.get("ATOMS_HOST", "0.0.0.0")
    assert host == "0.0.0.0" or where.startswith(("k8s", "compose")), host
    found = open_routes(settings, "0.0.0.0")
    if where == "compose agents":  # the one explicit exception: its /ws, on a private net
        assert settings.insecure and [r.what for r in found] == ["/ws, /webrtc/offer"]
    else:
        assert not settings.insecure
        assert found == [], found
