"""ZeroMQ ingest protocol v1 (docs/protocol.md): typed messages, parsed once at the edge.

Client -> daemon: multipart [JSON header] or, for audio, [JSON header, payload bytes].
Daemon -> client: [JSON reply]. (The ROUTER identity frame is the transport's business.)
Parsing raises `ProtocolError` carrying the reason code of the error reply.
Stdlib + numpy only: the client library imports this module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from daemon.wire.frames import (
    ENCODINGS,
    MAX_CHANNELS,
    MAX_SAMPLE_RATE_HZ,
    MIN_SAMPLE_RATE_HZ,
    AudioFormat,
)
from daemon.wire.limits import JsonRejected, loads_bounded, metadata_problem

PROTOCOL_VERSION = 1
MAX_STREAM_ID_CHARS = 128
MAX_HEADER_BYTES = 64 * 1024  # frame 0; metadata (<= 4 KiB of text) fits even fully \u-escaped

ErrorCode = Literal[
    "bad_json", "bad_version", "unknown_type", "missing_field", "bad_field", "unknown_stream",
    "stream_exists", "stream_owned_by_other", "too_many_streams", "bad_payload", "server_shutting_down",
    "internal_error",
]
ERROR_CODES: tuple[str, ...] = get_args(ErrorCode)
REQUEST_TYPES = ("open", "audio", "close", "ping")


class ProtocolError(ValueError):
    """A message the daemon rejects; becomes an `ErrorReply` to its sender."""

    def __init__(self, code: str, message: str, *, stream_id: str | None = None,
                 ref: str = "?", seq: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        assert code in ERROR_CODES, code
        self.code = code
        self.message = message
        self.stream_id = stream_id
        self.ref = ref
        self.seq = seq

    def reply(self) -> ErrorReply:
        return ErrorReply(code=self.code, message=self.message, stream_id=self.stream_id,
                          ref=self.ref, seq=self.seq)


def _dump(header: Mapping[str, Any]) -> bytes:
    return json.dumps(header, separators=(",", ":")).encode()


# ---- client -> daemon ----------------------------------------------------------------------

@dataclass(frozen=True)
class OpenMessage:
    stream_id: str
    format: AudioFormat
    metadata: Mapping[str, str] = field(default_factory=dict)

    def to_frames(self) -> list[bytes]:
        return [_dump({"v": PROTOCOL_VERSION, "type": "open", "stream_id": self.stream_id,
                       "encoding": self.format.encoding, "sample_rate_hz": self.format.sample_rate_hz,
                       "channels": self.format.channels, "metadata": dict(self.metadata)})]


@dataclass(frozen=True)
class AudioMessage:
    stream_id: str
    seq: int
    payload: bytes

    def to_frames(self) -> list[bytes]:
        return [_dump({"v": PROTOCOL_VERSION, "type": "audio", "stream_id": self.stream_id,
                       "seq": self.seq}), self.payload]


@dataclass(frozen=True)
class CloseMessage:
    stream_id: str

    def to_frames(self) -> list[bytes]:
        return [_dump({"v": PROTOCOL_VERSION, "type": "close", "stream_id": self.stream_id})]


@dataclass(frozen=True)
class PingMessage:
    def to_frames(self) -> list[bytes]:
        return [_dump({"v": PROTOCOL_VERSION, "type": "ping"})]


ClientMessage = OpenMessage | AudioMessage | CloseMessage | PingMessage


def _header(frame: bytes, what: str) -> dict[str, Any]:
    try:
        header = loads_bounded(frame, max_bytes=MAX_HEADER_BYTES)
    except JsonRejected as exc:
        raise ProtocolError("bad_json", f"{what}: {exc.message}") from None
    if not isinstance(header, dict):
        raise ProtocolError("bad_json", f"{what} must be a JSON object, got {type(header).__name__}")
    return header


def _stream_id(header: Mapping[str, Any], ref: str) -> str:
    if "stream_id" not in header:
        raise ProtocolError("missing_field", "stream_id is required", ref=ref)
    value = header["stream_id"]
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_STREAM_ID_CHARS or not value.isprintable():
        raise ProtocolError("bad_field", f"stream_id must be a printable string of 1..{MAX_STREAM_ID_CHARS} "
                            f"characters, got {value!r}"[:300], ref=ref)
    return value


def _int_field(header: Mapping[str, Any], name: str, stream_id: str, ref: str) -> int:
    if name not in header:
        raise ProtocolError("missing_field", f"{name} is required", stream_id=stream_id, ref=ref)
    value = header[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError("bad_field", f"{name} must be an integer, got {value!r}"[:300],
                            stream_id=stream_id, ref=ref)
    return value


def _parse_open(header: Mapping[str, Any]) -> OpenMessage:
    stream_id = _stream_id(header, "open")
    for name in ("encoding", "sample_rate_hz"):
        if name not in header:
            raise ProtocolError("missing_field", f"{name} is required", stream_id=stream_id, ref="open")
    encoding = header["encoding"]
    if encoding not in ENCODINGS:
        raise ProtocolError("bad_field", f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}"[:300],
                            stream_id=stream_id, ref="open")
    rate = _int_field(header, "sample_rate_hz", stream_id, "open")
    if not MIN_SAMPLE_RATE_HZ <= rate <= MAX_SAMPLE_RATE_HZ:
        raise ProtocolError("bad_field", f"sample_rate_hz must be {MIN_SAMPLE_RATE_HZ}..{MAX_SAMPLE_RATE_HZ}, "
                            f"got {rate}", stream_id=stream_id, ref="open")
    channels = _int_field(header, "channels", stream_id, "open") if "channels" in header else 1
    if not 1 <= channels <= MAX_CHANNELS:
        raise ProtocolError("bad_field", f"channels must be 1..{MAX_CHANNELS}, got {channels}",
                            stream_id=stream_id, ref="open")
    metadata = header.get("metadata", {})
    problem = "metadata must be an object" if not isinstance(metadata, dict) else metadata_problem(metadata)
    if problem is not None:
        raise ProtocolError("bad_field", problem, stream_id=stream_id, ref="open")
    return OpenMessage(stream_id, AudioFormat(encoding, rate, channels), dict(metadata))


# The audio header as every spoofwatch client writes it (`AudioMessage.to_frames`: compact JSON,
# keys in this order, a printable-ASCII stream id that needs no escapes). Audio is ~all of the
# traffic (50 messages/s per stream), and one regex match costs a fraction of json.loads plus
# the field checks; whatever does not match exactly takes the full path below, with the same
# result and the same errors.
_CANONICAL_AUDIO_HEADER = re.compile(
    rb'\{"v":%d,"type":"audio","stream_id":"([\x20\x21\x23-\x5b\x5d-\x7e]{1,%d})","seq":(0|[1-9][0-9]{0,17})\}'
    % (PROTOCOL_VERSION, MAX_STREAM_ID_CHARS))


def parse_request(frames: Sequence[bytes]) -> ClientMessage:
    """Client frames (without the ROUTER identity) -> a typed message, or `ProtocolError`."""
    if len(frames) == 2:
        canonical = _CANONICAL_AUDIO_HEADER.fullmatch(frames[0])
        if canonical is not None:
            return AudioMessage(canonical[1].decode("ascii"), int(canonical[2]), bytes(frames[1]))
    return parse_request_json(frames)


def parse_request_json(frames: Sequence[bytes]) -> ClientMessage:
    """`parse_request` without the fast path for canonical audio headers."""
    if not frames:
        raise ProtocolError("bad_json", "empty message")
    header = _header(frames[0], "frame 0")
    if "v" not in header:
        raise ProtocolError("missing_field", "v (protocol version) is required")
    kind = header.get("type")
    ref = kind if kind in REQUEST_TYPES else "?"
    if header["v"] != PROTOCOL_VERSION:
        raise ProtocolError("bad_version", f"protocol version {header['v']!r} is not supported "
                            f"(this daemon speaks v{PROTOCOL_VERSION})"[:300], ref=ref)
    if kind is None:
        raise ProtocolError("missing_field", "type is required")
    if kind not in REQUEST_TYPES:
        raise ProtocolError("unknown_type", f"type must be one of {', '.join(REQUEST_TYPES)}, got {kind!r}"[:300])
    if kind == "audio":
        stream_id = _stream_id(header, "audio")
        seq = _int_field(header, "seq", stream_id, "audio")
        if seq < 0:
            raise ProtocolError("bad_field", f"seq must be >= 0, got {seq}", stream_id=stream_id, ref="audio")
        if len(frames) != 2:
            raise ProtocolError("bad_payload", f"audio needs exactly 2 frames (header, payload), got {len(frames)}",
                                stream_id=stream_id, ref="audio", seq=seq)
        return AudioMessage(stream_id, seq, bytes(frames[1]))
    if len(frames) != 1:
        raise ProtocolError("bad_field", f"{kind} takes one frame, got {len(frames)}", ref=kind,
                            stream_id=header.get("stream_id") if isinstance(header.get("stream_id"), str) else None)
    if kind == "open":
        return _parse_open(header)
    if kind == "close":
        return CloseMessage(_stream_id(header, "close"))
    return PingMessage()


# ---- daemon -> client ----------------------------------------------------------------------

@dataclass(frozen=True)
class OpenedReply:
    stream_id: str
    model_id: str
    hop_ms: float

    def to_frames(self) -> list[bytes]:
        return [_dump({"v": PROTOCOL_VERSION, "type": "opened", "stream_id": self.stream_id,
                       "model_id": self.model_id, "hop_ms": self.hop_ms})]


@dataclass(frozen=True)
class ClosedReply:
    stream_id: str

    def to_frames(self) -> list[bytes]:
        return [_dump({"v": PROTOCOL_VERSION, "type": "closed", "stream_id": self.stream_id})]


@dataclass(frozen=True)
class PongReply:
    def to_frames(self) -> list[bytes]:
        return [_dump({"v": PROTOCOL_VERSION, "type": "pong"})]


@dataclass(frozen=True)
class ErrorReply:
    code: str
    message: str
    stream_id: str | None = None
    ref: str = "?"
    seq: int | None = None

    def to_frames(self) -> list[bytes]:
        return [_dump({"v": PROTOCOL_VERSION, "type": "error", "code": self.code, "message": self.message,
                       "stream_id": self.stream_id, "ref": self.ref, "seq": self.seq})]


Reply = OpenedReply | ClosedReply | PongReply | ErrorReply


def parse_reply(frames: Sequence[bytes]) -> Reply:
    """Daemon reply frames -> typed reply (for clients). Raises ValueError on anything else."""
    if len(frames) != 1:
        raise ValueError(f"a reply has one frame, got {len(frames)}")
    try:
        header = json.loads(frames[0])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"reply is not JSON: {exc}") from None
    if not isinstance(header, dict) or header.get("v") != PROTOCOL_VERSION:
        raise ValueError(f"not a v{PROTOCOL_VERSION} reply: {header!r}"[:300])
    try:
        kind = header["type"]
        if kind == "opened":
            return OpenedReply(str(header["stream_id"]), str(header["model_id"]), float(header["hop_ms"]))
        if kind == "closed":
            return ClosedReply(str(header["stream_id"]))
        if kind == "pong":
            return PongReply()
        if kind == "error":
            return ErrorReply(str(header["code"]), str(header["message"]), header.get("stream_id"),
                              str(header.get("ref", "?")), header.get("seq"))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed {header.get('type')!r} reply: {exc!r}") from None
    raise ValueError(f"unknown reply type {header.get('type')!r}")
