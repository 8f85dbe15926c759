"""Load benchmark: how many concurrent real-time streams one daemon serves within the latency budget.

Each level N runs N telephone-like streams (8 kHz µ-law, 20 ms messages, paced in real
time, phases spread over the 20 ms) from a separate sender process, for `--duration`
seconds, while this process subscribes to the results. Per level it prints:

- latency percentiles: `latency_ms` as published by the daemon (hop complete -> published),
  and end to end on the client clock (send of the message that completed the hop ->
  result received), which adds ZeroMQ transport and ingest queueing;
- lost results (hops fully sent whose result never arrived) and late results (end to
  end above the budget);
- the daemon process's CPU (% of one core, total and per stream) and RSS (total and
  growth per stream over the idle daemon), read from /proc.

`--search` raises N (doubling, then bisecting) to the largest N whose end-to-end p99
stays within `--budget-ms` with < 1 % lost. The run is bounded by `--max-seconds`.

    python benchmarks/load.py --model PATH --streams 50,100,200,300
    python benchmarks/load.py --model PATH --search
    python benchmarks/load.py --endpoint tcp://HOST:5555 --results-endpoint tcp://HOST:5556 --pid PID ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import zmq
import zmq.asyncio

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from clients.local_daemon import (
    DaemonNotReady,
    daemon_command,
    free_port,
    stop_process,
    wait_for_pong,
)
from daemon.wire.frames import AudioFormat
from daemon.wire.pcm import encode_samples
from daemon.wire.results import decode_pub
from daemon.wire.zmq_messages import (
    AudioMessage,
    CloseMessage,
    ErrorReply,
    OpenedReply,
    OpenMessage,
    parse_reply,
)

FORMAT = AudioFormat("mulaw", 8000, 1)
FRAME_MS = 20
FRAME_SAMPLES = FORMAT.sample_rate_hz * FRAME_MS // 1000
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


# ---- the sender process -----------------------------------------------------------------------

def synthetic_speechlike(seconds: float, seed: int) -> bytes:
    """A voiced-ish test signal (harmonics with a wandering pitch, syllable envelope), µ-law coded.
    The benchmark measures the daemon, not the detector, so any audio of the right shape serves."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FORMAT.sample_rate_hz)
    t = np.arange(n) / FORMAT.sample_rate_hz
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(pitch) / FORMAT.sample_rate_hz
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)) ** 2
    signal = 0.2 * voiced * envelope + 0.01 * rng.standard_normal(n)
    return encode_samples(signal.astype(np.float32), FORMAT)


def run_sender(endpoint: str, stream_ids: list[str], duration_s: float, start_at: float, pipe: Connection) -> None:
    """Open every stream, then send 20 ms messages in real time until `duration_s`; report send times."""
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.SNDHWM, 0)
    dealer.setsockopt(zmq.RCVHWM, 0)
    dealer.connect(endpoint)
    frames_per_stream = int(duration_s * 1000 / FRAME_MS)
    audio = synthetic_speechlike(duration_s + 1, seed=7)
    frame_bytes = FRAME_SAMPLES * FORMAT.bytes_per_frame
    errors: list[str] = []
    hop_ms = 0.0
    for stream_id in stream_ids:
        dealer.send_multipart(OpenMessage(stream_id, FORMAT, {"bench": "load"}).to_frames())
    opened = 0
    deadline = time.monotonic() + 30
    while opened < len(stream_ids) and time.monotonic() < deadline:
        if dealer.poll(1000):
            reply = parse_reply(dealer.recv_multipart())
            if isinstance(reply, OpenedReply):
                opened += 1
                hop_ms = reply.hop_ms
            elif isinstance(reply, ErrorReply):
                errors.append(f"{reply.code}: {reply.message}")
                opened += 1
    n = len(stream_ids)
    send_times = np.full((n, frames_per_stream), np.nan)
    offsets = np.arange(n) * (FRAME_MS / 1000) / max(n, 1)  # spread the phases over one frame
    while time.monotonic() < start_at:
        time.sleep(0.001)
    origin = time.monotonic()
    for k in range(frames_per_stream):
        slot = origin + k * FRAME_MS / 1000
        payload = audio[k * frame_bytes : (k + 1) * frame_bytes]
        for i, stream_id in enumerate(stream_ids):
            due = slot + offsets[i]
            delay = due - time.monotonic()
            if delay > 0.0005:
                time.sleep(delay)
            dealer.send_multipart(AudioMessage(stream_id, k, payload).to_frames(), copy=False)
            send_times[i, k] = time.monotonic()
        while dealer.poll(0):  # errors on audio would show up here
            reply = parse_reply(dealer.recv_multipart())
            if isinstance(reply, ErrorReply):
                errors.append(f"{reply.code}: {reply.message}")
    for stream_id in stream_ids:
        dealer.send_multipart(CloseMessage(stream_id).to_frames())
    pipe.send({"send_times": send_times, "errors": errors[:20], "error_count": len(errors), "hop_ms": hop_ms})
    dealer.close(linger=5000)
    context.term()


