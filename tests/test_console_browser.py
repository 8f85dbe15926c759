"""The web console in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright;
no browser download). A wav file is the fake microphone: "Send my microphone" starts a WHIP
session from the page, and its scores appear on the page (data channel) and on the PUB socket.
Telephony calls running at the same time show up in the live list with their call metadata.
The screenshot is saved to artifacts/console.png."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import aiohttp
import pytest
import soundfile as sf
from telephony_harness import (
    audiosocket_port,
    collecting,
    http_base,
    running_daemon,
    speechlike,
    to_int16_bytes,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = REPO_ROOT / "artifacts" / "console.png"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
]

pytestmark = pytest.mark.usefixtures("loopback_ice")


def require_browser() -> None:
    """Skip locally when Chromium/Playwright are missing; in CI (CI=true) that is a failure."""
    problems = []
    if not CHROMIUM.is_file():
        problems.append(f"{CHROMIUM} not found (apt-get install chromium; see scripts/system-packages.txt)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        problems.append("the playwright package is not installed (dev extra)")
    if problems:
        if os.environ.get("CI") == "true":
            pytest.fail("; ".join(problems))
        pytest.skip("; ".join(problems))


async def audiosocket_call(port: int, call_id: uuid.UUID, seconds: float) -> None:
    """An Asterisk-like AudioSocket call, paced at about 4x real time so it stays live for a while."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(bytes([0x01, 0, 16]) + call_id.bytes)
    pcm = to_int16_bytes(speechlike(seconds, 8000, 120, seed=5))
    for start in range(0, len(pcm), 320):
        writer.write(bytes([0x10]) + (320).to_bytes(2, "big") + pcm[start:start + 320])
        await writer.drain()
        await asyncio.sleep(0.005)
    writer.write(bytes([0x00, 0, 0]))
    writer.close()


async def twilio_call(base: str, stream_sid: str, call_sid: str, seconds: float) -> None:
    import base64

    from daemon.wire.g711 import encode_mulaw

    async with aiohttp.ClientSession() as session, session.ws_connect(base + "/twilio") as ws:
        await ws.send_str(json.dumps({"event": "start", "streamSid": stream_sid, "start": {
            "streamSid": stream_sid, "callSid": call_sid, "tracks": ["inbound"], "customParameters": {"queue": "billing"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
        payload = encode_mulaw(speechlike(seconds, 8000, 210, seed=6))
        for i in range(0, len(payload), 160):
            await ws.send_str(json.dumps({"event": "media", "streamSid": stream_sid, "media": {
                "track": "inbound", "chunk": str(i // 160 + 1), "timestamp": str(i // 8),
                "payload": base64.b64encode(payload[i:i + 160]).decode()}}))
            await asyncio.sleep(0.005)
        await ws.send_str(json.dumps({"event": "stop", "streamSid": stream_sid}))


async def test_console_page_whip_from_the_browser(tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    require_browser()
    from playwright.async_api import async_playwright

    mic_wav = tmp_path / "mic.wav"
    sf.write(mic_wav, speechlike(4.0, 48000, 160, seed=7), 48000, subtype="PCM_16")
    asterisk_id = uuid.uuid4()
    async with running_daemon(tiny_model[0], webrtc={"enabled": True}) as daemon, collecting(daemon) as pub:
        base = http_base(daemon)
        # a call that is already live when the page loads reaches it through the snapshot
        asterisk = asyncio.create_task(audiosocket_call(audiosocket_port(daemon), asterisk_id, 3.0))
        await pub.until(lambda ms: any(m["type"] == "result" and m["stream_id"] == str(asterisk_id) for m in ms))
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
                args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={mic_wav}"],
                viewport={"width": 1280, "height": 640})
            try:
                page = await context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(base + "/")  # redirects to /console/
                assert page.url.endswith("/console/")
                await page.wait_for_function("document.getElementById('feed-status').textContent === 'live'")
                # a call that starts after the page loaded arrives over the live feed
                twilio = asyncio.create_task(twilio_call(base, "MZconsole", "CAconsole", 3.0))
                await page.click("#mic")
                await page.wait_for_function("Number(document.getElementById('mine-count').textContent) >= 10",
                                             timeout=20_000)
                mine = (await page.text_content("#mine-id")) or ""
                assert mine.startswith("browser-")
                spoof_text = await page.text_content("#mine-spoof")
                assert spoof_text is not None and 0.0 <= float(spoof_text) <= 1.0
                await asyncio.gather(asterisk, twilio)
                await page.wait_for_selector(f'[data-stream-id="{asterisk_id}"] .meta')
                await page.wait_for_selector('[data-stream-id="MZconsole:inbound"]')
                page_text = await page.inner_text("#streams")
                SCREENSHOT.parent.mkdir(exist_ok=True)
                await page.screenshot(path=str(SCREENSHOT), full_page=True)
                await page.click("#mic")  # stop: DELETE /whip/<session>
                await pub.closed(mine, timeout=10)
                assert not errors, errors
            finally:
                await context.close()

    # the browser's WHIP stream was scored and published like any other stream
    opened = pub.of(mine, "opened")[0]
    assert opened["transport"] == "webrtc" and opened["metadata"] == {"source": "console"}
    assert len(pub.of(mine, "result")) >= 10
    assert pub.of(mine, "closed")[0]["reason"] == "client"
    # the page listed the telephony calls with their call metadata
    assert f"call_id={asterisk_id}" in page_text and "call_id=CAconsole" in page_text
    assert "param.queue=billing" in page_text and mine in page_text
