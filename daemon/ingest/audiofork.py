"""FreeSWITCH mod_audio_fork and jambonz `listen` ingest: one WebSocket per call at `audiofork.path`.

Both send one JSON text message first, then binary frames of raw 16-bit little-endian
linear PCM (L16):

- mod_audio_fork (`uuid_audio_fork <uuid> start <ws-url> <mono|mixed|stereo> <8k|16k> <metadata>`,
  https://github.com/drachtio/drachtio-freeswitch-modules/tree/main/modules/mod_audio_fork):
  the preamble is the `<metadata>` JSON as given; "stereo" interleaves the caller (left)
  and the callee (right). The module does not put the rate in the preamble, so put it in
  the JSON (`"sampleRate": 16000`) or in the URL (`?sample_rate=16000&mix_type=stereo`).
- jambonz `listen` (https://docs.jambonz.org/verbs/verbs/listen, subprotocol
  `audio.jambonz.org`): the preamble holds the call attributes (`callSid`, `from`, `to`,
  `direction`...), `sampleRate`, `mixType` and the verb's `metadata`.

Rate: preamble `sampleRate`/`sample_rate` (8000, "8k", "16000"...), else the URL, else
`audiofork.default_sample_rate_hz`. Call id: `callSid`/`call_sid`/`uuid`/`callId`/`call_id`,
else `?call_id=`. Mono/mixed audio is one stream `<call id>`; stereo is two, `<call id>:caller`
and `<call id>:callee`. Later text messages that are JSON objects (jambonz DTMF events) are
ignored and counted; anything malformed (broken JSON, audio before the preamble, an odd
frame length, a bad rate or mix type) closes only that WebSocket with a logged reason.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from aiohttp import WSCloseCode, web

from daemon.config import AudioForkConfig
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
from daemon.wire.frames import MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ

TRANSPORT = "audiofork"
SUBPROTOCOLS = ("audio.jambonz.org", "audio.drachtio.org")
MIX_TYPES = {"mono": 1, "mixed": 1, "stereo": 2}
STEREO_TRACKS = ("caller", "callee")
CALL_ID_KEYS = ("callSid", "call_sid", "uuid", "callId", "call_id")
RATE_KEYS = ("sampleRate", "sample_rate", "samplingRate", "sampling_rate")
MIX_KEYS = ("mixType", "mix_type")


def parse_rate(value: Any) -> int:
    """8000, "8000", "8k", "16k" -> Hz; ProtocolViolation otherwise (also for "infk", "nank", "1e400k")."""
    text = str(value).strip().lower()
    try:
        number = float(text[:-1]) * 1000 if text.endswith("k") else float(int(text))
    except (ValueError, OverflowError):
        number = math.nan
    if len(text) > 16:
        number = math.nan
    if not math.isfinite(number):
        raise ProtocolViolation(f"sample rate {str(value)[:20]!r} is not a number", code="bad_rate")
    rate = int(number)
    if not MIN_SAMPLE_RATE_HZ <= rate <= MAX_SAMPLE_RATE_HZ:
        raise ProtocolViolation(f"sample rate {rate} Hz is outside {MIN_SAMPLE_RATE_HZ}..{MAX_SAMPLE_RATE_HZ}",
                                code="bad_rate")
    return rate


def _first(sources: tuple[Mapping[str, Any], ...], keys: tuple[str, ...]) -> Any:
    for source in sources:
        for key in keys:
            if source.get(key) not in (None, ""):
                return source[key]
    return None


class AudioForkConnection(WebSocketConnection):
    def __init__(self, ws: web.WebSocketResponse, request: web.Request, hub: StreamHub,
                 config: AudioForkConfig, webhooks: WebhookSender | None, refusals: Refusals) -> None:
        super().__init__(ws, request, TRANSPORT, refusals)
        self._hub = hub
        self._config = config
        self._webhooks = webhooks
        self.started = False
        self.channels = 1
        self.sample_rate_hz = config.default_sample_rate_hz
        self.handles: list[StreamHandle] = []
        self.frames = 0
        self.ignored_texts = 0

    async def on_text(self, text: str) -> None:
        message = json_object(text)
        if self.started:
            self.ignored_texts += 1
            return
        await self._start(message)

    async def _start(self, preamble: Mapping[str, Any]) -> None:
        query: Mapping[str, Any] = self.request.query
        inner = preamble.get("metadata")
        nested: Mapping[str, Any] = inner if isinstance(inner, dict) else {}
        sources = (preamble, nested, query)
        rate = _first(sources, RATE_KEYS)
        self.sample_rate_hz = self._config.default_sample_rate_hz if rate is None else parse_rate(rate)
        mix = str(_first(sources, MIX_KEYS) or "mono").lower()
        if mix not in MIX_TYPES:
            raise ProtocolViolation(f"mix type {mix[:20]!r} is not one of {', '.join(MIX_TYPES)}")
        self.channels = MIX_TYPES[mix]
        call_id = _first(sources, CALL_ID_KEYS)
        if call_id is None:
            call_id = uuid.uuid4().hex
            self.log.info("audiofork_no_call_id", generated=call_id)
        call_id = str(call_id)[:128]
        metadata = {"gateway": TRANSPORT, "call_id": call_id, "mix_type": mix,
                    **string_metadata({k: v for k, v in preamble.items()
                                       if k not in CALL_ID_KEYS + RATE_KEYS + MIX_KEYS
                                       and k != self._config.webhook_parameter}),
                    **string_metadata({k: v for k, v in nested.items() if k != self._config.webhook_parameter},
                                      "meta.")}
        webhook_url = self._pick_webhook(_first((preamble, nested), (self._config.webhook_parameter,))
                                         if self._config.webhook_parameter else None)
        check_metadata({**metadata, "track": STEREO_TRACKS[0]} if self.channels == 2 else metadata)
        self.log = self.log.bind(call_id=call_id)
        tracks = STEREO_TRACKS if self.channels == 2 else (None,)
        for track in tracks:
            spec = StreamSpec(stream_id=call_id if track is None else f"{call_id}:{track}",
                              sample_rate_hz=self.sample_rate_hz, transport=TRANSPORT,
                              metadata=metadata if track is None else {**metadata, "track": track})
            handle = await self._hub.open(spec)
            self.handles.append(handle)
            if self._webhooks is not None and webhook_url:
                self._webhooks.watch(handle, webhook_url)
        self.started = True
        self.log.info("audiofork_start", sample_rate_hz=self.sample_rate_hz, mix_type=mix,
                      subprotocol=self.ws.ws_protocol)

    def _pick_webhook(self, candidate: Any) -> str:
        if isinstance(candidate, str) and candidate:
            if self._webhooks is not None and self._webhooks.allows(candidate):
                return candidate
            self.log.warning("audiofork_webhook_refused", url=candidate[:200],
                             reason="not under webhooks.allowed_url_prefixes")
        return self._config.webhook_url

    async def on_binary(self, data: bytes) -> None:
        if not self.started:
            raise ProtocolViolation("audio before the JSON preamble")
        frame_bytes = 2 * self.channels
        if not data or len(data) % frame_bytes:
            raise ProtocolViolation(f"audio frame of {len(data)} bytes is not a non-zero multiple of "
                                    f"{frame_bytes} (16-bit, {self.channels} channel(s))", WSCloseCode.UNSUPPORTED_DATA)
        if len(data) > frame_bytes * self.sample_rate_hz:
            raise ProtocolViolation(f"audio frame of {len(data)} bytes is longer than 1 s")
        samples: npt.NDArray[np.float32] = np.frombuffer(data, dtype="<i2").astype(np.float32) * np.float32(1 / 32768)
        if self.channels == 1:
            await self.handles[0].push(AudioChunk(samples))
        else:
            interleaved = samples.reshape(-1, 2)
            for channel, handle in enumerate(self.handles):
                await handle.push(AudioChunk(np.ascontiguousarray(interleaved[:, channel])))
        self.frames += 1

    async def close_streams(self, reason: str) -> None:
        handles, self.handles = self.handles, []
        for handle in handles:
            await handle.close(reason)


class AudioForkIngest(WebSocketIngest):
    transport = TRANSPORT
    subprotocols = SUBPROTOCOLS

    def __init__(self, hub: StreamHub, config: AudioForkConfig, server: HttpServer,
                 webhooks: WebhookSender | None = None, *, refusals: Refusals) -> None:
        self._hub = hub
        self._config = config
        self._webhooks = webhooks
        super().__init__(server, config.path, config.max_connections, refusals)

    def connect(self, ws: web.WebSocketResponse, request: web.Request) -> WebSocketConnection:
        return AudioForkConnection(ws, request, self._hub, self._config, self._webhooks, self._refusals)
