"""Where a daemon listens unless told otherwise: the defaults of its config (`daemon/config.py`)
and of every client (`clients/`), in one place.

It sits with the wire protocol because both sides need it and the clients already import the
protocol (`daemon.wire`), never the daemon's internals; the daemon never imports the clients.
"""

from __future__ import annotations

DEFAULT_INGEST_ENDPOINT = "tcp://127.0.0.1:5555"  # ZeroMQ ROUTER: streams in (zmq.ingest_endpoint)
DEFAULT_RESULTS_ENDPOINT = "tcp://127.0.0.1:5556"  # ZeroMQ PUB: results and events out (zmq.pub_endpoint)
DEFAULT_HTTP_HOST = "127.0.0.1"  # WHIP, telephony WebSockets, the console, /metrics (webrtc.host)
DEFAULT_HTTP_PORT = 8080  # (webrtc.port)
WHIP_PATH = "/whip"
DEFAULT_WHIP_URL = f"http://{DEFAULT_HTTP_HOST}:{DEFAULT_HTTP_PORT}{WHIP_PATH}"
