"""WebRTC ingest over WHIP (RFC 9725): browsers and softphones push one audio track.

    POST   /whip[?stream_id=ID&key=value...]   Content-Type: application/sdp, body = offer
           -> 201 Created, body = answer (all ICE candidates, no trickle),
              Location: /whip/<session-id>/<secret>
    DELETE /whip/<session-id>/<secret>         -> 200, the stream is closed (its summary is published)

The Location URL is the WHIP session's resource (RFC 9725) and its only credential: the
secret is 256 random bits that only the offerer receives, so only it can end the session
(a wrong secret is 403, an unknown session 404). Neither the session id nor the secret is
ever published: a session without `?stream_id` gets a stream id of its own (`whip-<random>`).

Errors: 415 wrong content type, 400 malformed SDP (also a truncated offer: every media
section needs ICE credentials and a DTLS fingerprint; at most 2,000 lines and 16 media
sections) or no audio to receive, 413 an offer over 64 KiB, 404 unknown session, 409
stream id in use, 503 over `max_sessions` (or the hub is full). Every refusal is logged
and counted (`input_refused`, reason `http_<status>`). The adapter only translates: the first audio track's frames become mono
float32 `AudioChunk`s at the negotiated codec's rate (Opus 48 kHz, G.711 8 kHz)
and are pushed into a hub stream; every other track is drained (aiortc's track
queues are unbounded). When the peer opens a data channel, the stream's events
(hop results, `opened`, `closed`) are sent back on it as JSON text.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import structlog
from aiohttp import web
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc import sdp as aiortc_sdp
from aiortc.exceptions import InvalidAccessError, InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamError

from daemon.auth import TOKEN_QUERY
from daemon.config import WebRTCConfig
from daemon.http import HttpServer
from daemon.refusals import Refusals
from daemon.stream_api import (
    AudioChunk,
    StreamClosedError,
    StreamHandle,
    StreamHub,
    StreamRejected,
    StreamSpec,
)
from daemon.wire.endpoints import WHIP_PATH
from daemon.wire.limits import MAX_STREAM_ID_CHARS, metadata_problem

log = structlog.get_logger(__name__)

SDP_CONTENT_TYPE = "application/sdp"
TRANSPORT = "webrtc"
# Events produced before the peer's data channel is open wait here; older ones are dropped.
MAX_PENDING_EVENTS = 256
CLOSE_FLUSH_TIMEOUT_S = 2.0
MAX_OFFER_BYTES = 64 * 1024  # a browser's offer is 2-8 KiB
MAX_OFFER_LINES = 2000
MAX_MEDIA_SECTIONS = 16
# aiortc's SDP parser reports some malformations with `assert`.
_SDP_ERRORS = (ValueError, KeyError, IndexError, TypeError, AssertionError, InvalidAccessError, OperationError)
_REJECTION_STATUS = {"stream_exists": 409, "too_many_streams": 503, "server_shutting_down": 503}


class WhipRequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def frame_to_mono(resampler: av.AudioResampler, frame: av.AudioFrame) -> npt.NDArray[np.float32]:
    """Any aiortc audio frame (s16 stereo Opus, s16 mono G.711) -> mono float32 at the resampler's rate."""
    parts = [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


class FrameSequencer:
    """Chunk sequence numbers from RTP timestamps: a jump (lost packets) skips as many numbers
    as frames are missing, so the hub fills the gap with silence and counts it."""

    def __init__(self) -> None:
        self._next_sequence = 0
        self._next_pts: int | None = None

    def sequence_of(self, frame: av.AudioFrame) -> int:
        pts, length = frame.pts, frame.samples
        if pts is not None and self._next_pts is not None and length and pts >= self._next_pts + length:
            self._next_sequence += round((pts - self._next_pts) / length)
        sequence = self._next_sequence
        self._next_sequence += 1
        self._next_pts = None if pts is None else pts + length
        return sequence


def negotiated_audio_rate_hz(answer_sdp: str, mid: str | None) -> int:
    """Clock rate of the codec the peer will send on the audio m-section `mid` (first in the answer)."""
    description = aiortc_sdp.SessionDescription.parse(answer_sdp)
    for media in description.media:
        if media.kind == "audio" and (mid is None or media.rtp.muxId == mid) and media.rtp.codecs:
            return int(media.rtp.codecs[0].clockRate)
    raise WhipRequestError(400, "no audio codec in common (the daemon accepts Opus, PCMU and PCMA)")


def parse_offer(body: bytes) -> tuple[str, aiortc_sdp.SessionDescription]:
    """The offer's text and parsed form, or WhipRequestError(400): bounded in size, lines and
    media sections, and every section carries what aiortc needs to answer (ICE credentials,
    a DTLS fingerprint) - a truncated offer used to reach aiortc without them and fail with 500."""
    if len(body) > MAX_OFFER_BYTES:
        raise WhipRequestError(413, f"SDP offer of {len(body)} bytes (at most {MAX_OFFER_BYTES})")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WhipRequestError(400, "SDP offer is not UTF-8") from exc
    if not text.lstrip().startswith("v=0"):
        raise WhipRequestError(400, "SDP offer must start with 'v=0'")
    if text.count("\n") > MAX_OFFER_LINES:
        raise WhipRequestError(400, f"SDP offer has more than {MAX_OFFER_LINES} lines")
    try:
        description = aiortc_sdp.SessionDescription.parse(text)
    except Exception as exc:  # the parser's input is the peer's: any failure (even StopIteration) is a 400
        raise WhipRequestError(400, f"malformed SDP offer: {exc!r}"[:300]) from exc
    if len(description.media) > MAX_MEDIA_SECTIONS:
        raise WhipRequestError(400, f"SDP offer has {len(description.media)} media sections "
                               f"(at most {MAX_MEDIA_SECTIONS})")
    for index, media in enumerate(description.media):
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise WhipRequestError(400, f"SDP offer media section {index} has no ICE credentials "
                                   "(a=ice-ufrag, a=ice-pwd); is the offer complete?")
        if media.dtls is None or not media.dtls.fingerprints:
            raise WhipRequestError(400, f"SDP offer media section {index} has no DTLS fingerprint "
                                   "(a=fingerprint); is the offer complete?")
    sending_audio = [
        m for m in description.media if m.kind == "audio" and m.direction in (None, "sendrecv", "sendonly")
    ]
    if not sending_audio:
        raise WhipRequestError(400, "SDP offer has no audio m-section that sends (sendonly or sendrecv)")
    return text, description


def stream_request(query: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """Stream id (query `stream_id`, else a random `whip-...` id, never the session's) and
    metadata (the other query parameters)."""
    metadata = {k: v for k, v in query.items() if k not in ("stream_id", TOKEN_QUERY)}  # a token is no metadata
    problem = metadata_problem(metadata)
    if problem is not None:
        raise WhipRequestError(400, f"query parameters (stream metadata): {problem}")
    stream_id = query.get("stream_id", f"whip-{secrets.token_hex(8)}")
    if not stream_id or len(stream_id) > MAX_STREAM_ID_CHARS or not stream_id.isprintable():
        raise WhipRequestError(400, f"stream_id must be 1..{MAX_STREAM_ID_CHARS} printable characters")
    return stream_id, metadata


class WhipSession:
    """One peer connection feeding one hub stream. Owns its tasks; `close()` is idempotent."""

    def __init__(
        self, session_id: str, pc: RTCPeerConnection, handle: StreamHandle, sample_rate_hz: int
    ) -> None:
        self.session_id = session_id
        self.secret = secrets.token_urlsafe(32)  # the DELETE credential, in the Location URL only
        self.pc = pc
        self.handle = handle
        self.sample_rate_hz = sample_rate_hz
        self.frames_pushed = 0
        self.frames_discarded = 0  # frames of tracks the daemon does not use, drained and dropped
        self.events_dropped = 0  # events lost before the data channel opened
        self._channel: RTCDataChannel | None = None
        self._pending: deque[str] = deque(maxlen=MAX_PENDING_EVENTS)
        self._media_tasks: set[asyncio.Task[None]] = set()
        self._forwarder: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = asyncio.Event()
        self._log = log.bind(session_id=session_id, stream_id=handle.stream_id)
        self.on_stream_ended: Callable[[WhipSession], None] | None = None

    @property
    def stream_id(self) -> str:
        return self.handle.stream_id

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def start(self, audio: MediaStreamTrack, others: list[MediaStreamTrack], forward_events: bool) -> None:
        self._media_tasks.add(asyncio.create_task(self.run_audio(audio), name=f"whip-audio-{self.session_id}"))
        for track in others:
            self._media_tasks.add(asyncio.create_task(self.run_drain(track), name=f"whip-drain-{self.session_id}"))
        if forward_events:
            self._forwarder = asyncio.create_task(self.run_events(), name=f"whip-events-{self.session_id}")

    def attach_channel(self, channel: RTCDataChannel) -> None:
        if self._channel is not None:
            self._log.info("whip_extra_datachannel_ignored", label=channel.label)
            return
        self._channel = channel
        if channel.readyState == "open":
            self._flush_pending()
        else:
            channel.on("open", self._flush_pending)

    def _flush_pending(self) -> None:
        channel = self._channel
        while channel is not None and channel.readyState == "open" and self._pending:
            channel.send(self._pending.popleft())

    def _send_event(self, event: Mapping[str, Any]) -> None:
        text = json.dumps(event, separators=(",", ":"))
        channel = self._channel
        if channel is not None and channel.readyState == "open":
            self._flush_pending()
            channel.send(text)
            return
        if len(self._pending) == self._pending.maxlen:
            self.events_dropped += 1
        self._pending.append(text)

    async def run_audio(self, track: MediaStreamTrack) -> None:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=self.sample_rate_hz)
        sequencer = FrameSequencer()
        try:
            while True:
                frame = await track.recv()
                if not isinstance(frame, av.AudioFrame):
                    continue
                sequence = sequencer.sequence_of(frame)
                samples = frame_to_mono(resampler, frame)
                if samples.size:
                    await self.handle.push(AudioChunk(samples, sequence))
                    self.frames_pushed += 1
        except MediaStreamError:
            self._log.info("whip_audio_track_ended", frames=self.frames_pushed)
        except StreamClosedError:
            self._log.info("whip_stream_closed_by_daemon", frames=self.frames_pushed)
            if not self._closing and self.on_stream_ended is not None:
                self.on_stream_ended(self)

    async def run_drain(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.frames_discarded += 1

    async def run_events(self) -> None:
        async for event in self.handle.events():
            self._send_event(event)
        if not self._closing and self.on_stream_ended is not None:
            self.on_stream_ended(self)  # the daemon closed the stream (idle, error): end the call too

    async def close(self, reason: str) -> None:
        """Stop reading media, close the stream (its summary goes out), then the peer connection."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        current = asyncio.current_task()
        media = [t for t in self._media_tasks if t is not current]
        for task in media:
            task.cancel()
        await asyncio.gather(*media, return_exceptions=True)
        try:
            await self.handle.close(reason)
            if self._forwarder is not None:
                await self._wait_for_forwarder()
                await self._wait_channel_drained()
        finally:
            if self._forwarder is not None and not self._forwarder.done():
                self._forwarder.cancel()
                await asyncio.gather(self._forwarder, return_exceptions=True)
            await self.pc.close()
            self._closed.set()
            self._log.info(
                "whip_session_closed",
                reason=reason,
                frames=self.frames_pushed,
                frames_discarded=self.frames_discarded,
                events_dropped=self.events_dropped,
            )

    async def _wait_for_forwarder(self) -> None:
        assert self._forwarder is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._forwarder), CLOSE_FLUSH_TIMEOUT_S)
        except TimeoutError:
            self._log.warning("whip_events_not_finished")

    async def _wait_channel_drained(self) -> None:
        # So the `closed` summary leaves before the transport goes away.
        channel = self._channel
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_FLUSH_TIMEOUT_S
        while channel is not None and channel.readyState == "open" and channel.bufferedAmount > 0:
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.02)


class WhipIngest:
    """The WHIP endpoint: registers its routes on an `HttpServer` and owns the sessions.

    Without `server`, it runs its own on `config.host:config.port`; with one (shared
    with the web console), the owner of that server starts and stops it.
    """

    def __init__(self, hub: StreamHub, config: WebRTCConfig, server: HttpServer | None = None, *,
                 refusals: Refusals) -> None:
        self._hub = hub
        self._refusals = refusals
        self._config = config
        self._owns_server = server is None
        self.server = server if server is not None else HttpServer(config.host, config.port)
        self._sessions: dict[str, WhipSession] = {}
        self._setting_up = 0
        self._background: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.add_routes(self.server.app)

    @property
    def sessions(self) -> Mapping[str, WhipSession]:
        return self._sessions

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(WHIP_PATH, self.handle_offer)
        app.router.add_delete(WHIP_PATH + "/{session_id}/{secret}", self.handle_delete)
        app.router.add_delete(WHIP_PATH + "/{session_id}", self.handle_delete_without_secret)

    async def start(self) -> None:
        if self._owns_server:
            await self.server.start()

    async def stop(self) -> None:
        self._stopping = True
        sessions = list(self._sessions.values())
        await asyncio.gather(*(s.close("shutdown") for s in sessions), return_exceptions=True)
        background = list(self._background)
        await asyncio.gather(*background, return_exceptions=True)
        if self._owns_server:
            await self.server.stop()

    async def handle_offer(self, request: web.Request) -> web.Response:
        try:
            return await self._accept_offer(request)
        except WhipRequestError as exc:
            self._refusals.refuse(TRANSPORT, f"http_{exc.status}", message=exc.message[:200], peer=request.remote)
            return web.Response(status=exc.status, text=exc.message + "\n")

    async def _accept_offer(self, request: web.Request) -> web.Response:
        if self._stopping:
            raise WhipRequestError(503, "the daemon is shutting down")
        if request.content_type != SDP_CONTENT_TYPE:
            raise WhipRequestError(415, f"Content-Type must be {SDP_CONTENT_TYPE}")
        offer_sdp, offer = parse_offer(await request.read())
        if len(self._sessions) + self._setting_up >= self._config.max_sessions:
            raise WhipRequestError(503, f"at most {self._config.max_sessions} WebRTC sessions")
        session_id = uuid.uuid4().hex
        stream_id, metadata = stream_request(request.query)
        self._setting_up += 1
        try:
            session = await self._negotiate(session_id, stream_id, metadata, offer_sdp, offer)
        finally:
            self._setting_up -= 1
        if self._stopping:  # stop() began while this offer was being negotiated
            await session.close("shutdown")
            raise WhipRequestError(503, "the daemon is shutting down")
        self._sessions[session_id] = session
        location = f"{WHIP_PATH}/{session_id}/{session.secret}"
        log.info("whip_session_opened", session_id=session_id, stream_id=stream_id, rate=session.sample_rate_hz)
        return web.Response(
            status=201,
            body=session.pc.localDescription.sdp.encode(),
            headers={"Content-Type": SDP_CONTENT_TYPE, "Location": location, "ETag": f'"{session_id}"'},
        )

    async def _negotiate(
        self,
        session_id: str,
        stream_id: str,
        metadata: dict[str, str],
        offer_sdp: str,
        offer: aiortc_sdp.SessionDescription,
    ) -> WhipSession:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        tracks: list[MediaStreamTrack] = []
        channels: list[RTCDataChannel] = []
        pc.on("track", tracks.append)
        pc.on("datachannel", channels.append)
        try:
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            except Exception as exc:  # the peer's offer is all it reads: any failure is the offer's
                raise WhipRequestError(400, f"cannot apply the SDP offer: {exc!r}"[:300]) from exc
            for transceiver in pc.getTransceivers():
                if transceiver.kind != "audio":
                    transceiver.direction = "inactive"  # never decode video we would only discard
            await pc.setLocalDescription(await pc.createAnswer())
            audio = next((t for t in tracks if t.kind == "audio"), None)
            if audio is None:
                raise WhipRequestError(400, "SDP offer has no audio track to receive")
            audio_mid = next((tr.mid for tr in pc.getTransceivers() if tr.receiver.track is audio), None)
            rate_hz = negotiated_audio_rate_hz(pc.localDescription.sdp, audio_mid)
            spec = StreamSpec(stream_id=stream_id, sample_rate_hz=rate_hz, transport=TRANSPORT, metadata=metadata)
            try:
                handle = await self._hub.open(spec)
            except StreamRejected as exc:
                raise WhipRequestError(_REJECTION_STATUS.get(exc.code, 400), f"{exc.code}: {exc.message}") from exc
        except _SDP_ERRORS + (InvalidStateError,) as exc:
            await pc.close()
            raise WhipRequestError(400, f"cannot answer the SDP offer: {exc}") from exc
        except BaseException:
            await pc.close()
            raise
        session = WhipSession(session_id, pc, handle, rate_hz)
        session.on_stream_ended = lambda s: self._spawn(self._end(s, "error"))
        has_application = any(m.kind == "application" for m in offer.media)
        session.start(audio, [t for t in tracks if t is not audio], forward_events=has_application)
        for channel in channels:
            session.attach_channel(channel)
        pc.remove_all_listeners("datachannel")
        pc.on("datachannel", session.attach_channel)

        def on_state_change() -> None:
            if pc.connectionState in ("failed", "closed"):
                self._spawn(self._end(session, "error" if pc.connectionState == "failed" else "client"))

        pc.on("connectionstatechange", on_state_change)
        return session

    async def handle_delete(self, request: web.Request) -> web.Response:
        session = self._sessions.get(request.match_info["session_id"])
        if session is None:
            self._refusals.refuse(TRANSPORT, "http_404", message="DELETE of an unknown WHIP session", peer=request.remote)
            return web.Response(status=404, text="unknown WHIP session\n")
        if not hmac.compare_digest(request.match_info["secret"].encode(), session.secret.encode()):
            self._refusals.refuse(TRANSPORT, "http_403", message="DELETE with a wrong session secret", peer=request.remote)
            return web.Response(status=403, text="DELETE the Location URL the session was created with\n")
        await self._end(session, "client")
        return web.Response(status=200)

    async def handle_delete_without_secret(self, request: web.Request) -> web.Response:
        self._refusals.refuse(TRANSPORT, "http_403", message="DELETE without the session secret", peer=request.remote)
        return web.Response(status=403, text="DELETE the Location URL the session was created with\n")

    async def _end(self, session: WhipSession, reason: str) -> None:
        try:
            await session.close(reason)
        finally:
            self._sessions.pop(session.session_id, None)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
