"""The daemon's one HTTP server: an aiohttp application that several features share.

WHIP ingest (`daemon/ingest/webrtc.py`) and, later, the web console register
their routes on the same `HttpServer.app` before `start()`; the owner (the
composition root, or an ingest that runs alone) starts and stops it. Keeping the
server apart from any feature means a feature never opens a second port.

    server = HttpServer(host="127.0.0.1", port=8080)
    WhipIngest(hub, webrtc_config, server=server)   # adds /whip routes
    await server.start()   # routes are frozen from here on
    ...
    await server.stop()
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog
from aiohttp import web

from daemon.config import HTTP_SHUTDOWN_TIMEOUT_S

log = structlog.get_logger(__name__)

# SDP offers are a few KiB; anything near this is not an offer.
MAX_REQUEST_BYTES = 256 * 1024


class HttpServer:
    """Owns one `aiohttp.web.Application` and the socket it listens on."""

    def __init__(self, host: str, port: int, middlewares: Iterable[Any] = ()) -> None:
        self.host = host
        self.requested_port = port
        self.app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=list(middlewares))
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def port(self) -> int:
        """The bound port (differs from the requested one when that was 0)."""
        if self._runner is None:
            raise RuntimeError("HttpServer is not started")
        for address in self._runner.addresses:
            return int(address[1])
        raise RuntimeError("HttpServer has no bound address")

    @property
    def started(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        if self._runner is not None:
            return
        # at shutdown, handlers still running get this long (aiohttp's default is 60 s), so a stop
        # stays within DaemonConfig.graceful_stop_s
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.requested_port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner, self._site = runner, site
        log.info("http_listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        runner, self._runner, self._site = self._runner, None, None
        if runner is not None:
            await runner.cleanup()
            log.info("http_stopped")
