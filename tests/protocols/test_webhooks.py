"""The providers' webhooks, sans-I/O (`gateway.protocols.webhooks`): each registered
provider refuses an unsigned request once its secret is set, and its answer points the
provider at its stream, with the per-call token where that provider carries it."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from gateway.protocols import WEBSOCKET_PROTOCOLS
from gateway.protocols.twilio import TOKEN_PARAM
from gateway.protocols.twilio_signature import twilio_signature
from gateway.protocols.webhooks import StreamOffer, WebhookRequest

BASE = "https://gw.example.com"
STREAM = StreamOffer("wss://gw.example.com/x/stream", token="tok123")


def request(path: str, method: str = "POST", form: dict[str, str] | None = None,
            headers: dict[str, str] | None = None, body: bytes = b"",
            query: dict[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest(method=method, url=BASE + path, headers=headers or {},
                          query=query or {}, received=1_760_000_000.0, form=form or {},
                          body=body)


def answer_of(provider: str, leaf: str, hook: WebhookRequest) -> str:
    webhook = next(w for w in WEBSOCKET_PROTOCOLS[provider].webhooks if w.leaf == leaf)
    return webhook.answer(hook, STREAM).text


@pytest.mark.parametrize("provider", list(WEBSOCKET_PROTOCOLS))
def test_an_unsigned_webhook_is_refused_with_a_reason(provider):
    entry = WEBSOCKET_PROTOCOLS[provider]
    for webhook in entry.webhooks:
        why = entry.check("s3cret", request(f"/{provider}/{webhook.leaf}", form={"a": "b"}))
        assert why and isinstance(why, str)


def test_a_signed_twilio_webhook_passes_and_its_twiml_carries_the_token():
    form = {"CallSid": "CA1", "From": "+15550001", "Other": "x"}
    signature = twilio_signature("s3cret", BASE + "/twilio/voice", form)
    hook = request("/twilio/voice", form=form, headers={"X-Twilio-Signature": signature})
    twilio = WEBSOCKET_PROTOCOLS["twilio"]
    assert twilio.check("s3cret", hook) is None
    assert twilio.check("other", hook) == "invalid Twilio signature"
    stream = ET.fromstring(answer_of("twilio", "voice", hook)).find("Connect/Stream")
    assert stream is not None and stream.get("url") == STREAM.url  # no token in the URL
    params = {p.get("name"): p.get("value") for p in stream.iter("Parameter")}
    assert params == {"CallSid": "CA1", "From": "+15550001", TOKEN_PARAM: "tok123"}


def test_exotel_takes_its_token_in_the_query():
    exotel = WEBSOCKET_PROTOCOLS["exotel"]
    assert exotel.check("s3cret", request("/exotel/answer", query={"token": "s3cret"})) is None
    assert exotel.check("s3cret", request("/exotel/answer", query={"token": "s3creT"}))
    url = json.loads(answer_of("exotel", "answer", request("/exotel/answer")))["url"]
    assert url == STREAM.url + "?token=tok123"


@pytest.mark.parametrize("provider, leaf", [("telnyx", "voice"), ("plivo", "answer")])
def test_xml_answers_put_the_token_in_the_stream_url(provider, leaf):
    text = answer_of(provider, leaf, request(f"/{provider}/{leaf}"))
    stream = ET.fromstring(text).find(".//Stream")
    assert stream is not None
    assert STREAM.url + "?token=tok123" in (stream.get("url"), (stream.text or "").strip())


def test_vonage_answers_a_json_post_with_the_calls_details():
    body = json.dumps({"uuid": "u-1", "from": "4471", "to": "4472", "nested": {"x": 1}})
    ncco = json.loads(answer_of("vonage", "answer", request("/vonage/answer",
                                                            body=body.encode())))
    endpoint = ncco[0]["endpoint"][0]
    assert endpoint["uri"] == STREAM.url + "?token=tok123"
    assert endpoint["headers"] == {"uuid": "u-1", "from": "4471", "to": "4472"}
    event = next(w for w in WEBSOCKET_PROTOCOLS["vonage"].webhooks if w.leaf == "event")
    assert not event.offers_stream  # no token is spent on an event


def test_a_provider_without_a_token_gets_the_bare_stream_url():
    assert StreamOffer("wss://h/telnyx/stream").with_token() == "wss://h/telnyx/stream"
