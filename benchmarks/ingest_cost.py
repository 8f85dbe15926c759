"""CPU cost of the daemon's per-message path, on the event-loop thread, in microseconds.

The event loop is one thread: ingest, hop cutting, batching bookkeeping and publishing all
run on it (inference has its own thread), so its CPU per message bounds how many streams one
daemon can take. This replays N telephone streams (8 kHz µ-law, 20 ms messages, streams
interleaved as they arrive live) through the real `ZmqIngest` message handler, `DaemonHub`,
`StreamBuffer` (soxr HQ), `Batcher` and `ResultPublisher`, as fast as the loop goes, and
reads the loop thread's CPU time (`time.thread_time`). Per stage it also times the pieces
alone. What it leaves out, by design: the socket receive and the event-loop wakeups (the
load benchmark measures the whole daemon), and inference (a backend that returns constants,
so the figure does not depend on the model). CPU time barely changes with other load on the
machine, unlike latency.

    python benchmarks/ingest_cost.py [--streams 100] [--seconds 10] [--batched]

With `--batched` every 20 ms frame of all streams arrives as one `audio_batch` message (a
gateway's), and the figure is per stream-message (entry); `--compare` runs both, alternating.
`--paths ROUNDS` compares StreamBuffer's compiled per-message path (`_fastpath.c`) with the pure
Python one (`SPOOFWATCH_PURE_PYTHON_INGEST`), single and batched, alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zmq

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from daemon.batcher import Batcher
from daemon.config import DecisionConfig, StreamsConfig, ZmqConfig
from daemon.hub import DaemonHub
from daemon.ingest.zmq import ZmqIngest
from daemon.publisher import ResultPublisher
from daemon.refusals import Refusals
from daemon.wire.frames import AudioFormat
from daemon.wire.pcm import decode_payload, encode_samples
from daemon.wire.zmq_messages import AudioBatchMessage, AudioMessage, OpenMessage, parse_request
from streaming_models.runtime import fastpath
from streaming_models.runtime.hops import StreamBuffer
from streaming_models.runtime.model_format import ModelMetadata, StateSpec

FORMAT = AudioFormat("mulaw", 8000, 1)
MESSAGE_SAMPLES = 160
METADATA = ModelMetadata(model_id="constant", sample_rate_hz=16000, hop_samples=1600,
                         states=(StateSpec("state_in", "state_out", (4,)),), label_policy="bench")


class ConstantBackend:
    """Scores nothing: the benchmark measures the daemon around the model."""

    metadata = METADATA

    def initial_states(self, batch: int) -> list[np.ndarray]:
        return [np.zeros((batch, 4), dtype=np.float32)]

    def run(self, audio: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        return np.full((len(audio), 2), 0.25, dtype=np.float32), states


def per_call_us(function: Callable[[int], object], calls: int) -> float:
    started = time.thread_time()
    for i in range(calls):
        function(i)
    return 1e6 * (time.thread_time() - started) / calls


def stage_costs(payloads: list[bytes], streams: int) -> dict[str, float]:
    frames = AudioMessage("load300-12345-1700000000-123", 7, payloads[0]).to_frames()
    samples = decode_payload(payloads[0], FORMAT)
    costs = {
        "parse_request": per_call_us(lambda i: parse_request(frames), 50_000),
        "decode_payload": per_call_us(lambda i: decode_payload(payloads[i % len(payloads)], FORMAT), 50_000),
    }
    wideband = np.zeros(2 * len(samples), dtype=np.float32)  # 20 ms at 16 kHz: no resampling
    for rate, chunk in ((8000, samples), (16000, wideband)):
        for compiled in (False, True):
            if compiled and fastpath.load_extension() is None:
                continue
            buffers = [StreamBuffer(rate, 16000, 1600, quality="HQ", compiled=compiled) for _ in range(streams)]

            def push(i: int, buffers: list[StreamBuffer] = buffers, chunk: np.ndarray = chunk) -> None:
                buffer = buffers[i % streams]
                buffer.push(chunk, i // streams)
                buffer.pop_hop_spans()

            name = f"StreamBuffer push+pop {rate // 1000} kHz ({'compiled' if compiled else 'Python'})"
            costs[name] = per_call_us(push, 50_000)
    return costs


def choose_path(compiled: bool) -> str:
    """Make the daemon's StreamBuffers run the given path (the process-wide choice, redone)."""
    if compiled:
        os.environ.pop(fastpath.FORCE_PYTHON_ENV, None)
    else:
        os.environ[fastpath.FORCE_PYTHON_ENV] = "1"
    fastpath.ingest_path.cache_clear()
    if fastpath.ingest_path().compiled != compiled:
        raise SystemExit("the compiled path is not built (pip install -e . with a C compiler)")
    return "compiled" if compiled else "Python"


