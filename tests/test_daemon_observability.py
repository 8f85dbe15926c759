"""Prometheus /metrics, /healthz and /readyz of a running daemon (issue 22, observability)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import prometheus_client
import pytest
import zmq
import zmq.asyncio
from daemon_harness import Client, running_daemon
from prometheus_client.parser import text_string_to_metric_families
from running_daemon import RunningDaemon, daemon_process

from clients.client import AsyncDetectorClient
from daemon.wire.frames import AudioFormat
from daemon.wire.zmq_messages import OpenedReply, OpenMessage

F16 = AudioFormat("pcm_f32le", 16000, 1)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text -> {(sample name, sorted labels): value}."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


@pytest.fixture(scope="module")
def daemon(tiny_model: tuple[Path, Path]) -> Iterator[RunningDaemon]:
    with daemon_process(tiny_model[0]) as running:  # WebRTC off: the listener runs for /metrics alone
        yield running


async def test_metrics_of_a_subprocess_daemon_count_streams_hops_latency_and_refusals(
        daemon: RunningDaemon) -> None:
    status, content_type, text = await get(f"{daemon.http_url}/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    before = samples(text)
    assert before[("spoofwatch_streams_open", ())] == 0
    assert before[("spoofwatch_dropped_total", (("reason", "buffer_overflow"),))] == 0

    context = zmq.asyncio.Context()
    hostile = Client(context, daemon.ingest_endpoint)
    await hostile.request([b"[" * 1000 + b"]" * 1000])  # refused as bad_json
    hostile.close()
    context.destroy(linger=0)
    async with AsyncDetectorClient(daemon.ingest_endpoint, daemon.results_endpoint) as client:
        results = client.subscribe(["obs-1"], timeout_s=10, until_closed=True)
        await asyncio.sleep(0.2)
        stream = await client.open_stream("obs-1", encoding="pcm_f32le", sample_rate_hz=16000)
        during = samples((await get(f"{daemon.http_url}/metrics"))[2])
        assert during[("spoofwatch_streams_open", ())] == 1
        assert during[("spoofwatch_subscribers", (("kind", "zmq_pub"),))] >= 1
        t = np.arange(16000) / 16000
        await stream.send((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32))
        await stream.close()
        messages = [m async for m in results]
    hops = sum(m["type"] == "result" for m in messages)
    assert hops == 10

    after = samples((await get(f"{daemon.http_url}/metrics"))[2])
    assert after[("spoofwatch_streams_open", ())] == 0
    assert after[("spoofwatch_streams_opened_total", (("transport", "zmq"),))] == 1
    assert after[("spoofwatch_streams_closed_total", (("reason", "client"),))] == 1
    assert after[("spoofwatch_hops_scored_total", ())] == hops
    assert after[("spoofwatch_hop_latency_seconds_count", ())] == hops
    assert after[("spoofwatch_queue_wait_seconds_count", ())] == hops
    assert after[("spoofwatch_batch_size_sum", ())] == hops
    assert after[("spoofwatch_inference_seconds_count", ())] == after[("spoofwatch_batches_total", ())] >= 1
    assert after[("spoofwatch_refused_inputs_total", (("reason", "bad_json"), ("transport", "zmq")))] == 1
    assert ("spoofwatch_event_loop_lag_seconds", ()) in after
    assert after[("spoofwatch_event_loop_lag_histogram_seconds_count", ())] >= 1

    status, _, body = await get(f"{daemon.http_url}/healthz")
    assert status == 200 and '"status": "ok"' in body
    status, _, body = await get(f"{daemon.http_url}/readyz")
    assert status == 200 and '"status": "ready"' in body


async def test_readyz_is_503_at_the_admission_limit_and_when_draining(
        tiny_model: tuple[Path, Path]) -> None:
    async with running_daemon(tiny_model[0], streams={"max_streams": 1}) as daemon:
        base = daemon.state.endpoints["http"]
        assert (await get(f"{base}/readyz"))[0] == 200
        context = zmq.asyncio.Context()
        client = Client(context, daemon.state.endpoints["ingest"])
        assert isinstance(await client.request(OpenMessage("only", F16).to_frames()), OpenedReply)
        status, _, body = await get(f"{base}/readyz")
        assert status == 503 and '"under_admission_limit": false' in body and '"not_draining": true' in body
        metrics = samples((await get(f"{base}/metrics"))[2])
        assert metrics[("spoofwatch_ready", ())] == 0
        assert metrics[("spoofwatch_streams_open", ())] == metrics[("spoofwatch_streams_max", ())] == 1
        assert daemon.hub is not None
        daemon.hub.stop_accepting()  # the first step of a graceful shutdown
        status, _, body = await get(f"{base}/readyz")
        assert status == 503 and '"not_draining": false' in body
        client.close()
        context.destroy(linger=0)


async def test_healthz_turns_503_after_the_event_loop_blocks(tiny_model: tuple[Path, Path]) -> None:
    observability = {"lag_interval_s": 0.02, "lag_threshold_s": 0.2, "lag_window_s": 0.6}
    async with running_daemon(tiny_model[0], observability=observability) as daemon:
        base = daemon.state.endpoints["http"]
        await asyncio.sleep(0.1)
        assert (await get(f"{base}/healthz"))[0] == 200
        time.sleep(0.4)  # noqa: ASYNC251 - a blocking call on the loop: what the watchdog catches
        await asyncio.sleep(0.05)
        status, _, body = await get(f"{base}/healthz")
        assert status == 503 and "event_loop_lagging" in body
        metrics = samples((await get(f"{base}/metrics"))[2])
        assert metrics[("spoofwatch_event_loop_lag_max_seconds", ())] >= 0.3
        assert metrics[("spoofwatch_healthy", ())] == 0
        await asyncio.sleep(0.8)  # the spike leaves the window
        assert (await get(f"{base}/healthz"))[0] == 200


async def test_each_daemon_owns_its_registry_and_the_global_one_stays_clean(
        tiny_model: tuple[Path, Path]) -> None:
    async with running_daemon(tiny_model[0]) as first, running_daemon(tiny_model[0]) as second:
        assert first.metrics.registry is not second.metrics.registry
        context = zmq.asyncio.Context()
        client = Client(context, first.state.endpoints["ingest"])
        assert isinstance(await client.request(OpenMessage("one", F16).to_frames()), OpenedReply)
        one: Any = samples((await get(f"{first.state.endpoints['http']}/metrics"))[2])
        two: Any = samples((await get(f"{second.state.endpoints['http']}/metrics"))[2])
        assert one[("spoofwatch_streams_opened_total", (("transport", "zmq"),))] == 1
        assert ("spoofwatch_streams_opened_total", (("transport", "zmq"),)) not in two
        client.close()
        context.destroy(linger=0)
    names = {family.name for family in prometheus_client.REGISTRY.collect()}
    assert not any(name.startswith("spoofwatch") for name in names)


async def test_observability_off_leaves_no_listener(tiny_model: tuple[Path, Path]) -> None:
    async with running_daemon(tiny_model[0], observability={"enabled": False}) as daemon:
        assert "http" not in daemon.state.endpoints
