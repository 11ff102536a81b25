"""Tracing is configured by the standard OTEL_* variables, and off it costs nothing: the
OpenTelemetry SDK is not even imported (issue 24, item 2)."""

from __future__ import annotations

import subprocess
import sys

from gateway.tracing import enabled_by_env, provider_from_env


def test_on_only_when_an_exporter_is_named_and_the_sdk_is_not_disabled():
    assert not enabled_by_env({})
    assert not enabled_by_env({"OTEL_TRACES_EXPORTER": "none"})
    assert enabled_by_env({"OTEL_TRACES_EXPORTER": "console"})
    assert enabled_by_env({"OTEL_TRACES_EXPORTER": "none,otlp"})
    assert not enabled_by_env({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"})


def test_a_console_exporter_from_the_environment(monkeypatch):
    from opentelemetry.sdk.trace import TracerProvider

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gw-test")
    provider = provider_from_env()
    assert isinstance(provider, TracerProvider)
    assert provider.resource.attributes["service.name"] == "gw-test"
    provider.shutdown()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert provider_from_env() is None


def test_off_the_sdk_is_not_imported_and_no_sink_is_added():
    code = (
        "import os, sys\n"
        "os.environ.pop('OTEL_TRACES_EXPORTER', None)\n"
        "from gateway.app import AtomsApp\n"
        "app = AtomsApp()\n"
        "assert app.observe.tracing is None, app.observe.sinks\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
