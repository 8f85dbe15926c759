"""The one internal stream API every ingest adapter feeds (ZeroMQ, WHIP, AudioSocket...).

An adapter only translates its transport: it opens a stream on the hub, pushes
decoded `AudioChunk`s, and closes it. Everything after that (resampling, hops,
batching, inference, decisions, publishing) is the daemon's, identical for all
transports. The daemon's composition root implements `StreamHub`; adapters
receive it as a constructor argument and never import the implementation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from daemon.wire.frames import AudioChunk


@dataclass(frozen=True)
class StreamSpec:
    stream_id: str
    sample_rate_hz: int  # rate of the samples in the AudioChunks that will be pushed
    transport: str  # "zmq", "webrtc", "audiosocket", ... (for logs and summaries)
    metadata: Mapping[str, str] = field(default_factory=dict)  # call id etc., echoed in results
    owner: str = ""  # the CURVE User-Id (`client:NAME`) of the ZeroMQ client that opened it, if any


class StreamRejected(Exception):
    """The hub refused to open a stream. `code` is a stable machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class StreamHandle(Protocol):
    """One open stream, owned by the adapter connection that opened it."""

    @property
    def stream_id(self) -> str: ...

    async def push(self, chunk: AudioChunk) -> None:
        """Append audio. Never blocks on inference; over the memory cap the oldest audio is dropped."""

    async def close(self, reason: str = "client") -> None:
        """End the stream: pending hops are scored, the `closed` summary is published. Idempotent."""

    def events(self) -> AsyncIterator[Mapping[str, Any]]:
        """This stream's published messages (hop results and lifecycle events), as JSON-ready dicts.

        For transports that answer on the same connection (WebRTC data channel,
        webhooks). Bounded: a slow consumer loses messages (counted), never stalls the stream.
        The iterator ends after the `closed` event.
        """


class StreamHub(Protocol):
    async def open(self, spec: StreamSpec) -> StreamHandle:
        """Open a stream or raise `StreamRejected` (duplicate id, too many streams, bad rate...)."""
