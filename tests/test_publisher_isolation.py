"""A subscriber that never reads must not lower what healthy subscribers receive (issue 22, fix 5):
with XPUB_NODROP (the old default) one stuck subscriber made libzmq drop every message for all
subscribers; a healthy one got 490 of 2,000 results and none of the `closed` summaries."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio
from daemon_harness import Client, running_daemon
from telephony_harness import PubCollector, speechlike

from clients.client import ResultSubscription
from daemon.config import ZmqConfig
from daemon.publisher import ResultPublisher
from daemon.wire.frames import AudioFormat
from daemon.wire.limits import MAX_METADATA_BYTES
from daemon.wire.pcm import encode_samples
from daemon.wire.results import StreamSummary, closed_event, opened_event, result_message
from daemon.wire.zmq_messages import (
    AudioMessage,
    ClosedReply,
    CloseMessage,
    OpenedReply,
    OpenMessage,
)

F16 = AudioFormat("pcm_f32le", 16000, 1)
STREAMS = 12
SECONDS = 3  # 30 hops of the tiny model per stream


def _rss_kib() -> int:
    with open(f"/proc/{os.getpid()}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


@pytest.fixture
def context() -> Any:
    ctx = zmq.asyncio.Context()
    yield ctx
    ctx.destroy(linger=0)


def _stuck_subscriber(context: Any, endpoint: str) -> Any:
    stuck = context.socket(zmq.SUB)  # subscribes to everything and never reads
    stuck.setsockopt(zmq.RCVHWM, 1)
    stuck.setsockopt(zmq.RCVBUF, 4096)
    stuck.setsockopt(zmq.LINGER, 0)
    stuck.subscribe(b"")
    stuck.connect(endpoint)
    return stuck


async def test_a_stuck_subscriber_costs_healthy_subscribers_nothing(tiny_model: tuple[Path, Path], context: Any) -> None:
    assert ZmqConfig().pub_count_drops is False  # isolation is the default
    async with running_daemon(tiny_model[0], zmq={"pub_hwm": 50, "pub_sndbuf_bytes": 16384},
                              streams={"max_buffered_s": 60}) as daemon:
        pub = daemon.state.endpoints["pub"]
        healthy = [PubCollector(pub), PubCollector(pub)]
        stuck = _stuck_subscriber(context, pub)
        client = Client(context, daemon.state.endpoints["ingest"])
        await asyncio.sleep(0.3)  # PUB/SUB joins asynchronously
        audio = speechlike(SECONDS, 16000)
        chunks = [encode_samples(audio[i:i + 1600], F16) for i in range(0, audio.size, 1600)]
        ids = [f"iso-{n}" for n in range(STREAMS)]
        for stream_id in ids:
            assert isinstance(await client.request(OpenMessage(stream_id, F16, {"k": "v" * 400}).to_frames()),
                              OpenedReply)
        for seq, chunk in enumerate(chunks):
            for stream_id in ids:
                await client.send(AudioMessage(stream_id, seq, chunk).to_frames())
        for stream_id in ids:
            assert await client.request(CloseMessage(stream_id).to_frames(), timeout=20) == ClosedReply(stream_id)
        hops = SECONDS * 10
        for collector in healthy:
            for stream_id in ids:
                closed = await collector.closed(stream_id, timeout=10)
                assert closed["summary"]["hops"] == hops
                assert [r["seq"] for r in collector.of(stream_id, "result")] == list(range(hops))
            await collector.close()
        assert daemon.publisher is not None and daemon.publisher.dropped == 0  # nothing refused for all
        stuck.close()
        client.close()


async def test_a_stuck_subscriber_holds_a_bounded_amount_of_memory(context: Any) -> None:
    """At the old default pub_hwm (10,000) a stuck subscriber added 110 MB of RSS; the default now
    bounds it at pub_hwm x the largest message the metadata limit allows."""
    config = ZmqConfig()
    publisher = ResultPublisher(context, "tcp://127.0.0.1:*", config.pub_hwm, count_drops=config.pub_count_drops)
    stuck = _stuck_subscriber(context, publisher.endpoint)
    try:
        await asyncio.sleep(0.3)
        metadata = {f"k{i:02d}": "v" * (MAX_METADATA_BYTES // 8 - 3) for i in range(8)}  # the largest allowed
        message = result_message(stream_id="big", seq=0, t_start_s=0, t_end_s=0.1, p_spoof=0.5, p_codec=0.5,
                                 p_spoof_smooth=0.5, p_codec_smooth=0.5, decision="undecided", model_id="m",
                                 latency_ms=1.0, metadata=metadata)
        before = _rss_kib()
        for _ in range(20_000):
            publisher.publish(message)
        await asyncio.sleep(0.5)  # let libzmq's I/O thread move what it can
        grown_mb = (_rss_kib() - before) / 1024
        assert grown_mb < 25, f"a stuck subscriber grew RSS by {grown_mb:.0f} MB"
        assert publisher.dropped == 0
    finally:
        stuck.close()
        publisher.close()


async def test_a_subscriber_counts_its_own_losses(context: Any) -> None:
    """Drops are per subscriber now, so the client library counts them: a closed summary's hops
    minus the results that arrived, for each stream it saw open."""
    publisher = ResultPublisher(context, "tcp://127.0.0.1:*", 100)
    subscription = ResultSubscription(publisher.endpoint, timeout_s=2.0, context=context)
    try:
        await asyncio.sleep(0.3)
        summary = StreamSummary(hops=10, audio_s=1.0, p_spoof_mean=0.5, p_spoof_max=0.5, p_codec_mean=0.5,
                                p_codec_max=0.5, final_decision="bonafide", gaps_filled=0, samples_filled=0,
                                duplicates_dropped=0, samples_dropped_overflow=0, results_dropped=0)

        def result(stream_id: str, seq: int) -> dict[str, Any]:
            return result_message(stream_id=stream_id, seq=seq, t_start_s=0, t_end_s=0.1, p_spoof=0.5, p_codec=0.5,
                                  p_spoof_smooth=0.5, p_codec_smooth=0.5, decision="bonafide", model_id="m",
                                  latency_ms=1.0, metadata={})

        publisher.publish(opened_event(stream_id="lossy", transport="zmq", sample_rate_hz=16000, metadata={},
                                       model_id="m"))
        for seq in range(10):
            if seq not in (2, 5, 6):  # lost on the way to this subscriber
                publisher.publish(result("lossy", seq))
        publisher.publish(result("joined-late", 9))
        publisher.publish(closed_event(stream_id="lossy", reason="client", summary=summary))
        publisher.publish(closed_event(stream_id="joined-late", reason="client", summary=summary))
        closed = 0
        async for message in subscription:
            closed += message["type"] == "closed"
            if closed == 2:
                break
        assert subscription.missed == {"lossy": 3}  # a stream seen only mid-way is not judged
    finally:
        subscription.close()
        publisher.close()
