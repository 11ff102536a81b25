"""The demo page in headless Chromium (Debian's /usr/bin/chromium driven by Playwright):
a fake microphone plays espeak-ng speech from a WAV; the page calls the agent and shows
both sides of the conversation. Screenshots go to test-artifacts/."""

from __future__ import annotations

import asyncio
import os
import wave
from pathlib import Path

import numpy as np
import pytest

from gateway.demo import GREETING
from gateway.transports.webrtc import WEBRTC
from tests.kit.speech import speech, trim_silence

playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
BASE_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             "--use-fake-device-for-media-stream"]

if not os.path.exists(CHROMIUM):
    pytest.skip("Debian chromium is not installed (make system-deps)", allow_module_level=True)


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory) -> str:
    """3 s of silence, "what time is it", 4 s of silence (Chromium loops the file)."""
    words = trim_silence(speech("what time is it"))
    pcm = np.concatenate([np.zeros(48000, np.int16), words, np.zeros(64000, np.int16)])
    path = tmp_path_factory.mktemp("wav") / "caller.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())
    return str(path)


async def launch(pw, wav: str | None, grant_mic: bool = True):
    args = list(BASE_ARGS)
    if grant_mic:
        args.append("--use-fake-ui-for-media-stream")
    if wav:
        args.append(f"--use-file-for-fake-audio-capture={wav}")
    return await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)


async def shoot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / name), full_page=True)


@pytest.mark.parametrize("transport", ["auto", "ws"])
async def test_page_calls_and_shows_both_sides(app_factory, speech_wav, transport):
    async with app_factory() as (app, url), playwright_api.async_playwright() as pw:
        browser = await launch(pw, speech_wav)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{url}/?transport={transport}")
            await page.click("#call")
            await page.wait_for_selector("#state[data-state=connected]", timeout=15000)
            via = await page.text_content("#via")
            assert ("WebRTC" if transport == "auto" else "WebSocket") in via
            if transport == "auto":
                assert len(app.web[WEBRTC].peers) == 1
            greeting = page.locator("#transcript .msg.agent .text").first
            await greeting.wait_for(timeout=15000)
            assert await greeting.text_content() == GREETING
            user = page.locator("#transcript .msg.user .text").first
            await user.wait_for(timeout=25000)
            assert await user.text_content() == "what time is it"
            # the caller spoke over the long greeting: the page marks the interruption
            await page.locator("#transcript .mark.interrupt").first.wait_for(timeout=5000)
            reply = page.locator("#transcript .msg.agent .text", has_text="It is")
            await reply.first.wait_for(timeout=15000)
            peak = await page.eval_on_selector("#level", "e => Number(e.dataset.peak || 0)")
            assert peak > 30  # the meter moved with the fake microphone's speech
            doubled = await page.evaluate("""() => [...document.querySelectorAll('#transcript li')]
                .some((li, i, all) => i > 0 && li.classList.contains('user')
                      && all[i - 1].classList.contains('user')
                      && li.textContent === all[i - 1].textContent)""")
            assert not doubled  # each transcript shown once
            await shoot(page, f"webrtc-demo-{transport}.png")
            await page.click("#hangup")
            await page.wait_for_selector("#state[data-state=ended]", timeout=5000)
            assert errors == []
        finally:
            await browser.close()
        async with asyncio.timeout(10):  # the hang-up reached the server
            while app.calls or app.web[WEBRTC].peers:
                await asyncio.sleep(0.05)


async def test_page_explains_a_refused_microphone(app_factory):
    async with app_factory() as (app, url), playwright_api.async_playwright() as pw:
        browser = await launch(pw, None, grant_mic=False)
        try:
            context = await browser.new_context()  # no permission granted: getUserMedia fails
            page = await context.new_page()
            await page.goto(url + "/")
            await page.click("#call")
            error = page.locator("#error")
            await error.wait_for(state="visible", timeout=10000)
            assert "Microphone access was refused" in await error.text_content()
            assert app.calls == {}
            await shoot(page, "webrtc-demo-mic-refused.png")
        finally:
            await browser.close()


async def test_page_explains_an_unreachable_server(app_factory, speech_wav):
    async with playwright_api.async_playwright() as pw:
        browser = await launch(pw, speech_wav)
        try:
            page = await browser.new_page()
            async with app_factory() as (app, url):
                await page.goto(url + "/")
            await page.click("#call")  # the server is gone now
            error = page.locator("#error")
            await error.wait_for(state="visible", timeout=10000)
            assert "unreachable" in await error.text_content()
            assert await page.text_content("#state") == "failed"
            await shoot(page, "webrtc-demo-unreachable.png")
        finally:
            await browser.close()
