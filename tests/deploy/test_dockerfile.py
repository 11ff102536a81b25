"""deploy/Dockerfile (and Kamailio's for the compose example): hadolint finds nothing, and
the image is what the README promises: multi-stage, slim, non-root, espeak-ng inside,
HEALTHCHECK on /health. No image is built here (none can be pulled)."""

from __future__ import annotations

import re
import subprocess
import tomllib

import pytest

from tests.deploy.kit import DEPLOY, ROOT, tool

DOCKERFILES = [DEPLOY / "Dockerfile", DEPLOY / "compose" / "kamailio.Dockerfile"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(path) -> None:
    done = subprocess.run([tool("hadolint"), "--no-color", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_would_catch_a_mistake(tmp_path) -> None:
    """The lint is live: the same file with an unpinned base and a root user fails."""
    text = (DEPLOY / "Dockerfile").read_text()
    bad = tmp_path / "Dockerfile"
    bad.write_text(text.replace("USER 10001:10001", "USER root") + "\nFROM debian\n")
    done = subprocess.run([tool("hadolint"), "--no-color", str(bad)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0 and "DL3006" in done.stdout and "DL3002" in done.stdout


def stages(text: str) -> list[str]:
    """The Dockerfile's stages, each from its FROM line on (continuations joined)."""
    joined = re.sub(r"\\\n", " ", text)
    lines = [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.startswith("#")]
    out: list[str] = []
    for ln in lines:
        if ln.upper().startswith("FROM "):
            out.append("")
        if out:
            out[-1] += ln + "\n"
    return out


def test_multi_stage_slim_non_root_with_espeak_and_a_healthcheck() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    build, final = stages(text)
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.\d+-slim", text, re.M)
    assert "pip install" in build and "pip install" not in final
    assert "COPY --from=build /opt/atoms-gateway /opt/atoms-gateway" in final
    user = re.search(r"^USER (\S+)", final, re.M)
    assert user and user.group(1).split(":")[0] not in ("root", "0")
    assert re.search(r"apt-get install[^\n]*\bespeak-ng\b", final)
    health = re.search(r"^HEALTHCHECK .*CMD (.*)$", final, re.M)
    assert health and "/health" in health.group(1)
    assert re.search(r'^ENTRYPOINT \["atoms-gateway"\]', final, re.M)


def test_the_build_copies_every_package_the_project_installs() -> None:
    """A package added to pyproject's list but not copied would break the image's build."""
    build = stages((DEPLOY / "Dockerfile").read_text())[0]
    copied = set(re.findall(r"^COPY (\S+) \./\S+$", build, re.M))
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]
    for pattern in packages:
        assert pattern.rstrip("*") in copied, (pattern, copied)
    for path in copied:
        assert (ROOT / path).is_dir()
    assert "COPY pyproject.toml README.md ./" in build
