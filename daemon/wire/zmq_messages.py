"""ZeroMQ ingest protocol v1 (docs/protocol.md): typed messages, parsed once at the edge.

Client -> daemon: multipart [JSON header] or, for audio, [JSON header, payload bytes], or, for
a gateway's audio of many streams at once (`audio_batch`), [JSON header, payload 0, ..., payload n-1].
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
from daemon.wire.limits import MAX_STREAM_ID_CHARS, JsonRejected, loads_bounded, metadata_problem

PROTOCOL_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024  # frame 0; metadata (<= 4 KiB of text) fits even fully \u-escaped
MAX_BATCH_ENTRIES = 1024  # streams in one audio_batch message
MAX_BATCH_HEADER_BYTES = 256 * 1024  # its frame 0: 1,024 ids of 128 ASCII characters and their seqs fit

ErrorCode = Literal[
    "bad_json", "bad_version", "unknown_type", "missing_field", "bad_field", "unknown_stream",
    "stream_exists", "stream_owned_by_other", "too_many_streams", "bad_payload", "server_shutting_down",
    "internal_error",
]
ERROR_CODES: tuple[str, ...] = get_args(ErrorCode)
REQUEST_TYPES = ("open", "audio", "audio_batch", "close", "ping")


class ProtocolError(ValueError):
    """A message the daemon rejects; becomes an `ErrorReply` to its sender."""

    def __init__(self, code: str, message: str, *, stream_id: str | None = None,
                 ref: str = "?", seq: int | None = None, index: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        assert code in ERROR_CODES, code
        self.code = code
        self.message = message
        self.stream_id = stream_id
        self.ref = ref
        self.seq = seq
        self.index = index  # the entry of an audio_batch message, or None

    def reply(self) -> ErrorReply:
        return ErrorReply(code=self.code, message=self.message, stream_id=self.stream_id,
                          ref=self.ref, seq=self.seq, index=self.index)


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
class AudioBatchMessage:
    """Audio of many streams in one message, as a media gateway has it every 20 ms.

    `entries` in message order (entry i carries payload frame i + 1). Parsing keeps an entry
    that failed its own checks (stream id, seq) as the `ProtocolError` to answer, with its
    `index`, so the rest of the message is still handled; a client builds only `AudioMessage`s."""

    entries: Sequence[AudioMessage | ProtocolError]

    def to_frames(self) -> list[bytes]:
        audio = [entry for entry in self.entries if isinstance(entry, AudioMessage)]
        if len(audio) != len(self.entries):
            raise ValueError("a refused entry cannot be sent")
        header = _dump({"v": PROTOCOL_VERSION, "type": "audio_batch",
                        "stream_ids": [entry.stream_id for entry in audio],
                        "seqs": [entry.seq for entry in audio]})
        return [header, *(entry.payload for entry in audio)]


@dataclass(frozen=True)
class CloseMessage:
    stream_id: str

    def to_frames(self) -> list[bytes]:
        return [_dump({"v": PROTOCOL_VERSION, "type": "close", "stream_id": self.stream_id})]


@dataclass(frozen=True)
class PingMessage:
    def to_frames(self) -> list[bytes]:
        return [_dump({"v": PROTOCOL_VERSION, "type": "ping"})]


ClientMessage = OpenMessage | AudioMessage | AudioBatchMessage | CloseMessage | PingMessage


def _header(frame: bytes, what: str, max_bytes: int = MAX_HEADER_BYTES) -> dict[str, Any]:
    try:
        header = loads_bounded(frame, max_bytes=max_bytes)
    except JsonRejected as exc:
        raise ProtocolError("bad_json", f"{what}: {exc.message}") from None
    if not isinstance(header, dict):
        raise ProtocolError("bad_json", f"{what} must be a JSON object, got {type(header).__name__}")
    return header


def _stream_id(header: Mapping[str, Any], ref: str) -> str:
    if "stream_id" not in header:
        raise ProtocolError("missing_field", "stream_id is required", ref=ref)
    value = header["stream_id"]
    if not _valid_stream_id(value):
        raise ProtocolError("bad_field", f"stream_id must be a printable string of 1..{MAX_STREAM_ID_CHARS} "
                            f"characters, got {value!r}"[:300], ref=ref)
    return str(value)


def _valid_stream_id(value: object) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= MAX_STREAM_ID_CHARS and value.isprintable()


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
    # only an audio_batch header (with many payload frames) may exceed MAX_HEADER_BYTES
    header = _header(frames[0], "frame 0", MAX_BATCH_HEADER_BYTES if len(frames) > 2 else MAX_HEADER_BYTES)
    if len(frames[0]) > MAX_HEADER_BYTES and header.get("type") != "audio_batch":
        raise ProtocolError("bad_json", f"frame 0: JSON text of {len(frames[0])} bytes (at most {MAX_HEADER_BYTES})")
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
    if kind == "audio_batch":
        return _parse_audio_batch(header, frames)
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


def _parse_audio_batch(header: Mapping[str, Any], frames: Sequence[bytes]) -> AudioBatchMessage:
    """The message-level checks refuse the whole message; each entry's own checks (stream id,
    seq) refuse that entry only. Payloads are checked against the stream's format later."""
    ref = "audio_batch"
    for name in ("stream_ids", "seqs"):
        if name not in header:
            raise ProtocolError("missing_field", f"{name} is required", ref=ref)
        if not isinstance(header[name], list):
            raise ProtocolError("bad_field", f"{name} must be an array", ref=ref)
    stream_ids, seqs = header["stream_ids"], header["seqs"]
    count = len(stream_ids)
    if not 1 <= count <= MAX_BATCH_ENTRIES:
        raise ProtocolError("bad_field", f"audio_batch carries 1..{MAX_BATCH_ENTRIES} entries, got {count}", ref=ref)
    if len(seqs) != count:
        raise ProtocolError("bad_field", f"stream_ids has {count} entries but seqs has {len(seqs)}", ref=ref)
    if len(frames) != count + 1:
        raise ProtocolError("bad_payload", f"audio_batch with {count} entries needs {count + 1} frames "
                            f"(header, one payload per entry), got {len(frames)}", ref=ref)
    entries: list[AudioMessage | ProtocolError] = []
    for index, (stream_id, seq) in enumerate(zip(stream_ids, seqs, strict=True)):
        if not _valid_stream_id(stream_id):
            entries.append(ProtocolError("bad_field", f"stream_ids[{index}] must be a printable string of "
                                         f"1..{MAX_STREAM_ID_CHARS} characters, got {stream_id!r}"[:300],
                                         ref=ref, seq=seq if type(seq) is int else None, index=index))
        elif type(seq) is not int or seq < 0:
            entries.append(ProtocolError("bad_field", f"seqs[{index}] must be an integer >= 0, got {seq!r}"[:300],
                                         stream_id=stream_id, ref=ref, index=index))
        else:
            entries.append(AudioMessage(stream_id, seq, bytes(frames[index + 1])))
    return AudioBatchMessage(entries)


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
    index: int | None = None  # the refused entry of an audio_batch message (only then in the JSON)

    def to_frames(self) -> list[bytes]:
        header = {"v": PROTOCOL_VERSION, "type": "error", "code": self.code, "message": self.message,
                  "stream_id": self.stream_id, "ref": self.ref, "seq": self.seq}
        if self.index is not None:
            header["index"] = self.index
        return [_dump(header)]


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
            index = header.get("index")
            return ErrorReply(str(header["code"]), str(header["message"]), header.get("stream_id"),
                              str(header.get("ref", "?")), header.get("seq"),
                              index if isinstance(index, int) and not isinstance(index, bool) else None)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed {header.get('type')!r} reply: {exc!r}") from None
    raise ValueError(f"unknown reply type {header.get('type')!r}")
