"""Authentication (issue 22): bearer tokens on the HTTP listener (WHIP, console and its event
stream, Twilio and audio-fork WebSockets), on by default off loopback; HMAC-signed webhooks."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from telephony_harness import running_daemon

from daemon.auth import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    TokenStore,
    is_loopback_endpoint,
    is_loopback_host,
    sign_webhook,
    verify_webhook,
)
from daemon.config import build_config
from daemon.errors import ConfigError
from daemon.webhooks import WebhookSender

CLIENT = "c" * 40
MONITOR = "m" * 40
SECRET = "s" * 24


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.txt"
    path.write_text(f"# who role token\nalice client {CLIENT}\nops monitor {MONITOR}  # the console\n")
    return path


@pytest.fixture
async def daemon(tiny_model: tuple[Path, Path], tokens: Path) -> AsyncIterator[tuple[Any, str]]:
    # 0.0.0.0 is not loopback: auth.mode = "auto" turns authentication on without being asked
    async with running_daemon(tiny_model[0], webrtc={"enabled": True, "host": "0.0.0.0", "port": 0},
                              auth={"tokens_file": str(tokens)}) as running:
        port = running.state.endpoints["http"].rsplit(":", 1)[1]
        yield running, f"http://127.0.0.1:{port}"


def test_loopback_detection() -> None:
    assert is_loopback_host("127.0.0.1") and is_loopback_host("::1") and is_loopback_host("localhost")
    assert not is_loopback_host("0.0.0.0") and not is_loopback_host("10.1.2.3") and not is_loopback_host("host")
    assert is_loopback_endpoint("tcp://127.0.0.1:5555") and is_loopback_endpoint("ipc:///tmp/x")
    assert not is_loopback_endpoint("tcp://*:5555") and not is_loopback_endpoint("tcp://0.0.0.0:5555")


def test_auth_is_on_by_default_off_loopback_and_needs_tokens(tokens: Path) -> None:
    with pytest.raises(ConfigError, match="auth.tokens_file"):
        build_config({"webrtc": {"host": "0.0.0.0"}})
    assert not build_config({}).http_auth_required  # loopback: off unless asked
    assert build_config({"webrtc": {"host": "0.0.0.0"}, "auth": {"tokens_file": str(tokens)}}).http_auth_required
    assert build_config({"auth": {"mode": "on", "tokens_file": str(tokens), "zmq_keys_dir": "/keys"}}).http_auth_required
    assert not build_config({"webrtc": {"host": "0.0.0.0"}, "auth": {"mode": "off"}}).http_auth_required
    with pytest.raises(ConfigError, match="auth.webhook_secret"):  # webhooks must be signed then
        build_config({"webrtc": {"host": "0.0.0.0"}, "auth": {"tokens_file": str(tokens)},
                      "twilio": {"enabled": True, "webhook_url": "https://hooks.example.com/x"}})


def test_token_store_checks_roles_and_length(tmp_path: Path) -> None:
    store = TokenStore([("a", "client", CLIENT), ("b", "monitor", MONITOR)])
    assert store.lookup(CLIENT) is not None and store.lookup(CLIENT).role == "client"  # type: ignore[union-attr]
    assert store.lookup(MONITOR).is_monitor  # type: ignore[union-attr]
    assert store.lookup("c" * 39) is None and store.lookup("") is None
    with pytest.raises(ConfigError, match="shorter"):
        TokenStore([("a", "client", "short")])
    with pytest.raises(ConfigError, match="role"):
        TokenStore([("a", "admin", CLIENT)])
    bad = tmp_path / "bad.txt"
    bad.write_text("only-two fields\n")
    with pytest.raises(ConfigError, match="NAME ROLE TOKEN"):
        TokenStore.from_file(bad)


async def test_health_and_metrics_need_no_token(daemon: tuple[Any, str]) -> None:
    _, base = daemon
    async with aiohttp.ClientSession() as http:
        for path in ("/healthz", "/readyz", "/metrics"):
            async with http.get(base + path) as response:
                assert response.status == 200, path


async def test_whip_needs_a_token(daemon: tuple[Any, str]) -> None:
    running, base = daemon
    refused = running.refusals.count
    before = refused("http", "no_token"), refused("http", "unauthorized")
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/whip", data="v=0", headers={"Content-Type": "application/sdp"}) as response:
            assert response.status == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
        async with http.post(f"{base}/whip", data="v=0", headers={
                "Content-Type": "application/sdp", "Authorization": f"Bearer {'x' * 40}"}) as response:
            assert response.status == 401
        async with http.delete(f"{base}/whip/abc/def") as response:
            assert response.status == 401
        async with http.post(f"{base}/whip", data="v=0", headers={  # past the door: the SDP is what is wrong
                "Content-Type": "application/sdp", "Authorization": f"Bearer {CLIENT}"}) as response:
            assert response.status == 400
    assert refused("http", "no_token") == before[0] + 2 and refused("http", "unauthorized") == before[1] + 1


async def test_console_and_its_event_stream_need_a_monitor_token(daemon: tuple[Any, str]) -> None:
    _, base = daemon
    async with aiohttp.ClientSession() as http:
        for path in ("/console/", "/console/events", "/"):
            async with http.get(base + path, allow_redirects=False) as response:
                assert response.status == 401, path
        async with http.get(f"{base}/console/events", headers={"Authorization": f"Bearer {CLIENT}"}) as response:
            assert response.status == 403  # a client token reads only its own streams
    jar = aiohttp.CookieJar(unsafe=True)  # keeps cookies of an IP address, as a browser does
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:  # the token once in the URL, then the cookie
        async with browser.get(f"{base}/console/?token={MONITOR}") as response:
            assert response.status == 200 and "HttpOnly" in response.headers["Set-Cookie"]
            assert "SameSite=Strict" in response.headers["Set-Cookie"]
        async with browser.get(f"{base}/console/events") as response:
            assert response.status == 200 and response.content_type == "text/event-stream"


@pytest.mark.parametrize("path", ["/twilio", "/audiofork"])
async def test_telephony_websockets_take_a_token_in_the_url_or_a_header(daemon: tuple[Any, str], path: str) -> None:
    _, base = daemon
    url = base.replace("http", "ws") + path
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused_ws:
            await http.ws_connect(url)
        assert refused_ws.value.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(f"{url}?token={'x' * 40}")
        async with http.ws_connect(f"{url}?token={CLIENT}") as ws:
            assert not ws.closed
        async with http.ws_connect(url, headers={"Authorization": f"Bearer {CLIENT}"}) as ws:
            assert not ws.closed


async def test_whip_session_with_a_token_keeps_it_out_of_the_metadata(daemon: tuple[Any, str]) -> None:
    from clients.whip import whip_send

    _, base = daemon
    t = np.arange(16000) / 16000
    result = await whip_send(f"{base}/whip?token={CLIENT}", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32),
                             16000, stream_id="auth-whip", metadata={"call": "1"}, tail_s=0.5)
    assert result.results and all(m["metadata"] == {"call": "1"} for m in result.results)
    result = await whip_send(f"{base}/whip", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000,
                             stream_id="auth-whip-2", token=CLIENT, tail_s=0.5)  # the header, POST and DELETE
    assert result.summary is not None


def test_webhook_signature_round_trip() -> None:
    body = b'{"v":1}'
    headers = sign_webhook(SECRET, body, timestamp=1_700_000_000)
    assert headers[SIGNATURE_HEADER].startswith("sha256=") and len(headers[SIGNATURE_HEADER]) == 7 + 64
    assert verify_webhook(SECRET, body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], now=1_700_000_010)
    assert not verify_webhook(SECRET, body + b" ", headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER],
                              now=1_700_000_010)
    assert not verify_webhook("t" * 24, body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER],
                              now=1_700_000_010)
    assert not verify_webhook(SECRET, body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER],
                              now=1_700_000_000 + 301)  # a replay after the tolerance
    assert not verify_webhook(SECRET, body, "soon", headers[SIGNATURE_HEADER])


async def test_webhook_posts_are_signed() -> None:
    from test_webhooks import ScriptedHandle

    received: list[tuple[bytes, dict[str, str]]] = []
    done = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.read(), dict(request.headers)))
        done.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    from daemon.config import WebhooksConfig

    sender = WebhookSender(WebhooksConfig(), signing_secret=SECRET)
    await sender.start()
    try:
        sender.watch(ScriptedHandle("signed", ["spoof"]), f"http://127.0.0.1:{port}/hook")  # type: ignore[arg-type]
        await asyncio.wait_for(done.wait(), 5)
    finally:
        await sender.stop()
        await runner.cleanup()
    [(body, headers)] = received
    assert json.loads(body)["decision"] == "spoof"
    assert verify_webhook(SECRET, body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])


def test_keys_token_appends_a_private_line(tmp_path: Path) -> None:
    path = tmp_path / "tokens.txt"
    out = subprocess.run([sys.executable, "-m", "clients.cli", "keys", "token", "bob", "--role", "monitor",
                          "--file", str(path)], capture_output=True, text=True, check=True)
    token = out.stdout.strip()
    assert path.read_text() == f"bob monitor {token}\n" and path.stat().st_mode & 0o777 == 0o600
    assert TokenStore.from_file(path).lookup(token) is not None


def test_a_whip_token_in_the_query_is_never_stream_metadata() -> None:
    from daemon.ingest.webrtc import stream_request

    stream_id, metadata = stream_request({"stream_id": "x", "token": CLIENT, "call": "1"})
    assert stream_id == "x" and metadata == {"call": "1"}


def test_audiosocket_off_loopback_needs_an_allow_list() -> None:
    with pytest.raises(ConfigError, match="audiosocket.allowed_peers"):
        build_config({"audiosocket": {"enabled": True, "host": "0.0.0.0"}, "observability": {"enabled": False},
                      "webrtc": {"enabled": False}})
    with pytest.raises(ConfigError, match="not an address"):
        build_config({"audiosocket": {"allowed_peers": ["gateway"]}})
    build_config({"audiosocket": {"enabled": True, "host": "0.0.0.0", "allowed_peers": ["10.0.0.0/8"]},
                  "observability": {"enabled": False}, "webrtc": {"enabled": False}})


async def test_audiosocket_refuses_peers_off_its_allow_list(tiny_model: tuple[Path, Path]) -> None:
    from telephony_harness import audiosocket_port

    async with running_daemon(tiny_model[0], audiosocket={"allowed_peers": ["10.9.9.9"]}) as running:
        before = running.refusals.count("audiosocket", "peer_not_allowed")
        reader, writer = await asyncio.open_connection("127.0.0.1", audiosocket_port(running))
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed at once
        writer.close()
    assert running.refusals.count("audiosocket", "peer_not_allowed") == before + 1
