"""deploy/k8s: valid against Kubernetes' own schemas offline (kubernetes-validate
--strict), readiness on /ready, liveness on /health, a preStop drain, a grace period
that covers the drain timeout, tokens from Secrets."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.deploy.kit import DEPLOY, env_value, tool

MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))


def test_there_are_manifests() -> None:
    assert [p.name for p in MANIFESTS] == ["gateway.yaml", "sip-gateway.yaml"]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_kubernetes_validate_strict(path) -> None:
    done = subprocess.run([tool("kubernetes-validate"), "--strict", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed" in done.stdout


def test_kubernetes_validate_would_catch_a_mistake(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((DEPLOY / "k8s" / "gateway.yaml").read_text().replace(
        "terminationGracePeriodSeconds: 330", "terminationGracePeriodSecond: 330"))
    done = subprocess.run([tool("kubernetes-validate"), "--strict", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_probes_drain_and_grace_period(path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    workloads = [d for d in docs if d["kind"] in ("Deployment", "DaemonSet")]
    assert len(workloads) == 1
    pod = workloads[0]["spec"]["template"]["spec"]
    (gateway,) = pod["containers"]
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/health"
    pre_stop = " ".join(gateway["lifecycle"]["preStop"]["exec"]["command"])
    assert "kill -TERM 1" in pre_stop and "kill -0 1" in pre_stop  # drain, wait for the exit
    drain = float(env_value(gateway["env"], "ATOMS_DRAIN_TIMEOUT")["value"])
    grace = pod["terminationGracePeriodSeconds"]
    assert drain + 10 <= grace <= drain + 60, (drain, grace)
    assert pod["securityContext"]["runAsNonRoot"] is True
    for entry in gateway["env"]:  # secrets never as literal values
        if re.search(r"TOKEN|PASSWORD|_KEY$", entry["name"]):
            assert "secretKeyRef" in entry["valueFrom"], entry


def test_the_service_sends_http_to_the_pods() -> None:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "gateway.yaml").read_text()) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (service,) = [d for d in docs if d["kind"] == "Service"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    ports = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= {p["name"] for p in ports}


def test_the_sip_gateway_advertises_its_node_and_uses_its_network() -> None:
    (ds,) = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "sip-gateway.yaml").read_text())
             if d]
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    env = pod["containers"][0]["env"]
    assert env_value(env, "ATOMS_SIP_ADVERTISE")["valueFrom"]["fieldRef"]["fieldPath"] == (
        "status.hostIP")
    low = int(env_value(env, "ATOMS_RTP_PORT_MIN")["value"])
    high = int(env_value(env, "ATOMS_RTP_PORT_MAX")["value"])
    assert 1024 < low < high <= 65535
