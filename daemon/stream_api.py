"""The stream API: the one interface every ingest adapter feeds (ZeroMQ, WHIP, AudioSocket...).

An adapter only translates its transport: it opens a stream on the hub (`StreamHub.open`),
pushes decoded `AudioChunk`s to the `StreamHandle` it gets, reads the stream's events if its
transport answers on the same connection, and closes it. Everything after that (resampling,
hops, batching, inference, decisions, publishing) is the daemon's, identical for all
transports. The composition root passes the hub to each adapter; adapters import this module,
never the implementation (`daemon/hub.py`, `daemon/live_stream.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from daemon.errors import DaemonError

# One published message of a stream (a hop result or a lifecycle event: opened, error, closed), as
# the JSON-ready dict that also goes out on the PUB socket (daemon/wire/results.py, docs/protocol.md).
StreamEvent = Mapping[str, Any]


@dataclass(frozen=True)
class AudioChunk:
    """Decoded mono audio at the stream's source rate. `sequence` is the sender's counter where the
    transport has one (gaps are filled with silence, duplicates dropped)."""

    samples: npt.NDArray[np.float32]
    sequence: int | None = None


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


class StreamClosedError(DaemonError):
    """Audio pushed to, or a hop submitted for, a stream that is already closed."""


class StreamHandle(Protocol):
    """One open stream, owned by the adapter connection that opened it."""

    @property
    def stream_id(self) -> str: ...

    @property
    def closed(self) -> bool:
        """True once the stream stopped accepting audio: closed by its adapter, or by the daemon
        (idle, a scoring error, shutdown). A push then raises `StreamClosedError`."""

    async def push(self, chunk: AudioChunk) -> None:
        """Append audio. Never blocks on inference; over the memory cap the oldest audio is dropped."""

    async def close(self, reason: str = "client") -> None:
        """End the stream: pending hops are scored, the `closed` summary is published. Idempotent."""

    def events(self) -> AsyncIterator[StreamEvent]:
        """This stream's published messages (hop results and lifecycle events), as JSON-ready dicts.

        For transports that answer on the same connection (WebRTC data channel,
        webhooks). Bounded: a slow consumer loses messages (counted), never stalls the stream.
        The iterator ends after the `closed` event.
        """


class StreamHub(Protocol):
    async def open(self, spec: StreamSpec) -> StreamHandle:
        """Open a stream or raise `StreamRejected` (duplicate id, too many streams, bad rate,
        metadata over the limit, the daemon draining); the codes are in docs/protocol.md."""
