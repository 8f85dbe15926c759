"""Twilio Media Streams ingest (also Telnyx and SignalWire, which speak the same protocol):
the gateway opens a WebSocket to `twilio.path` and sends JSON text messages.

    {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    {"event": "start", "sequenceNumber": "1", "streamSid": "MZ...", "start": {"streamSid": "MZ...",
        "accountSid": "AC...", "callSid": "CA...", "tracks": ["inbound", "outbound"],
        "customParameters": {...}, "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
    {"event": "media", "sequenceNumber": "3", "streamSid": "MZ...", "media": {"track": "inbound",
        "chunk": "1", "timestamp": "5", "payload": "<base64 µ-law>"}}
    {"event": "mark", ...}   {"event": "dtmf", ...}   (ignored, counted)
    {"event": "stop", "streamSid": "MZ...", "stop": {"accountSid": "AC...", "callSid": "CA..."}}

(https://www.twilio.com/docs/voice/media-streams/websocket-messages). Telnyx uses snake_case
(`stream_id`, `sequence_number`, `start.call_control_id`, `start.media_format.sample_rate`,
encoding `PCMU`/`PCMA`); both spellings are read.

Each track becomes one stream, `<streamSid>:<track>` (so inbound and outbound are two
streams of one call), opened at its first media message. Results carry `call_id`
(callSid), `stream_sid`, `track` and the `<Stream>` custom parameters (`param.<name>`).
`chunk` numbers become sequence numbers, so lost chunks are filled and counted.
Anything malformed (not JSON, unknown event, media before start, bad base64, unknown
track or encoding) closes only that WebSocket with a logged reason.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from aiohttp import WSCloseCode, web

from daemon.config import TwilioConfig
from daemon.http import HttpServer
from daemon.ingest.websockets import (
    ProtocolViolation,
    WebSocketConnection,
    WebSocketIngest,
    check_metadata,
    json_object,
    string_metadata,
)
from daemon.refusals import Refusals
from daemon.stream_api import AudioChunk, StreamHandle, StreamHub, StreamSpec
from daemon.webhooks import WebhookSender
from daemon.wire import g711

TRANSPORT = "twilio"
SAMPLE_RATE_HZ = 8000
TRACKS = ("inbound", "outbound")
MAX_PAYLOAD_BYTES = SAMPLE_RATE_HZ  # 1 s of 8 kHz G.711
MAX_CHUNK_NUMBER = 2**53  # a chunk counter, 50 per second: more than any call needs
_DECODERS = {
    "audio/x-mulaw": g711.decode_mulaw, "pcmu": g711.decode_mulaw, "mulaw": g711.decode_mulaw,
    "audio/x-alaw": g711.decode_alaw, "pcma": g711.decode_alaw, "alaw": g711.decode_alaw,
}
_IGNORED_EVENTS = ("connected", "mark", "dtmf", "clear", "error")


def _field(obj: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in obj:
            return obj[name]
    return None


def _object(message: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = message.get(key)
    if not isinstance(value, dict):
        raise ProtocolViolation(f"'{message.get('event')}' message without a '{key}' object")
    return value


class TwilioConnection(WebSocketConnection):
    def __init__(self, ws: web.WebSocketResponse, request: web.Request, hub: StreamHub, config: TwilioConfig,
                 webhooks: WebhookSender | None, refusals: Refusals) -> None:
        super().__init__(ws, request, TRANSPORT, refusals)
        self._hub = hub
        self._config = config
        self._webhooks = webhooks
        self.stream_sid: str | None = None
        self.metadata: dict[str, str] = {}
        self.tracks: tuple[str, ...] = TRACKS
        self.webhook_url = ""
        self._decode = g711.decode_mulaw
        self.handles: dict[str, StreamHandle] = {}
        self.ignored_events = 0
        self.stopped = False

    async def on_text(self, text: str) -> None:
        message = json_object(text)
        if not isinstance(message.get("event"), str):
            raise ProtocolViolation("message is not a JSON object with an 'event' string", WSCloseCode.INVALID_TEXT)
        event = message["event"]
        if self.stopped:
            raise ProtocolViolation(f"'{event}' message after 'stop'")
        if event == "media":
            await self._on_media(message)
        elif event == "start":
            self._on_start(message)
        elif event == "stop":
            self.stopped = True
            self.log.info("twilio_stop", streams=len(self.handles))
            await self.close_streams("client")
            await self.ws.close(code=WSCloseCode.OK)
        elif event in _IGNORED_EVENTS:
            self.ignored_events += 1
        else:
            raise ProtocolViolation(f"unknown event {event[:40]!r}")

    def _on_start(self, message: Mapping[str, Any]) -> None:
        if self.stream_sid is not None:
            raise ProtocolViolation("a second 'start' message")
        start = _object(message, "start")
        stream_sid = _field(start, "streamSid", "stream_id") or _field(message, "streamSid", "stream_id")
        call_sid = _field(start, "callSid", "call_control_id", "call_sid")
        if not isinstance(stream_sid, str) or not stream_sid or len(stream_sid) > 128:
            raise ProtocolViolation("'start' without a streamSid (1..128 characters)")
        fmt = _field(start, "mediaFormat", "media_format") or {"encoding": "audio/x-mulaw",
                                                                "sampleRate": SAMPLE_RATE_HZ, "channels": 1}
        if not isinstance(fmt, dict):
            raise ProtocolViolation("'start.mediaFormat' is not an object")
        encoding = str(fmt.get("encoding", "")).lower()
        rate = _field(fmt, "sampleRate", "sample_rate")
        channels = fmt.get("channels", 1)
        if encoding not in _DECODERS or rate != SAMPLE_RATE_HZ or channels != 1:
            raise ProtocolViolation(f"unsupported media format {fmt!r}: expected audio/x-mulaw (or PCMA) 8000 Hz mono"[:200])
        tracks = start.get("tracks", list(TRACKS))
        if not isinstance(tracks, list) or not tracks or any(t not in TRACKS for t in tracks):
            raise ProtocolViolation(f"'start.tracks' must list 'inbound'/'outbound', got {tracks!r}"[:200])
        params = _field(start, "customParameters", "custom_parameters") or {}
        if not isinstance(params, dict):
            raise ProtocolViolation("'start.customParameters' is not an object")
        self.stream_sid, self.tracks, self._decode = stream_sid, tuple(tracks), _DECODERS[encoding]
        self.webhook_url = self._pick_webhook(params)
        extra = {k: v for k, v in params.items() if k != self._config.webhook_parameter}
        self.metadata = {"gateway": TRANSPORT, "stream_sid": stream_sid,
                         **({"call_id": str(call_sid)[:128]} if call_sid else {}),
                         **string_metadata({k: v for k, v in start.items() if k == "accountSid"}, ""),
                         **string_metadata(extra, "param.")}
        check_metadata({**self.metadata, "track": TRACKS[0]})
        self.log = self.log.bind(stream_sid=stream_sid, call_id=self.metadata.get("call_id"))
        self.log.info("twilio_start", tracks=self.tracks, encoding=encoding)

    def _pick_webhook(self, params: Mapping[str, Any]) -> str:
        name = self._config.webhook_parameter
        candidate = params.get(name) if name else None
        if isinstance(candidate, str) and candidate:
            if self._webhooks is not None and self._webhooks.allows(candidate):
                return candidate
            self.log.warning("twilio_webhook_refused", url=candidate[:200],
                             reason="not under webhooks.allowed_url_prefixes")
        return self._config.webhook_url

    async def _on_media(self, message: Mapping[str, Any]) -> None:
        if self.stream_sid is None:
            raise ProtocolViolation("'media' before 'start'")
        media = _object(message, "media")
        track = media.get("track", "inbound")
        if track not in self.tracks:
            raise ProtocolViolation(f"media for track {str(track)[:40]!r}, not one of the started tracks {self.tracks}")
        payload_text = media.get("payload")
        if not isinstance(payload_text, str) or not payload_text:
            raise ProtocolViolation("'media' without a base64 'payload'")
        try:
            payload = base64.b64decode(payload_text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolViolation(f"'media.payload' is not valid base64: {exc}") from None
        if not 0 < len(payload) <= MAX_PAYLOAD_BYTES:
            raise ProtocolViolation(f"'media.payload' holds {len(payload)} bytes; allowed 1..{MAX_PAYLOAD_BYTES}")
        sequence = self._chunk_number(media.get("chunk"))
        handle = self.handles.get(track) or await self._open(track)
        await handle.push(AudioChunk(self._decode(payload), sequence))

    @staticmethod
    def _chunk_number(chunk: Any) -> int | None:
        if chunk is None:
            return None
        try:
            number = int(chunk) if isinstance(chunk, (int, str)) and len(str(chunk)) <= 20 else None
        except ValueError:
            number = None
        if number is None or not 0 <= number <= MAX_CHUNK_NUMBER:
            raise ProtocolViolation(f"'media.chunk' is not a whole number 0..{MAX_CHUNK_NUMBER}: {str(chunk)[:40]!r}",
                                    code="bad_chunk")
        return number

    async def _open(self, track: str) -> StreamHandle:
        spec = StreamSpec(stream_id=f"{self.stream_sid}:{track}", sample_rate_hz=SAMPLE_RATE_HZ,
                          transport=TRANSPORT, metadata={**self.metadata, "track": track})
        handle = self.handles[track] = await self._hub.open(spec)
        if self._webhooks is not None and self.webhook_url:
            self._webhooks.watch(handle, self.webhook_url)
        return handle

    async def close_streams(self, reason: str) -> None:
        handles, self.handles = list(self.handles.values()), {}
        for handle in handles:
            await handle.close(reason)


class TwilioIngest(WebSocketIngest):
    transport = TRANSPORT

    def __init__(self, hub: StreamHub, config: TwilioConfig, server: HttpServer,
                 webhooks: WebhookSender | None = None, *, refusals: Refusals) -> None:
        self._hub = hub
        self._config = config
        self._webhooks = webhooks
        super().__init__(server, config.path, config.max_connections, refusals)

    def connect(self, ws: web.WebSocketResponse, request: web.Request) -> WebSocketConnection:
        return TwilioConnection(ws, request, self._hub, self._config, self._webhooks, self._refusals)
