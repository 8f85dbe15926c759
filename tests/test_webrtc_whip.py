"""WHIP ingest: HTTP error cases and track handling, against an in-memory hub (loopback only)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from clients.whip import ArrayAudioTrack, whip_send
from daemon.config import WebRTCConfig
from daemon.ingest.webrtc import WhipIngest
from daemon.refusals import Refusals
from daemon.stream_api import AudioChunk, StreamRejected, StreamSpec

pytestmark = pytest.mark.usefixtures("loopback_ice")


class RecordingHandle:
    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec
        self.chunks: list[AudioChunk] = []
        self.close_reason: str | None = None
        self._events: asyncio.Queue[Mapping[str, Any]] = asyncio.Queue()

    @property
    def stream_id(self) -> str:
        return self.spec.stream_id

    async def push(self, chunk: AudioChunk) -> None:
        self.chunks.append(chunk)
        if len(self.chunks) % 10 == 0:
            self._events.put_nowait({"type": "result", "stream_id": self.stream_id, "seq": len(self.chunks)})

    async def close(self, reason: str = "client") -> None:
        if self.close_reason is None:
            self.close_reason = reason
            summary = {"audio_s": sum(len(c.samples) for c in self.chunks) / self.spec.sample_rate_hz}
            self._events.put_nowait({"type": "closed", "stream_id": self.stream_id, "summary": summary})

    async def events(self) -> AsyncIterator[Mapping[str, Any]]:
        while True:
            event = await self._events.get()
            yield event
            if event["type"] == "closed":
                return


class RecordingHub:
    def __init__(self) -> None:
        self.handles: dict[str, RecordingHandle] = {}

    async def open(self, spec: StreamSpec) -> RecordingHandle:
        if spec.stream_id in self.handles:
            raise StreamRejected("stream_exists", f"stream {spec.stream_id!r} is open")
        handle = self.handles[spec.stream_id] = RecordingHandle(spec)
        return handle


def tone(seconds: float, rate_hz: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    return (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)


@pytest.fixture
async def whip() -> AsyncIterator[tuple[WhipIngest, RecordingHub, str]]:
    hub = RecordingHub()
    ingest = WhipIngest(hub, WebRTCConfig(port=0, max_sessions=1), refusals=Refusals())
    await ingest.start()
    try:
        yield ingest, hub, f"http://127.0.0.1:{ingest.server.port}/whip"
    finally:
        await ingest.stop()


async def post(url: str, body: str, content_type: str = "application/sdp") -> tuple[int, str, Mapping[str, str]]:
    headers = {"Content-Type": content_type}
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as response:
        return response.status, await response.text(), dict(response.headers)


async def audio_offer() -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(ArrayAudioTrack(tone(0.5), 16000))
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


async def test_wrong_content_type_is_415(whip: tuple[WhipIngest, RecordingHub, str]) -> None:
    _, _, url = whip
    status, text, _ = await post(url, "v=0\r\n", content_type="application/json")
    assert status == 415
    assert "application/sdp" in text


async def test_refusals_are_counted_in_the_object_the_ingest_was_given() -> None:
    refusals = Refusals()
    ingest = WhipIngest(RecordingHub(), WebRTCConfig(port=0, max_sessions=1), refusals=refusals)
    await ingest.start()
    try:
        url = f"http://127.0.0.1:{ingest.server.port}/whip"
        await post(url, "v=0\r\n", content_type="application/json")
        await post(url, "not sdp at all")
        async with aiohttp.ClientSession() as http, http.delete(url + "/nobody") as response:
            assert response.status == 403
    finally:
        await ingest.stop()
    assert refusals.counts() == [(("webrtc", "http_400"), 1), (("webrtc", "http_403"), 1),
                                 (("webrtc", "http_415"), 1)]


@pytest.mark.parametrize(
    "body, reason",
    [
        ("not sdp at all", "v=0"),
        ("v=0\r\nm=audio banana\r\n", "malformed"),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "no audio"),
        # a=fmtp without its a=rtpmap: aiortc raised StopIteration (found by tests/test_parsers_fuzz.py)
        ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fmtp:111 minptime=10\r\n", "malformed"),
    ],
)
async def test_malformed_sdp_is_400(whip: tuple[WhipIngest, RecordingHub, str], body: str, reason: str) -> None:
    _, hub, url = whip
    status, text, _ = await post(url, body)
    assert status == 400
    assert reason in text
    assert hub.handles == {}


async def test_truncated_offers_are_400_never_500(loopback_ice: None) -> None:
    """A cut-off offer (800, 1,200, 2,000 bytes...) used to reach aiortc without its DTLS
    fingerprint and fail with HTTP 500 ('NoneType' object has no attribute 'role')."""
    hub = RecordingHub()
    ingest = WhipIngest(hub, WebRTCConfig(port=0, max_sessions=1000), refusals=Refusals())
    await ingest.start()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(ArrayAudioTrack(tone(0.5), 16000))
    pc.createDataChannel("results")
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    url = f"http://127.0.0.1:{ingest.server.port}/whip"
    try:
        last_fingerprint = offer.rindex("a=fingerprint")
        cuts = sorted(c for c in {800, 1200, 2000, *range(100, len(offer), 97)} if c < len(offer))
        for cut in cuts:
            status, text, _ = await post(url, offer[:cut])
            if cut <= last_fingerprint:
                assert status == 400, (cut, status, text)
            else:
                assert status in (201, 400), (cut, status, text)
        status, text, _ = await post(url, offer + "a=x\r\n" * 3000)
        assert status == 413 or (status == 400 and "lines" in text)
    finally:
        await pc.close()
        await ingest.stop()


async def test_delete_unknown_session_is_404(whip: tuple[WhipIngest, RecordingHub, str]) -> None:
    _, _, url = whip
    async with aiohttp.ClientSession() as http, http.delete(url + "/nope/secret") as response:
        assert response.status == 404


async def test_only_the_location_url_can_end_a_session(whip: tuple[WhipIngest, RecordingHub, str]) -> None:
    """Any client could DELETE /whip/<session id> and end another client's call, and a session
    without ?stream_id published its session id as its stream id (issue 22, fix 7)."""
    ingest, hub, url = whip
    pc, offer = await audio_offer()
    try:
        status, _, headers = await post(url, offer)  # no stream_id
        assert status == 201
        (session,) = ingest.sessions.values()
        location = headers["Location"]
        _, whip_path, session_id, secret = location.split("/")
        assert (whip_path, session_id) == ("whip", session.session_id)
        assert len(secret) >= 40 and secret not in headers.get("ETag", "")
        (stream_id,) = hub.handles
        assert stream_id.startswith("whip-") and session.session_id not in stream_id and secret not in stream_id
        assert all(session.session_id not in v and secret not in v for v in hub.handles[stream_id].spec.metadata.values())
        base = f"http://127.0.0.1:{ingest.server.port}"
        async with aiohttp.ClientSession() as http:
            for attempt, expected in ((f"/whip/{session_id}", 403), (f"/whip/{session_id}/{secret[:-1]}x", 403),
                                      (f"/whip/{session_id}/", 404), (f"/whip/{stream_id}", 403),
                                      (f"/whip/{stream_id}/{secret}", 404)):
                async with http.delete(base + attempt) as response:
                    assert response.status == expected, attempt
            assert hub.handles[stream_id].close_reason is None and ingest.sessions
            async with http.delete(base + location) as response:
                assert response.status == 200
        assert hub.handles[stream_id].close_reason == "client" and not ingest.sessions
    finally:
        await pc.close()


async def test_over_max_sessions_is_503_and_delete_frees_the_slot(
    whip: tuple[WhipIngest, RecordingHub, str],
) -> None:
    ingest, hub, url = whip
    first, offer = await audio_offer()
    second, offer2 = await audio_offer()
    try:
        status, answer, headers = await post(url + "?stream_id=call-7&call_id=abc", offer)
        assert status == 201
        assert answer.startswith("v=0")
        assert headers["Content-Type"] == "application/sdp"
        location = headers["Location"]
        assert location.startswith("/whip/")
        assert hub.handles["call-7"].spec.metadata == {"call_id": "abc"}
        assert hub.handles["call-7"].spec.transport == "webrtc"

        status, text, _ = await post(url, offer2)
        assert status == 503
        assert "at most 1 WebRTC sessions" in text

        async with aiohttp.ClientSession() as http:
            async with http.delete(f"http://127.0.0.1:{ingest.server.port}{location}") as response:
                assert response.status == 200
            async with http.delete(f"http://127.0.0.1:{ingest.server.port}{location}") as response:
                assert response.status == 404
        assert hub.handles["call-7"].close_reason == "client"
        assert ingest.sessions == {}
    finally:
        await first.close()
        await second.close()


async def test_duplicate_stream_id_is_409(whip: tuple[WhipIngest, RecordingHub, str]) -> None:
    ingest, hub, url = whip
    await hub.open(StreamSpec("taken", 8000, "zmq"))
    pc, offer = await audio_offer()
    try:
        status, text, _ = await post(url + "?stream_id=taken", offer)
        assert status == 409
        assert "stream_exists" in text
        assert ingest.sessions == {}
    finally:
        await pc.close()


async def test_audio_arrives_and_an_unused_track_is_drained(
    whip: tuple[WhipIngest, RecordingHub, str],
) -> None:
    ingest, hub, url = whip
    seen: list[Any] = []

    async def keep_session() -> None:
        while not ingest.sessions:
            await asyncio.sleep(0.01)
        seen.extend(ingest.sessions.values())

    watcher = asyncio.create_task(keep_session())
    result = await whip_send(
        url, tone(1.5), 16000, stream_id="two-tracks", codec="pcmu", tail_s=0.3,
        extra_tracks=[ArrayAudioTrack(tone(1.5), 16000)],
    )
    await watcher
    session = seen[0]
    handle = hub.handles["two-tracks"]
    assert handle.spec.sample_rate_hz == 8000  # PCMU negotiated
    received_s = sum(len(c.samples) for c in handle.chunks) / 8000
    assert 1.0 < received_s <= 1.6
    assert all(c.samples.dtype == np.float32 and c.samples.ndim == 1 for c in handle.chunks)
    assert session.frames_discarded > 40  # the second track's frames were read and dropped
    assert handle.close_reason == "client"
    assert result.summary is not None and result.summary["audio_s"] == pytest.approx(received_s)
    assert result.results, "events reached the data channel"


async def connected_session(url: str, query: str = "") -> tuple[RTCPeerConnection, ArrayAudioTrack]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    track = ArrayAudioTrack(tone(30.0), 16000)
    pc.addTrack(track)
    await pc.setLocalDescription(await pc.createOffer())
    status, answer, _ = await post(url + query, pc.localDescription.sdp)
    assert status == 201
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return pc, track


async def wait_until(predicate: Any, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_peer_closing_ends_the_stream(whip: tuple[WhipIngest, RecordingHub, str]) -> None:
    ingest, hub, url = whip
    pc, _ = await connected_session(url, "?stream_id=hangup")
    handle = hub.handles["hangup"]
    await wait_until(lambda: len(handle.chunks) > 10, 5.0)
    await pc.close()  # no DELETE: the peer just goes away
    await wait_until(lambda: handle.close_reason is not None, 5.0)
    await wait_until(lambda: not ingest.sessions, 5.0)


async def test_stop_closes_every_session(whip: tuple[WhipIngest, RecordingHub, str]) -> None:
    ingest, hub, url = whip
    pc, _ = await connected_session(url, "?stream_id=busy")
    try:
        await wait_until(lambda: len(hub.handles["busy"].chunks) > 5, 5.0)
        await ingest.stop()
        assert hub.handles["busy"].close_reason == "shutdown"
        assert ingest.sessions == {}
        with pytest.raises(aiohttp.ClientConnectionError):  # its own HTTP server is gone too
            await post(url, "v=0\r\n")
    finally:
        await pc.close()


@pytest.mark.parametrize("query", ["?" + "k" * 5000 + "=v", "?k=" + "v" * 600,
                                   "?" + "&".join(f"k{i}=v" for i in range(33))])
async def test_metadata_over_the_shared_limit_is_400(whip: tuple[WhipIngest, RecordingHub, str], query: str) -> None:
    _, hub, url = whip
    pc, offer = await audio_offer()
    try:
        status, text, _ = await post(url + query, offer)
        assert status == 400 and "metadata" in text
        assert hub.handles == {}
    finally:
        await pc.close()
