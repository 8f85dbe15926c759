"""What every ingest adapter looks like to the app.

An adapter is constructed with the hub and its own config section,
`Adapter(hub: StreamHub, config: SectionConfig)`, and only translates its transport
into hub calls. `start()` binds/listens and returns once it accepts; `stop()` stops
accepting and returns when its own tasks have exited (the hub then drains the streams).
"""

from __future__ import annotations

from typing import Protocol


class IngestAdapter(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...