# ---- the measuring side -----------------------------------------------------------------------

@dataclass
class ProcSample:
    cpu_s: float
    rss_bytes: int


def read_proc(pid: int) -> ProcSample:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return ProcSample(cpu_s, rss_pages * PAGE_BYTES)


@dataclass
class LevelResult:
    streams: int
    duration_s: float
    hop_ms: float
    expected: int
    received: int
    lost: int
    late: int
    daemon_latency_ms: dict[str, float]
    end_to_end_ms: dict[str, float]
    cpu_percent: float
    rss_mb: float
    rss_growth_mb_per_stream: float
    send_errors: int
    summaries_dropped: dict[str, int] = field(default_factory=dict)
    error_examples: list[str] = field(default_factory=list)

    @property
    def lost_fraction(self) -> float:
        return self.lost / self.expected if self.expected else 1.0

    def passes(self, budget_ms: float) -> bool:
        return self.expected > 0 and self.lost_fraction < 0.01 and self.end_to_end_ms.get("p99", 1e9) <= budget_ms


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    array = np.asarray(values)
    return {f"p{q}": round(float(np.percentile(array, q)), 1) for q in (50, 95, 99)} | {
        "max": round(float(array.max()), 1)
    }


async def measure_level(args: argparse.Namespace, n: int, pid: int | None, idle_rss: int) -> LevelResult:
    run_tag = f"load{n}-{os.getpid()}-{int(time.time())}"
    stream_ids = [f"{run_tag}-{i}" for i in range(n)]
    context = zmq.asyncio.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, run_tag.encode())
    sub.connect(args.results_endpoint)
    await asyncio.sleep(0.3)
    receiver, sender_end = multiprocessing.Pipe(duplex=False)
    start_at = time.monotonic() + 1.0 + n * 0.002
    sender = multiprocessing.Process(
        target=run_sender, args=(args.endpoint, stream_ids, args.duration, start_at, sender_end), daemon=True
    )
    sender.start()
    results: dict[str, dict[int, tuple[float, float, float]]] = defaultdict(dict)  # id -> seq -> (recv, t_end, lat)
    summaries: dict[str, dict[str, Any]] = {}
    cpu_start = cpu_end = None
    measure_from = start_at + 2.0  # skip the first seconds (open burst, warm-up)
    measure_to = start_at + args.duration
    finish_by = start_at + args.duration + 10.0
    while len(summaries) < n and time.monotonic() < finish_by:
        now = time.monotonic()
        if pid is not None and cpu_start is None and now >= measure_from:
            cpu_start = (now, read_proc(pid))
        if pid is not None and cpu_end is None and now >= measure_to:
            cpu_end = (now, read_proc(pid))
        if not await sub.poll(100):
            continue
        received_at = time.monotonic()
        message = decode_pub(await sub.recv_multipart())
        stream_id = message["stream_id"]
        if message["type"] == "result":
            results[stream_id][message["seq"]] = (received_at, message["t_end_s"], message["latency_ms"])
        elif message["type"] == "closed":
            summaries[stream_id] = message["summary"]
    sender.join(timeout=30)
    report: dict[str, Any] = receiver.recv() if receiver.poll(5) else {
        "send_times": None, "errors": ["sender sent no report"], "error_count": 1, "hop_ms": 0.0}
    sub.close(linger=0)
    context.term()

    send_times = report["send_times"]
    hop_ms = float(report["hop_ms"]) or 1.0
    expected_per_stream = int(args.duration * 1000 // hop_ms)
    daemon_latency: list[float] = []
    end_to_end: list[float] = []
    received = late = 0
    for i, stream_id in enumerate(stream_ids):
        for seq, (received_at, t_end_s, latency_ms) in results[stream_id].items():
            if seq >= expected_per_stream:
                continue  # the partial tail flushed at close
            received += 1
            daemon_latency.append(latency_ms)
            # the message carrying the hop's last sample completed the hop
            frame_index = min(int(np.ceil(t_end_s * 1000 / FRAME_MS - 1e-6)) - 1, send_times.shape[1] - 1)
            sent_at = send_times[i, max(frame_index, 0)] if send_times is not None else np.nan
            if not np.isnan(sent_at):
                e2e = 1000 * (received_at - sent_at)
                end_to_end.append(e2e)
                late += e2e > args.budget_ms
    expected = expected_per_stream * n
    cpu_percent = rss_mb = growth = float("nan")
    if pid is not None and cpu_start and cpu_end:
        wall = cpu_end[0] - cpu_start[0]
        cpu_percent = 100 * (cpu_end[1].cpu_s - cpu_start[1].cpu_s) / wall
        rss_mb = cpu_end[1].rss_bytes / 2**20
        growth = (cpu_end[1].rss_bytes - idle_rss) / 2**20 / n
    dropped_keys = ("results_dropped", "samples_dropped_overflow", "gaps_filled", "duplicates_dropped")
    dropped = {k: int(sum(s.get(k, 0) for s in summaries.values())) for k in dropped_keys}
    return LevelResult(
        streams=n, duration_s=args.duration, hop_ms=hop_ms, expected=expected, received=received,
        lost=expected - received, late=late, daemon_latency_ms=percentiles(daemon_latency),
        end_to_end_ms=percentiles(end_to_end), cpu_percent=round(cpu_percent, 1), rss_mb=round(rss_mb, 1),
        rss_growth_mb_per_stream=round(growth, 3), send_errors=int(report["error_count"]),
        summaries_dropped=dropped, error_examples=list(report["errors"])[:3],
    )


def print_level(result: LevelResult, budget_ms: float) -> None:
    per_stream_cpu = result.cpu_percent / result.streams if result.streams else float("nan")
    print(
        f"N={result.streams:4d}  hop={result.hop_ms:.0f}ms  results {result.received}/{result.expected} "
        f"(lost {result.lost}, {100 * result.lost_fraction:.2f}%; late>{budget_ms:.0f}ms {result.late})\n"
        f"        daemon latency_ms {result.daemon_latency_ms}\n"
        f"        end-to-end ms     {result.end_to_end_ms}\n"
        f"        daemon CPU {result.cpu_percent}% of one core ({per_stream_cpu:.2f}%/stream), "
        f"RSS {result.rss_mb} MB (+{result.rss_growth_mb_per_stream} MB/stream), "
        f"summaries {result.summaries_dropped}, send errors {result.send_errors} {result.error_examples}\n"
        f"        -> {'PASS' if result.passes(budget_ms) else 'FAIL'} (p99 end-to-end <= {budget_ms:.0f} ms, lost < 1%)",
        flush=True,
    )


# ---- daemon lifecycle -----------------------------------------------------------------------

def start_daemon(args: argparse.Namespace, max_streams: int) -> subprocess.Popen[bytes]:
    ingest, results = free_port(), free_port()
    args.endpoint, args.results_endpoint = f"tcp://127.0.0.1:{ingest}", f"tcp://127.0.0.1:{results}"
    command = daemon_command(args.model, args.endpoint, args.results_endpoint,
                             "--streams.max-streams", str(max_streams), "--streams.idle-timeout-s", "30",
                             *args.daemon_arg)
    log_path = REPO_ROOT / "runs" / "load-daemon.log"
    log_path.parent.mkdir(exist_ok=True)
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    wait_until_ready(args.endpoint, process, log_path)
    return process


def wait_until_ready(endpoint: str, process: subprocess.Popen[bytes] | None, log_path: Path | None) -> None:
    try:
        wait_for_pong(endpoint, process, timeout_s=60)
    except DaemonNotReady as exc:
        tail = log_path.read_text()[-2000:] if log_path else ""
        raise SystemExit(f"{exc}:\n{tail}") from None


# ---- main ---------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "streaming_models/default_model/spoofwatch-default.onnx",
                        help="ONNX model for the daemon this script starts")
    levels = parser.add_mutually_exclusive_group()
    levels.add_argument("--streams", default="50,100,200,300", help="comma-separated levels N (default 50,100,200,300)")
    levels.add_argument("--search", action="store_true", help="find the largest N within the budget")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of audio per stream per level")
    parser.add_argument("--budget-ms", type=float, default=250.0, help="end-to-end p99 latency budget")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop starting new levels after this")
    parser.add_argument("--search-start", type=int, default=25, help="--search: first N")
    parser.add_argument("--search-max", type=int, default=2000, help="--search: never try more than this")
    parser.add_argument("--endpoint", default=None, help="ingest of a running daemon (skip starting one)")
    parser.add_argument("--results-endpoint", default="tcp://127.0.0.1:5556", help="with --endpoint: its PUB socket")
    parser.add_argument("--pid", type=int, default=None, help="with --endpoint: the daemon's pid for CPU/RSS")
    parser.add_argument("--daemon-arg", action="append", default=[], help="extra flag for the started daemon")
    parser.add_argument("--json", type=Path, default=None, help="also write all levels to this JSON file")
    return parser


