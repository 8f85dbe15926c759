"""Whether a new stream may open: the one place that decides.

`Admission.check` runs before anything of the stream exists and refuses with the first problem
found, in this order, each with its stable code (docs/protocol.md):

1. the daemon is draining: `server_shutting_down`;
2. the sample rate is outside 8..48 kHz: `bad_field`;
3. the metadata is over the one limit every transport shares (daemon/wire/limits.py): `bad_field`;
4. a stream with this id is open: `stream_exists`;
5. `streams.max_streams` streams are open: `too_many_streams`.

Transports also cap their own connections (`max_connections`, WHIP `max_sessions`): those refuse a
connection before it asks for a stream, so they stay with their adapters.
"""

from __future__ import annotations

from typing import Protocol

from daemon.stream_api import StreamRejected, StreamSpec
from daemon.wire.frames import MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ
from daemon.wire.limits import metadata_problem


class OpenStreams(Protocol):
    """What admission reads of the open streams: their ids and how many there are."""

    def __contains__(self, stream_id: object) -> bool: ...

    def __len__(self) -> int: ...


class Admission:
    """Admits new streams against the open ones; refuses every one once draining has begun."""

    def __init__(self, open_streams: OpenStreams, max_streams: int) -> None:
        self._open = open_streams
        self.max_streams = max_streams
        self._accepting = True

    @property
    def accepting(self) -> bool:
        return self._accepting

    def stop_accepting(self) -> None:
        """The first step of a graceful shutdown: every later `check` is `server_shutting_down`."""
        self._accepting = False

    @property
    def at_capacity(self) -> bool:
        return len(self._open) >= self.max_streams

    def check(self, spec: StreamSpec) -> None:
        """Return if `spec` may open now, else raise `StreamRejected` with the first problem's code."""
        if not self._accepting:
            raise StreamRejected("server_shutting_down", "the daemon is shutting down")
        if not MIN_SAMPLE_RATE_HZ <= spec.sample_rate_hz <= MAX_SAMPLE_RATE_HZ:
            raise StreamRejected("bad_field", f"sample rate must be {MIN_SAMPLE_RATE_HZ}..{MAX_SAMPLE_RATE_HZ} Hz, "
                                 f"got {spec.sample_rate_hz}")
        problem = metadata_problem(spec.metadata)
        if problem is not None:  # every adapter checks first; this is the one limit they share
            raise StreamRejected("bad_field", problem)
        if spec.stream_id in self._open:
            raise StreamRejected("stream_exists", f"stream {spec.stream_id!r} is already open")
        if self.at_capacity:
            raise StreamRejected("too_many_streams", f"the daemon already has {self.max_streams} open streams")
