"""Load benchmark: how many concurrent real-time streams one daemon serves within the latency budget.

Each level N runs N telephone-like streams (8 kHz µ-law, 20 ms messages, paced in real
time, phases spread over the 20 ms) from a separate sender process, for `--duration`
seconds, while this process subscribes to the results. Per level it prints:

- latency percentiles: `latency_ms` as published by the daemon (hop complete -> published),
  and end to end on the client clock (send of the message that completed the hop ->
  result received), which adds ZeroMQ transport, ingest queueing and the resampler's delay;
- lost results (hops fully sent whose result never arrived) and late results (end to
  end above the budget);
- the daemon process's CPU (% of one core, total and per stream, and CPU ms per 1000 audio
  messages, a figure that other load on the machine barely changes) and RSS (total and
  growth per stream over the idle daemon), read from /proc;
- the sender's own lateness against its schedule and its CPU per 1000 messages. A level
  whose sender fell behind (p99 lateness over one frame) is reported as not measured: the
  daemon then saw less than real-time load.

With `--batched` the sender behaves like a media gateway: at every 20 ms tick it sends the
frames of up to `--batch-size` streams in one `audio_batch` message (docs/protocol.md), the
groups' phases spread over the 20 ms; CPU figures stay per 1000 stream-messages (entries).

With `--verifier PATH` the daemon also runs the second-tier verifier on every stream (docs/verifier.md:
`[verifier] enabled`, its defaults: a 4 s window every 10 hops, every stream screened in; other
settings through `--daemon-arg=--verifier.KEY=VALUE`), and each level also prints how many verifier
windows per stream and second of audio reached the results (when it keeps up, one per `every_hops`
hops less each stream's last window, which is scored after its last result: 0.95 at the defaults and
20 s per level; fewer means windows were dropped). `--verifier random` exports a Whisper tiny.en-shaped verifier with
random weights first: its cost is the trained one's (the cost does not depend on the weights).

`--search` raises N (doubling, then bisecting) to the largest N whose end-to-end p99
stays within `--budget-ms` with < 1 % lost (and a sender that kept up). The run is bounded
by `--max-seconds`.

    python benchmarks/load.py --model PATH --streams 50,100,200,300
    python benchmarks/load.py --model PATH --search
    python benchmarks/load.py --model PATH --search --batched
    python benchmarks/load.py --model PATH --search --verifier runs/verifier/verifier.onnx
    python benchmarks/load.py --endpoint tcp://HOST:5555 --results-endpoint tcp://HOST:5556 --pid PID ...
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import zmq

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from clients.local_daemon import (
    DaemonNotReady,
    daemon_command,
    free_port,
    stop_process,
    wait_for_pong,
)
from daemon.wire.endpoints import DEFAULT_RESULTS_ENDPOINT
from daemon.wire.frames import AudioFormat
from daemon.wire.pcm import encode_samples
from daemon.wire.results import decode_pub
from daemon.wire.zmq_messages import (
    MAX_BATCH_ENTRIES,
    PROTOCOL_VERSION,
    CloseMessage,
    ErrorReply,
    OpenedReply,
    OpenMessage,
    parse_reply,
)
from streaming_models.runtime.default_model import packaged_model_path

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


# An `AudioMessage` header (docs/protocol.md), %-formatted with the JSON-quoted stream id and
# the seq: the sender must keep real time for hundreds of streams, and json.dumps per message
# was its largest cost. tests/test_load_benchmark.py checks it parses as an AudioMessage.
AUDIO_HEADER = b'{"v":%d,"type":"audio","stream_id":%%s,"seq":%%d}' % PROTOCOL_VERSION


def audio_header(stream_id: str, seq: int) -> bytes:
    return AUDIO_HEADER % (json.dumps(stream_id).encode(), seq)


# An `audio_batch` header (docs/protocol.md) for one group of streams, %-formatted with the
# group's ids (a JSON array, built once per group) and their seqs.
BATCH_HEADER = b'{"v":%d,"type":"audio_batch","stream_ids":%%s,"seqs":[%%s]}' % PROTOCOL_VERSION


def batch_header(stream_ids_json: bytes, seqs: list[int]) -> bytes:
    return BATCH_HEADER % (stream_ids_json, b",".join([b"%d" % k for k in seqs]))


@dataclass
class SenderReport:
    send_times: npt.NDArray[np.float64]  # [stream, frame] monotonic send time (NaN: not sent)
    lateness_ms: dict[str, float]  # send time - scheduled time, percentiles over all messages
    behind_ms_max: float  # the largest lateness: > a frame means the sender itself lost real time
    cpu_s: float  # the sender's CPU time while sending
    messages: int
    errors: list[str]
    error_count: int
    hop_ms: float


def run_sender(endpoint: str | Mapping[str, str], stream_ids: list[str], duration_s: float, start_at: float,
               pipe: Connection, batch_size: int = 0, spread_hops: bool = False) -> None:
    """Open every stream, then send 20 ms messages on a fixed schedule until `duration_s`.

    `endpoint` is one daemon's ingest, or each stream id's own (daemon replicas: the placement a
    client computes with clients/placement.py); one connection per distinct endpoint.

    Message (stream i, frame k) is due at start + k * 20 ms + i * 20 ms / N (phases spread
    over one frame). Headers and payloads are built before the clock starts; the loop only
    sleeps and sends, and records each message's lateness so a slow sender is reported as
    such instead of being counted as daemon latency. With `batch_size` > 0 the streams are cut
    into G groups of at most that many, and group g's frames go in one `audio_batch` message
    due at start + k * 20 ms + g * 20 ms / G. With `spread_hops`, stream i starts i mod
    (hop / 20 ms) frames late, so the streams' hops end on different ticks, as calls that
    began at random moments do; without it every stream completes a hop on the same tick."""
    context = zmq.Context()
    owners = [endpoint] * len(stream_ids) if isinstance(endpoint, str) else [endpoint[s] for s in stream_ids]
    dealers: dict[str, zmq.Socket[bytes]] = {}
    for owner in owners:
        if owner not in dealers:
            dealers[owner] = context.socket(zmq.DEALER)
            dealers[owner].setsockopt(zmq.SNDHWM, 0)
            dealers[owner].setsockopt(zmq.RCVHWM, 0)
            dealers[owner].connect(owner)
    dealer_of = [dealers[owner] for owner in owners]
    dealer = dealer_of[0] if len(dealers) == 1 else None  # the batched schedule needs one daemon
    if batch_size > 0 and dealer is None:
        raise ValueError("batched sending goes to one daemon: give one endpoint")
    poller = zmq.Poller()
    for socket in dealers.values():
        poller.register(socket, zmq.POLLIN)

    def replies(timeout_ms: int) -> list[Any]:
        """Every reply queued on any connection (waiting up to `timeout_ms` for the first)."""
        received = []
        for ready, _ in poller.poll(timeout_ms):
            while True:
                try:
                    received.append(parse_reply(ready.recv_multipart(zmq.NOBLOCK)))
                except zmq.Again:
                    break
        return received

    frames_per_stream = int(duration_s * 1000 / FRAME_MS)
    audio = synthetic_speechlike(duration_s + 1, seed=7)
    frame_bytes = FRAME_SAMPLES * FORMAT.bytes_per_frame
    payloads = [audio[k * frame_bytes:(k + 1) * frame_bytes] for k in range(frames_per_stream)]
    errors: list[str] = []
    hop_ms = 0.0
    for stream_id, owner_dealer in zip(stream_ids, dealer_of, strict=True):
        owner_dealer.send_multipart(OpenMessage(stream_id, FORMAT, {"bench": "load"}).to_frames())
    opened = 0
    deadline = time.monotonic() + 30
    while opened < len(stream_ids) and time.monotonic() < deadline:
        for reply in replies(1000):
            if isinstance(reply, OpenedReply):
                opened += 1
                hop_ms = reply.hop_ms
            elif isinstance(reply, ErrorReply):
                errors.append(f"{reply.code}: {reply.message}")
                opened += 1
    n = len(stream_ids)
    quoted = [json.dumps(stream_id).encode() for stream_id in stream_ids]
    send_times = np.full((n, frames_per_stream), np.nan)
    lateness = np.full((n, frames_per_stream), np.nan)
    offsets = [i * (FRAME_MS / 1000) / max(n, 1) for i in range(n)]
    hop_frames = max(1, round(hop_ms / FRAME_MS)) if spread_hops and hop_ms else 1
    lags = [i % hop_frames for i in range(n)]  # frames stream i starts late
    frame_s = FRAME_MS / 1000
    sends = [d.send_multipart for d in dealer_of]
    clock = time.monotonic
    while clock() < start_at:
        time.sleep(0.001)
    cpu_start = time.process_time()
    origin = start_at
    if batch_size > 0 and dealer is not None:
        send_batched(dealer, stream_ids, batch_size, payloads, origin, lags, send_times, lateness, errors)
    for t in range(frames_per_stream + hop_frames - 1 if batch_size <= 0 else 0):
        slot = origin + t * frame_s
        for i in range(n):
            k = t - lags[i]
            if not 0 <= k < frames_per_stream:
                continue
            due = slot + offsets[i]
            now = clock()
            if due - now > 0.0005:
                time.sleep(due - now)
                now = clock()
            sends[i]([AUDIO_HEADER % (quoted[i], k), payloads[k]])
            send_times[i, k] = now
            lateness[i, k] = now - due
        for reply in replies(0):  # errors on audio would show up here
            if isinstance(reply, ErrorReply):
                errors.append(f"{reply.code}: {reply.message}")
    cpu_s = time.process_time() - cpu_start
    for stream_id, owner_dealer in zip(stream_ids, dealer_of, strict=True):
        owner_dealer.send_multipart(CloseMessage(stream_id).to_frames())
    late_ms = 1000 * lateness[~np.isnan(lateness)]
    pipe.send(SenderReport(
        send_times=send_times, lateness_ms=percentiles(list(late_ms)),
        behind_ms_max=float(late_ms.max()) if late_ms.size else float("nan"), cpu_s=cpu_s,
        messages=int(late_ms.size), errors=errors[:20], error_count=len(errors), hop_ms=hop_ms))
    for socket in dealers.values():
        socket.close(linger=5000)
    context.term()


def send_batched(dealer: zmq.Socket[bytes], stream_ids: list[str], batch_size: int, payloads: list[bytes],
                 origin: float, lags: list[int], send_times: npt.NDArray[np.float64],
                 lateness: npt.NDArray[np.float64], errors: list[str]) -> None:
    """The gateway-style schedule of `run_sender`: one `audio_batch` per group per frame."""
    n, frames = send_times.shape
    groups = [range(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    ids_json = [json.dumps([stream_ids[i] for i in group], separators=(",", ":")).encode() for group in groups]
    offsets = [g * (FRAME_MS / 1000) / len(groups) for g in range(len(groups))]
    frame_s = FRAME_MS / 1000
    clock = time.monotonic
    for t in range(frames + max(lags) if lags else 0):
        slot = origin + t * frame_s
        for g, group in enumerate(groups):
            members = [i for i in group if 0 <= t - lags[i] < frames]
            if not members:
                continue
            ids = ids_json[g] if len(members) == len(group) else json.dumps(
                [stream_ids[i] for i in members], separators=(",", ":")).encode()
            seqs = [t - lags[i] for i in members]
            header = batch_header(ids, seqs)
            due = slot + offsets[g]
            now = clock()
            if due - now > 0.0005:
                time.sleep(due - now)
                now = clock()
            dealer.send_multipart([header, *[payloads[k] for k in seqs]])
            send_times[members, seqs] = now
            lateness[members, seqs] = now - due
        while dealer.poll(0):  # errors on audio would show up here
            reply = parse_reply(dealer.recv_multipart())
            if isinstance(reply, ErrorReply):
                errors.append(f"{reply.code}: {reply.message}")


# ---- the measuring side -----------------------------------------------------------------------

@dataclass
class ProcSample:
    cpu_s: float  # all threads
    main_thread_cpu_s: float  # the event loop: ingest, batching, publishing (inference has its own thread)
    rss_bytes: int
    parts_cpu_s: dict[str, float] = field(default_factory=dict)  # several processes measured: each one's share


ProcProbe = Callable[[], ProcSample]


def _cpu_s(stat_path: Path) -> float:
    fields = stat_path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def read_proc(pid: int) -> ProcSample:
    rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return ProcSample(_cpu_s(Path(f"/proc/{pid}/stat")), _cpu_s(Path(f"/proc/{pid}/task/{pid}/stat")),
                      rss_pages * PAGE_BYTES)


@dataclass
class LevelResult:
    streams: int
    batched: bool
    duration_s: float
    hop_ms: float
    expected: int
    received: int
    lost: int
    late: int
    daemon_latency_ms: dict[str, float]
    end_to_end_ms: dict[str, float]
    cpu_percent: float
    cpu_ms_per_1000_messages: float  # daemon CPU (all threads, inference included) per 1000 audio messages
    main_thread_percent: float  # the event loop's share of one core: it cannot use more than 100
    rss_mb: float
    rss_growth_mb_per_stream: float
    sender_lateness_ms: dict[str, float]
    sender_cpu_ms_per_1000_messages: float
    send_errors: int
    summaries_dropped: dict[str, int] = field(default_factory=dict)
    error_examples: list[str] = field(default_factory=list)
    cpu_percent_by_part: dict[str, float] = field(default_factory=dict)  # a probe over several processes
    # with the verifier on: distinct verifier windows seen in the results, per stream per second of audio
    verifier_windows_per_stream_s: float | None = None
    verifier_results_fraction: float | None = None  # results that carried a verifier score

    @property
    def lost_fraction(self) -> float:
        return self.lost / self.expected if self.expected else 1.0

    @property
    def sender_kept_up(self) -> bool:
        """The level ran in real time: 99 % of the messages left within one frame of their schedule."""
        return self.sender_lateness_ms.get("p99", 1e9) <= FRAME_MS

    def passes(self, budget_ms: float) -> bool:
        return self.expected > 0 and self.lost_fraction < 0.01 and self.end_to_end_ms.get("p99", 1e9) <= budget_ms


def percentiles(values: npt.ArrayLike) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    if not array.size:
        return {}
    return {f"p{q}": round(float(np.percentile(array, q)), 1) for q in (50, 95, 99)} | {
        "max": round(float(array.max()), 1)
    }


@dataclass
class VerifierSeen:
    """What the results said of the verifier: the windows whose scores reached them, per stream."""

    windows: dict[str, set[float]] = field(default_factory=lambda: defaultdict(set))
    results: int = 0  # results that carried the verifier's fields
    with_score: int = 0  # ... and a score (after the stream's first window)


def collect_results(sub: zmq.Socket[bytes], n: int, finish_by: float, on_tick: Callable[[float], None],
                    verifier: VerifierSeen | None = None) -> tuple[dict[str, dict[int, tuple[float, float, float]]],
                                                                   dict[str, dict[str, Any]]]:
    """Receive results until every stream's `closed` summary arrived (or `finish_by`). Each wakeup
    drains everything queued and stamps each message as it is read, so this process's own lag
    shows up as latency only when it really cannot keep up."""
    results: dict[str, dict[int, tuple[float, float, float]]] = defaultdict(dict)  # id -> seq -> (recv, t_end, lat)
    summaries: dict[str, dict[str, Any]] = {}
    while len(summaries) < n and time.monotonic() < finish_by:
        on_tick(time.monotonic())
        if not sub.poll(100):
            continue
        while True:
            try:
                frames = sub.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                break
            received_at = time.monotonic()
            message = decode_pub(frames)
            stream_id = message["stream_id"]
            if message["type"] == "result":
                results[stream_id][message["seq"]] = (received_at, message["t_end_s"], message["latency_ms"])
                if verifier is not None and "p_spoof_fused" in message:
                    verifier.results += 1
                    if message["verifier_t_end_s"] is not None:
                        verifier.with_score += 1
                        verifier.windows[stream_id].add(message["verifier_t_end_s"])
            elif message["type"] == "closed":
                summaries[stream_id] = message["summary"]
    return results, summaries


def measure_level(args: argparse.Namespace, n: int, pid: int | None, idle_rss: int, *,
                  probe: ProcProbe | None = None, place: Callable[[str], str] | None = None,
                  results_endpoints: Sequence[str] = ()) -> LevelResult:
    """One level of N streams against the daemon at `args.endpoint`, results from
    `args.results_endpoint`, CPU and RSS of `pid`. Several daemons (benchmarks/cluster.py): `place`
    names each stream id's ingest endpoint, one subscriber connects to every one of
    `results_endpoints`, and `probe` samples all the processes measured."""
    run_tag = f"load{n}-{os.getpid()}-{int(time.time())}"
    stream_ids = [f"{run_tag}-{i}" for i in range(n)]
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, run_tag.encode())
    for results_endpoint in results_endpoints or [args.results_endpoint]:
        sub.connect(results_endpoint)
    time.sleep(0.3)
    receiver, sender_end = multiprocessing.Pipe(duplex=False)
    start_at = time.monotonic() + 1.0 + n * 0.002
    ingest: str | dict[str, str] = args.endpoint if place is None else {s: place(s) for s in stream_ids}
    sender = multiprocessing.Process(
        target=run_sender, args=(ingest, stream_ids, args.duration, start_at, sender_end,
                                 args.batch_size if args.batched else 0, args.spread_hops), daemon=True
    )
    sender.start()
    cpu_window: dict[str, tuple[float, ProcSample]] = {}
    measure_from = start_at + 2.0  # skip the first seconds (open burst, warm-up)
    measure_to = start_at + args.duration
    if probe is None and pid is not None:
        probe = partial(read_proc, pid)

    def sample_cpu(now: float) -> None:
        if probe is not None and "start" not in cpu_window and now >= measure_from:
            cpu_window["start"] = (now, probe())
        if probe is not None and "end" not in cpu_window and now >= measure_to:
            cpu_window["end"] = (now, probe())

    verifier = VerifierSeen()
    results, summaries = collect_results(sub, n, start_at + args.duration + 10.0, sample_cpu, verifier)
    if probe is not None and "start" in cpu_window and "end" not in cpu_window:
        cpu_window["end"] = (time.monotonic(), probe())  # every stream closed before measure_to: the load is over
    # read before joining: the report (send times of every message) can exceed the pipe's buffer
    report: SenderReport | None = receiver.recv() if receiver.poll(30) else None
    sender.join(timeout=30)
    sub.close(linger=0)
    context.term()
    if report is None:
        raise SystemExit(f"N={n}: the sender process sent no report (exit code {sender.exitcode})")

    send_times = report.send_times
    hop_ms = report.hop_ms or 1.0
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
            sent_at = send_times[i, max(frame_index, 0)]
            if not np.isnan(sent_at):
                e2e = 1000 * (received_at - sent_at)
                end_to_end.append(e2e)
                late += e2e > args.budget_ms
    expected = expected_per_stream * n
    cpu_percent = cpu_per_1000 = main_percent = rss_mb = growth = float("nan")
    by_part: dict[str, float] = {}
    if "start" in cpu_window and "end" in cpu_window:
        (t0, first), (t1, last) = cpu_window["start"], cpu_window["end"]
        cpu_s = last.cpu_s - first.cpu_s
        cpu_percent = 100 * cpu_s / (t1 - t0)
        by_part = {name: round(100 * (last.parts_cpu_s[name] - first.parts_cpu_s.get(name, 0.0)) / (t1 - t0), 1)
                   for name in last.parts_cpu_s}
        main_percent = 100 * (last.main_thread_cpu_s - first.main_thread_cpu_s) / (t1 - t0)
        in_window = int(np.count_nonzero((send_times >= t0) & (send_times < t1)))
        cpu_per_1000 = 1e6 * cpu_s / in_window if in_window else float("nan")
        rss_mb = last.rss_bytes / 2**20
        growth = (last.rss_bytes - idle_rss) / 2**20 / n
    dropped_keys = ("results_dropped", "samples_dropped_overflow", "gaps_filled", "duplicates_dropped")
    dropped = {k: int(sum(s.get(k, 0) for s in summaries.values())) for k in dropped_keys}
    return LevelResult(
        streams=n, batched=bool(args.batched), duration_s=args.duration, hop_ms=hop_ms, expected=expected, received=received,
        lost=expected - received, late=late, daemon_latency_ms=percentiles(daemon_latency),
        end_to_end_ms=percentiles(end_to_end), cpu_percent=round(cpu_percent, 1),
        cpu_ms_per_1000_messages=round(cpu_per_1000, 1), main_thread_percent=round(main_percent, 1), rss_mb=round(rss_mb, 1),
        rss_growth_mb_per_stream=round(growth, 3), sender_lateness_ms=report.lateness_ms,
        sender_cpu_ms_per_1000_messages=round(1e6 * report.cpu_s / max(report.messages, 1), 1),
        send_errors=report.error_count, summaries_dropped=dropped, error_examples=report.errors[:3],
        cpu_percent_by_part=by_part,
        verifier_windows_per_stream_s=round(sum(map(len, verifier.windows.values())) / n / args.duration, 3)
        if verifier.results else None,
        verifier_results_fraction=round(verifier.with_score / verifier.results, 3) if verifier.results else None,
    )


def print_level(result: LevelResult, budget_ms: float) -> None:
    per_stream_cpu = result.cpu_percent / result.streams if result.streams else float("nan")
    if not result.sender_kept_up:
        verdict = "NOT MEASURED: the sender fell behind real time (see its lateness); the daemon saw less load"
    elif result.passes(budget_ms):
        verdict = "PASS"
    else:
        verdict = "FAIL"
    verifier_line = ""
    if result.verifier_windows_per_stream_s is not None:
        verifier_line = (f"        verifier: {result.verifier_windows_per_stream_s} windows per stream per second of "
                         f"audio reached the results; {result.verifier_results_fraction} of the results carried a "
                         "verifier score\n")
    print(
        f"N={result.streams:4d}{' batched' if result.batched else ''}  hop={result.hop_ms:.0f}ms  results {result.received}/{result.expected} "
        f"(lost {result.lost}, {100 * result.lost_fraction:.2f}%; late>{budget_ms:.0f}ms {result.late})\n"
        f"        daemon latency_ms {result.daemon_latency_ms}  (hop complete -> published)\n"
        f"        end-to-end ms     {result.end_to_end_ms}  (hop's last message sent -> result received)\n"
        f"        daemon CPU {result.cpu_percent}% of one core ({per_stream_cpu:.2f}%/stream, "
        f"{result.cpu_ms_per_1000_messages} ms per 1000 messages; event-loop thread "
        f"{result.main_thread_percent}%), "
        f"RSS {result.rss_mb} MB (+{result.rss_growth_mb_per_stream} MB/stream)\n"
        f"        sender lateness ms {result.sender_lateness_ms}, sender CPU "
        f"{result.sender_cpu_ms_per_1000_messages} ms per 1000 messages\n"
        f"        summaries {result.summaries_dropped}, send errors {result.send_errors} {result.error_examples}\n"
        f"{verifier_line}"
        f"        -> {verdict} (p99 end-to-end <= {budget_ms:.0f} ms, lost < 1%)",
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
    parser.add_argument("--model", type=Path, default=packaged_model_path(),
                        help="ONNX model for the daemon this script starts")
    levels = parser.add_mutually_exclusive_group()
    levels.add_argument("--streams", default="50,100,200,300", help="comma-separated levels N (default 50,100,200,300)")
    levels.add_argument("--search", action="store_true", help="find the largest N within the budget")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of audio per stream per level")
    parser.add_argument("--budget-ms", type=float, default=250.0, help="end-to-end p99 latency budget")
    parser.add_argument("--batched", action="store_true",
                        help="send like a gateway: one audio_batch message per group of streams per 20 ms")
    parser.add_argument("--spread-hops", action="store_true",
                        help="start stream i (i mod hop/20ms) frames late, so hops do not all end on one tick")
    parser.add_argument("--batch-size", type=int, default=MAX_BATCH_ENTRIES,
                        help=f"--batched: streams per message (1..{MAX_BATCH_ENTRIES})")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop starting new levels after this")
    parser.add_argument("--search-start", type=int, default=25, help="--search: first N")
    parser.add_argument("--search-max", type=int, default=2000, help="--search: never try more than this")
    parser.add_argument("--endpoint", default=None, help="ingest of a running daemon (skip starting one)")
    parser.add_argument("--results-endpoint", default=DEFAULT_RESULTS_ENDPOINT, help="with --endpoint: its PUB socket")
    parser.add_argument("--pid", type=int, default=None, help="with --endpoint: the daemon's pid for CPU/RSS")
    parser.add_argument("--daemon-arg", action="append", default=[], help="extra flag for the started daemon")
    parser.add_argument("--json", type=Path, default=None, help="also write all levels to this JSON file")
    parser.add_argument("--verifier", default=None, metavar="PATH|random",
                        help="run the started daemon with the second-tier verifier: its ONNX file, or `random` "
                             "for a Whisper tiny.en-shaped one with random weights (same cost)")
    return parser


def random_verifier(out: Path, window_s: float = 4.0) -> Path:
    """A Whisper tiny.en-shaped verifier with random weights, exported as the daemon reads one
    (torch is imported only here)."""
    import torch

    from streaming_models.verifier.model import Verifier, VerifierConfig, export_onnx
    from streaming_models.verifier.whisper_encoder import (
        SAMPLE_RATE_HZ,
        EncoderDims,
        WhisperEncoder,
    )

    torch.manual_seed(0)
    out.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(Verifier(WhisperEncoder(EncoderDims()), VerifierConfig()).eval(), out, round(window_s * SAMPLE_RATE_HZ),
                model_id="random-whisper-tiny-verifier")
    return out


def verifier_daemon_args(verifier: str) -> list[str]:
    """The daemon flags that turn the verifier on with `verifier` (a path, or `random`)."""
    path = random_verifier(REPO_ROOT / "runs" / "load-random-verifier.onnx") if verifier == "random" else Path(verifier)
    if not path.is_file():
        raise SystemExit(f"verifier not found: {path}")
    return ["--verifier.enabled", "true", "--verifier.path", str(path.resolve())]


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


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.batch_size <= MAX_BATCH_ENTRIES:
        print(f"--batch-size must be 1..{MAX_BATCH_ENTRIES}", file=sys.stderr)
        return 2
    began = time.monotonic()
    planned = [] if args.search else [int(n) for n in args.streams.split(",") if n.strip()]
    biggest = args.search_max if args.search else max(planned)
    daemon = None
    pid = args.pid
    if args.endpoint is None:
        if not args.model.is_file():
            print(f"model not found: {args.model} (pass --model PATH)", file=sys.stderr)
            return 2
        if args.verifier is not None:
            args.daemon_arg = [*verifier_daemon_args(args.verifier), *args.daemon_arg]
        daemon = start_daemon(args, max_streams=biggest + 10)
        pid = daemon.pid
    else:
        wait_until_ready(args.endpoint, None, None)
    mode = f"audio_batch messages of up to {args.batch_size} streams" if args.batched else "one message per frame"
    mode += "; hop ends spread over the streams" if args.spread_hops else "; every stream's hops end on the same tick"
    verifier = f", verifier {args.verifier}" if args.verifier is not None else ""
    print(f"daemon at {args.endpoint} (pid {pid}), model {args.model}{verifier}, {os.cpu_count()} CPUs; "
          f"{args.duration:.0f} s per level; {mode}", flush=True)
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
            result = measure_level(args, n, pid, idle_rss)
            print_level(result, args.budget_ms)
            levels.append(result)
            history.append((n, result.sender_kept_up and result.passes(args.budget_ms)))
            time.sleep(2.0)  # let the daemon settle (closing streams) between levels
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
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
