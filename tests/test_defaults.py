"""One home per default: the daemon's config, the clients and the CLI agree because they import
the same constants (daemon/wire/endpoints.py, streaming_models/runtime/default_model.py)."""

from __future__ import annotations

import inspect

from clients.client import AsyncDetectorClient, DetectorClient
from clients.commands import demo, send, tap
from daemon.config import DaemonConfig
from daemon.ingest.webrtc import WHIP_PATH
from daemon.wire.endpoints import DEFAULT_WHIP_URL


def test_clients_default_to_where_the_daemon_listens() -> None:
    config = DaemonConfig()
    ingest, results = config.zmq.ingest_endpoint, config.zmq.pub_endpoint
    for client in (AsyncDetectorClient, DetectorClient):
        parameters = inspect.signature(client).parameters
        assert (parameters["endpoint"].default, parameters["results_endpoint"].default) == (ingest, results)
    sent = send.build_parser().parse_args(["call.wav"])
    assert (sent.endpoint, sent.results_endpoint) == (ingest, results)
    assert tap.build_parser().parse_args([]).results_endpoint == results
    assert demo.build_parser().parse_args([]).results_endpoint == results
    assert sent.whip_url == DEFAULT_WHIP_URL == f"http://{config.webrtc.host}:{config.webrtc.port}{WHIP_PATH}"


def test_the_demo_runs_the_daemons_default_model() -> None:
    assert demo.build_parser().parse_args([]).model == DaemonConfig().model.path
