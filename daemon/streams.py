"""The daemon's table of open streams, with its admission limit.

Each stream's audio buffer (`StreamBuffer`) is the runtime's (streaming_models/runtime/hops.py),
shared with the offline tools.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from daemon.stream_api import StreamRejected

T = TypeVar("T")


class StreamRegistry(Generic[T]):
    """Open streams by id, with the admission limit (`too_many_streams`, `stream_exists`)."""

    def __init__(self, max_streams: int) -> None:
        self.max_streams = max_streams
        self._streams: dict[str, T] = {}

    def add(self, stream_id: str, stream: T) -> None:
        if stream_id in self._streams:
            raise StreamRejected("stream_exists", f"stream {stream_id!r} is already open")
        if len(self._streams) >= self.max_streams:
            raise StreamRejected("too_many_streams", f"the daemon already has {self.max_streams} open streams")
        self._streams[stream_id] = stream

    def remove(self, stream_id: str, stream: T) -> None:
        if self._streams.get(stream_id) is stream:
            del self._streams[stream_id]

    def get(self, stream_id: str) -> T | None:
        return self._streams.get(stream_id)

    def values(self) -> list[T]:
        return list(self._streams.values())

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, stream_id: object) -> bool:
        return stream_id in self._streams