async def replay(streams: int, seconds: float, payloads: list[bytes], batched: bool = False) -> tuple[float, int, int]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    publisher = ResultPublisher(context, "inproc://results", hwm=100_000)
    subscriber = context.socket(zmq.SUB)  # so that publishing really queues messages
    subscriber.setsockopt(zmq.SUBSCRIBE, b"")
    subscriber.setsockopt(zmq.RCVHWM, 0)
    subscriber.connect("inproc://results")
    batcher = Batcher(ConstantBackend(), max_batch=64, max_wait_ms=20)
    hub = DaemonHub(METADATA, batcher, publisher, StreamsConfig(), DecisionConfig())
    batching = asyncio.create_task(batcher.run_batches())
    ingest = ZmqIngest(hub, ZmqConfig(), refusals=Refusals(), model_id=METADATA.model_id, hop_ms=METADATA.hop_ms)
    identity = b"client"
    stream_ids = [f"bench-{i}" for i in range(streams)]
    for stream_id in stream_ids:
        await ingest._dispatch([identity, *OpenMessage(stream_id, FORMAT).to_frames()])
    messages = int(seconds * 50)
    await asyncio.sleep(0.05)
    started = time.thread_time()
    for k in range(messages):
        payload = payloads[k % len(payloads)]
        if batched:
            entries = [AudioMessage(stream_id, k, payload) for stream_id in stream_ids]
            await ingest._dispatch([identity, *AudioBatchMessage(entries).to_frames()])
        else:
            for stream_id in stream_ids:
                await ingest._dispatch([identity, *AudioMessage(stream_id, k, payload).to_frames()])
        await asyncio.sleep(0)  # let scoring, batching and publishing run, as the receive tick does
    await batcher.wait_idle()
    for _ in range(10):
        await asyncio.sleep(0)
    cpu_s = time.thread_time() - started
    published = 0
    while subscriber.poll(0):
        subscriber.recv_multipart()
        published += 1
    batching.cancel()
    await ingest.stop()
    subscriber.close(linger=0)
    publisher.close()
    context.term()
    return cpu_s, messages * streams, published


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per stream")
    parser.add_argument("--batched", action="store_true", help="one audio_batch message per frame of all streams")
    parser.add_argument("--compare", type=int, default=0, metavar="ROUNDS",
                        help="ROUNDS x (single, batched), alternating; the per-stage lines are skipped")
    parser.add_argument("--paths", type=int, default=0, metavar="ROUNDS",
                        help="ROUNDS x (single, batched) x (Python, compiled StreamBuffer path), alternating")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    payloads = [encode_samples((0.1 * rng.standard_normal(MESSAGE_SAMPLES)).astype(np.float32), FORMAT)
                for _ in range(50)]
    if args.compare:
        for _ in range(args.compare):
            for batched in (False, True):
                whole_handler(args.streams, args.seconds, payloads, batched)
        return 0
    if args.paths:
        for name, cost in stage_costs(payloads, args.streams).items():
            print(f"{name:42s} {cost:6.1f} us per message (alone)", flush=True)
        for _ in range(args.paths):
            for batched in (False, True):
                for compiled in (False, True):
                    whole_handler(args.streams, args.seconds, payloads, batched, choose_path(compiled))
        return 0
    for name, cost in stage_costs(payloads, args.streams).items():
        print(f"{name:42s} {cost:6.1f} us per message (alone)")
    whole_handler(args.streams, args.seconds, payloads, args.batched)
    return 0


def whole_handler(streams: int, seconds: float, payloads: list[bytes], batched: bool, path: str = "") -> None:
    # building the messages runs in the loop too; subtract its cost (the sender's, not the daemon's)
    if batched:
        ids = [f"bench-{i}" for i in range(streams)]
        build = per_call_us(lambda i: AudioBatchMessage([AudioMessage(s, i, payloads[0]) for s in ids]).to_frames(),
                            max(10, 50_000 // streams)) / streams
    else:
        build = per_call_us(lambda i: AudioMessage("bench-1", i, payloads[0]).to_frames(), 50_000)
    cpu_s, messages, published = asyncio.run(replay(streams, seconds, payloads, batched))
    per_message = 1e6 * cpu_s / messages - build
    kind = "audio_batch entry" if batched else "audio message"
    where = f" ({path} StreamBuffer path)" if path else ""
    print(f"whole handler{where}, {streams} streams x {seconds:.0f} s: {per_message:.1f} us per {kind} on the "
          f"event-loop thread ({published} results published; socket receive, loop wakeups and inference "
          f"not included)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
