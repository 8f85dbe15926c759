"""The results of every daemon replica on one subscriber endpoint: a ZeroMQ XSUB/XPUB proxy.

    spoofwatch proxy --xsub tcp://0.0.0.0:5557 --xpub tcp://0.0.0.0:5558 [--connect tcp://d1:5556 ...]

Daemons reach the XSUB side either by connecting to it (`zmq.pub_connect = ["tcp://proxy:5557"]`,
which suits replicas that come and go, as in Kubernetes) or by the proxy connecting to their
results endpoints (`--connect`, for a fixed set). Subscribers connect to the XPUB side as they
would to one daemon; their subscriptions travel upstream to every replica, so each daemon still
sends only what someone asked for. `zmq.proxy` runs in libzmq's code on one thread: no message
passes through Python. The proxy keeps no state, so several can run side by side.

Not with ZeroMQ authentication: the daemons' per-client CURVE filter (docs/security.md) cannot
see past the proxy, which would forward every stream's results to whoever subscribes.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Self

import structlog
import zmq

log = structlog.get_logger(__name__)


class ResultsProxy:
    """XSUB (bound at `xsub`, connected to each of `upstreams`) -> XPUB (bound at `xpub`), on a thread."""

    def __init__(self, xsub: str | None, xpub: str, upstreams: Sequence[str] = (), hwm: int = 10000) -> None:
        if xsub is None and not upstreams:
            raise ValueError("give an XSUB endpoint to bind, or daemon results endpoints to connect to")
        self._context: zmq.Context[Any] = zmq.Context()
        self._frontend = self._context.socket(zmq.XSUB)
        self._backend = self._context.socket(zmq.XPUB)
        self._control = self._context.socket(zmq.PAIR)
        for socket in (self._frontend, self._backend):
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.RCVHWM, hwm)
            socket.setsockopt(zmq.SNDHWM, hwm)
        self._control.setsockopt(zmq.LINGER, 0)
        self.xsub_endpoint = ""
        if xsub is not None:
            self._frontend.bind(xsub)
            self.xsub_endpoint = self._frontend.getsockopt_string(zmq.LAST_ENDPOINT)
        for upstream in upstreams:
            self._frontend.connect(upstream)
        self._backend.bind(xpub)
        self.xpub_endpoint: str = self._backend.getsockopt_string(zmq.LAST_ENDPOINT)
        self._control_address = f"inproc://results-proxy-control-{id(self)}"
        self._control.bind(self._control_address)
        self._thread = threading.Thread(target=self._run, name="results-proxy", daemon=True)

    def start(self) -> Self:
        self._thread.start()
        log.info("results_proxy_started", xsub=self.xsub_endpoint or None, xpub=self.xpub_endpoint)
        return self

    def _run(self) -> None:
        steer = self._context.socket(zmq.PAIR)
        steer.connect(self._control_address)
        try:
            zmq.proxy_steerable(self._frontend, self._backend, None, steer)
        except zmq.ContextTerminated:
            pass
        finally:
            steer.close(linger=0)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._control.send(b"TERMINATE")
            self._thread.join(timeout=5)
        for socket in (self._control, self._frontend, self._backend):
            socket.close(linger=0)
        self._context.term()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
