"""deploy/compose/docker-compose.yml: Kamailio in front of two gateways that drive agents
served by a third. Docker cannot run here, so the structure is checked: what Kamailio
mounts exists, its dispatcher list names exactly the two gateways, each gateway
advertises its own address, lets only Kamailio send SIP, has its own published RTP range
and the agent server's URL, and is given longer to stop than its drain."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.kit import DEPLOY, ROOT

COMPOSE = DEPLOY / "compose"


def load() -> dict[str, Any]:
    return yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())


def seconds(text: str) -> float:
    m = re.fullmatch(r"(\d+)s", text)
    assert m, text
    return float(m.group(1))


def rtp_range(service: dict[str, Any]) -> range:
    env = service["environment"]
    return range(int(env["ATOMS_RTP_PORT_MIN"]), int(env["ATOMS_RTP_PORT_MAX"]) + 1)


def test_services_and_what_they_are_built_from() -> None:
    doc = load()
    assert set(doc["services"]) == {"kamailio", "gateway-a", "gateway-b", "agents"}
    for name in ("gateway-a", "gateway-b", "agents"):
        build = doc["services"][name]["build"]
        assert (COMPOSE / build["context"] / build["dockerfile"]).resolve() == (
            DEPLOY / "Dockerfile")
        assert doc["services"][name]["command"] == ["serve"]
    kam = doc["services"]["kamailio"]["build"]
    dockerfile = (COMPOSE / kam["context"] / kam["dockerfile"]).read_text()
    assert re.search(r"^FROM debian:", dockerfile, re.M)  # its module path is Debian's


def test_kamailio_dispatches_to_exactly_the_two_gateways() -> None:
    doc = load()
    kamailio = doc["services"]["kamailio"]
    mounts = [v.rsplit(":", 1)[0].split(":", 1) for v in kamailio["volumes"]]  # (":ro")
    sources = {target: (COMPOSE / source).resolve() for source, target in mounts}
    cfg = sources["/etc/kamailio/kamailio.cfg"]
    assert cfg == ROOT / "sip_examples" / "kamailio" / "kamailio.cfg"
    text = cfg.read_text()
    assert 'modparam("dispatcher", "list_file", "/etc/kamailio/dispatcher.list")' in text
    assert 'mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"' in text
    listed = [ln.split() for ln in sources["/etc/kamailio/dispatcher.list"].read_text()
              .splitlines() if ln.strip() and not ln.startswith("#")]
    expected = []
    for name in ("gateway-a", "gateway-b"):
        gw = doc["services"][name]
        address = gw["networks"]["voice"]["ipv4_address"]
        expected.append(["1", f"sip:{address}:{gw['environment']['ATOMS_SIP_PORT']}"])
    assert listed == expected
    subnet = ipaddress.ip_network(doc["networks"]["voice"]["ipam"]["config"][0]["subnet"])
    for name in ("kamailio", "gateway-a", "gateway-b"):
        assert ipaddress.ip_address(
            doc["services"][name]["networks"]["voice"]["ipv4_address"]) in subnet


def test_each_gateway_advertises_itself_and_has_its_own_rtp_range() -> None:
    doc = load()
    kamailio_ip = doc["services"]["kamailio"]["networks"]["voice"]["ipv4_address"]
    ranges = []
    for name in ("gateway-a", "gateway-b"):
        gw = doc["services"][name]
        env = gw["environment"]
        assert env["ATOMS_SIP_ADVERTISE"] == gw["networks"]["voice"]["ipv4_address"]
        assert ipaddress.ip_address(kamailio_ip) in ipaddress.ip_network(env["ATOMS_SIP_ALLOW"])
        assert env["ATOMS_AGENT_URL"] == "ws://agents:8080/ws"
        assert "agents" in gw["networks"] and "agents" in doc["services"]["agents"]["networks"]
        ports = rtp_range(gw)
        ranges.append(ports)
        assert gw["ports"] == [f"{ports[0]}-{ports[-1]}:{ports[0]}-{ports[-1]}/udp"]
        assert seconds(gw["stop_grace_period"]) >= float(env["ATOMS_DRAIN_TIMEOUT"]) + 10
        assert env["ATOMS_WS_TOKEN"].startswith("${ATOMS_WS_TOKEN:?")  # from the environment
    assert not set(ranges[0]) & set(ranges[1])
    assert doc["networks"]["agents"]["internal"] is True  # the tokenless agent server


def test_the_sip_port_is_published_by_kamailio_only() -> None:
    doc = load()
    assert doc["services"]["kamailio"]["ports"] == ["5060:5060/udp"]
    for name in ("gateway-a", "gateway-b", "agents"):
        assert all("5060" not in p for p in doc["services"][name].get("ports", []))
    assert Path(COMPOSE / "dispatcher.list").exists()
