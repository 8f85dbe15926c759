"""Messages on the results PUB socket (docs/protocol.md), as JSON-ready dicts.

Multipart [topic, JSON] with topic = stream_id (UTF-8); subscribers filter by prefix.
The same dicts go to in-process subscribers (`StreamHandle.events()`).
Stdlib only: the client library imports this module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

PROTOCOL_VERSION = 1
Decision = Literal["bonafide", "spoof", "codec", "undecided"]
CloseReason = Literal["client", "idle", "shutdown", "error"]
DECISIONS = ("bonafide", "spoof", "codec", "undecided")
CLOSE_REASONS = ("client", "idle", "shutdown", "error")


@dataclass(frozen=True)
class StreamSummary:
    hops: int
    audio_s: float
    p_spoof_mean: float | None
    p_spoof_max: float | None
    p_codec_mean: float | None
    p_codec_max: float | None
    final_decision: str
    gaps_filled: int
    samples_filled: int
    duplicates_dropped: int
    samples_dropped_overflow: int
    results_dropped: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VerifierFields:
    """What a result carries while the second-tier verifier is on (docs/verifier.md): its latest
    scores of the stream (None before its first) and the fused spoof probability."""

    p_spoof_verifier: float | None
    p_codec_verifier: float | None
    verifier_t_end_s: float | None  # the end of the window those scores are of, in stream audio time
    p_spoof_fused: float

    def to_dict(self) -> dict[str, float | None]:
        return {name: None if value is None else round(value, 6) for name, value in asdict(self).items()}


def result_message(
    *, stream_id: str, seq: int, t_start_s: float, t_end_s: float, p_spoof: float, p_codec: float,
    p_spoof_smooth: float, p_codec_smooth: float, decision: str, model_id: str, latency_ms: float,
    metadata: Mapping[str, str], verifier: VerifierFields | None = None,
) -> dict[str, Any]:
    """One hop's result; with the verifier on, its fields too (absent when it is off)."""
    message = {
        "v": PROTOCOL_VERSION, "type": "result", "stream_id": stream_id, "seq": seq,
        "t_start_s": round(t_start_s, 6), "t_end_s": round(t_end_s, 6),
        "p_spoof": round(p_spoof, 6), "p_codec": round(p_codec, 6),
        "p_spoof_smooth": round(p_spoof_smooth, 6), "p_codec_smooth": round(p_codec_smooth, 6),
        "decision": decision, "model_id": model_id, "latency_ms": round(latency_ms, 3),
        "metadata": dict(metadata),
    }
    if verifier is not None:
        message.update(verifier.to_dict())
    return message


def opened_event(*, stream_id: str, transport: str, sample_rate_hz: int, metadata: Mapping[str, str],
                 model_id: str) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "type": "opened", "stream_id": stream_id, "transport": transport,
            "sample_rate_hz": sample_rate_hz, "metadata": dict(metadata), "model_id": model_id}


def closed_event(*, stream_id: str, reason: str, summary: StreamSummary) -> dict[str, Any]:
    if reason not in CLOSE_REASONS:
        raise ValueError(f"close reason must be one of {CLOSE_REASONS}, got {reason!r}")
    return {"v": PROTOCOL_VERSION, "type": "closed", "stream_id": stream_id, "reason": reason,
            "summary": summary.to_dict()}


def error_event(*, stream_id: str, code: str, message: str) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "type": "error", "stream_id": stream_id, "code": code, "message": message}


def encode_pub(message: Mapping[str, Any]) -> list[bytes]:
    """One PUB message: [topic, JSON]."""
    return [str(message["stream_id"]).encode(), json.dumps(message, separators=(",", ":")).encode()]


def decode_pub(frames: Sequence[bytes]) -> dict[str, Any]:
    """[topic, JSON] -> the message dict; ValueError when malformed."""
    if len(frames) != 2:
        raise ValueError(f"a PUB message has 2 frames, got {len(frames)}")
    message = json.loads(frames[1])
    if not isinstance(message, dict) or message.get("v") != PROTOCOL_VERSION:
        raise ValueError(f"not a v{PROTOCOL_VERSION} message: {message!r}"[:300])
    return message