def next_search_level(history: list[tuple[int, bool]], args: argparse.Namespace) -> int | None:
    passed = [n for n, ok in history if ok]
    failed = [n for n, ok in history if not ok]
    if not history:
        return args.search_start
    if not failed:
        nxt = max(passed) * 2
        return nxt if nxt <= args.search_max else None
    high = min(failed)
    low = max([n for n in passed if n < high], default=0)
    if high - low <= max(5, high // 10):
        return None
    return (low + high) // 2


async def run(args: argparse.Namespace) -> int:
    began = time.monotonic()
    planned = [] if args.search else [int(n) for n in args.streams.split(",") if n.strip()]
    biggest = args.search_max if args.search else max(planned)
    daemon = None
    pid = args.pid
    if args.endpoint is None:
        if not args.model.is_file():
            print(f"model not found: {args.model} (pass --model PATH)", file=sys.stderr)
            return 2
        daemon = start_daemon(args, max_streams=biggest + 10)
        pid = daemon.pid
    else:
        wait_until_ready(args.endpoint, None, None)
    print(f"daemon at {args.endpoint} (pid {pid}), model {args.model}, {os.cpu_count()} CPUs; "
          f"{args.duration:.0f} s per level", flush=True)
    idle_rss = read_proc(pid).rss_bytes if pid is not None else 0
    history: list[tuple[int, bool]] = []
    levels: list[LevelResult] = []
    try:
        while True:
            n = next_search_level(history, args) if args.search else (planned.pop(0) if planned else None)
            if n is None:
                break
            if time.monotonic() - began + args.duration + 15 > args.max_seconds:
                print(f"stopping: --max-seconds {args.max_seconds:.0f} reached", flush=True)
                break
            result = await measure_level(args, n, pid, idle_rss)
            print_level(result, args.budget_ms)
            levels.append(result)
            history.append((n, result.passes(args.budget_ms)))
            await asyncio.sleep(2.0)  # let the daemon settle (closing streams) between levels
    finally:
        if daemon is not None:
            stop_process(daemon, timeout_s=20)
    passing = [n for n, ok in history if ok]
    print(f"largest N within budget: {max(passing) if passing else 'none'} "
          f"(tried {[n for n, _ in history]})", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps([r.__dict__ for r in levels], indent=2, default=float))  # numpy scalars
    return 0


def main() -> int:
    args = build_parser().parse_args()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
