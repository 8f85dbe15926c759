"""A small WHIP client (aiortc): send audio to the daemon over WebRTC, read results from the data channel.

    result = await whip_send("http://127.0.0.1:8080/whip", samples, 16000, stream_id="call-1")
    result.events   # every message the daemon sent on the data channel (results, opened, closed)
    result.summary  # the `closed` event's summary, or None if it never arrived

WebRTC is a real-time transport, so the audio is paced at `speed` x real time
(1.0 by default). The track is sent as Opus unless `codec="pcmu"`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import av
import numpy as np
import numpy.typing as npt
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from yarl import URL

FRAME_MS = 20
Codec = Literal["opus", "pcmu"]
_MIME_TYPES: dict[str, str] = {"opus": "audio/opus", "pcmu": "audio/PCMU"}


class WhipError(Exception):
    """The WHIP endpoint refused the offer or the session; `status` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"WHIP {status}: {message}")
        self.status = status
        self.message = message


class ArrayAudioTrack(MediaStreamTrack):
    """Mono float32 samples as 20 ms s16 frames, paced at `speed` x real time; ends after the last frame."""

    kind = "audio"

    def __init__(self, samples: npt.NDArray[np.floating[Any]], sample_rate_hz: int, speed: float = 1.0) -> None:
        super().__init__()
        if samples.ndim != 1:
            raise ValueError("ArrayAudioTrack needs mono samples (1-D)")
        if speed <= 0:
            raise ValueError("speed must be positive")
        pcm = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
        self._pcm = (pcm * 32767.0).astype(np.int16)
        self._rate = sample_rate_hz
        self._frame_samples = sample_rate_hz * FRAME_MS // 1000
        self._speed = speed
        self._position = 0
        self._started_at: float | None = None
        self.finished = asyncio.Event()

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live" or self._position >= len(self._pcm):
            self.finished.set()
            self.stop()
            raise MediaStreamError
        if self._started_at is None:
            self._started_at = time.monotonic()
        due = self._started_at + self._position / self._rate / self._speed
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        chunk = self._pcm[self._position : self._position + self._frame_samples]
        if len(chunk) < self._frame_samples:
            chunk = np.pad(chunk, (0, self._frame_samples - len(chunk)))
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self._rate
        frame.pts = self._position
        frame.time_base = fractions.Fraction(1, self._rate)
        self._position += self._frame_samples
        return frame


@dataclass
class WhipResult:
    location: str
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def results(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == "result"]

    @property
    def summary(self) -> dict[str, Any] | None:
        closed = [e for e in self.events if e.get("type") == "closed"]
        return closed[-1].get("summary") if closed else None


def _prefer_codec(pc: RTCPeerConnection, codec: Codec) -> None:
    capabilities = RTCRtpSender.getCapabilities("audio").codecs
    preferred = [c for c in capabilities if c.mimeType.lower() == _MIME_TYPES[codec].lower()]
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "audio":
            transceiver.setCodecPreferences(preferred)


async def whip_send(
    url: str,
    samples: npt.NDArray[np.floating[Any]],
    sample_rate_hz: int,
    *,
    stream_id: str | None = None,
    metadata: Mapping[str, str] | None = None,
    codec: Codec = "opus",
    speed: float = 1.0,
    tail_s: float = 1.0,
    closed_timeout_s: float = 5.0,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    extra_tracks: list[MediaStreamTrack] | None = None,
    token: str | None = None,
) -> WhipResult:
    """Send `samples` over one WHIP session, then DELETE it and wait for the `closed` summary.

    `tail_s`: time to keep the session up after the last frame so the last hops are
    scored. `extra_tracks` are sent as well (the daemon only listens to the first audio track).
    `token`: the bearer token when the daemon's HTTP listener authenticates (docs/security.md);
    one in the URL (`?token=`) is moved into the header, which the DELETE carries too.
    """
    parsed = URL(url)
    if "token" in parsed.query:
        token = token or parsed.query["token"]
        url = str(parsed.without_query_params("token"))
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    query = dict(metadata or {})
    if stream_id is not None:
        query["stream_id"] = stream_id
    track = ArrayAudioTrack(samples, sample_rate_hz, speed)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    channel = pc.createDataChannel("results")
    closed = asyncio.Event()
    events: list[dict[str, Any]] = []

    @channel.on("message")
    def on_message(message: str | bytes) -> None:
        event = json.loads(message)
        events.append(event)
        if on_event is not None:
            on_event(event)
        if event.get("type") == "closed":
            closed.set()

    pc.addTrack(track)
    for extra in extra_tracks or []:
        pc.addTrack(extra)
    _prefer_codec(pc, codec)
    try:
        async with aiohttp.ClientSession() as http:
            await pc.setLocalDescription(await pc.createOffer())
            async with http.post(
                url,
                params=query,
                data=pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp", **auth},
            ) as response:
                body = await response.text()
                if response.status != 201:
                    raise WhipError(response.status, body.strip())
                location = str(response.url.join(URL(response.headers["Location"])))
            result = WhipResult(location=location, events=events)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
            await track.finished.wait()
            await asyncio.sleep(tail_s)
            async with http.delete(location, headers=auth) as response:
                if response.status != 200:
                    raise WhipError(response.status, (await response.text()).strip())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closed.wait(), closed_timeout_s)
            return result
    finally:
        await pc.close()
