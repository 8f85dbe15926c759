"""What every ingest adapter looks like to the app.

An adapter is constructed with the hub, its own config section and the daemon's refusal
counter, `Adapter(hub: StreamHub, config: SectionConfig, ..., refusals=Refusals)`, and only
translates its transport into calls of the stream API (daemon/stream_api.py). `start()` binds/listens and returns once it accepts; `stop()` stops
accepting and returns when its own tasks have exited (the hub then drains the streams).
"""

from __future__ import annotations

from typing import Protocol


class IngestAdapter(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...
