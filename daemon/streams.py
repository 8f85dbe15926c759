"""The daemon's table of open streams, by id. Whether a stream may join it is decided before, in
one place (daemon/admission.py).

Each stream's audio buffer (`StreamBuffer`) is the runtime's (streaming_models/runtime/hops.py),
shared with the offline tools.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class StreamRegistry(Generic[T]):
    """Open streams by id."""

    def __init__(self) -> None:
        self._streams: dict[str, T] = {}

    def add(self, stream_id: str, stream: T) -> None:
        if stream_id in self._streams:  # admission refuses duplicates first: reaching this is a bug
            raise RuntimeError(f"stream {stream_id!r} is already in the registry")
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
