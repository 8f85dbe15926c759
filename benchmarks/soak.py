"""Soak benchmark: N real-time streams against one daemon for an hour, calls starting and ending all along.

N slots each carry one telephone-like stream at a time (8 kHz µ-law, 20 ms messages paced in
real time, phases spread over the 20 ms, as `load.py` sends them); each stream lasts a random
`--call-seconds` (default 1-5 minutes), is closed, and half a second later the slot opens a new
one, so streams open and close throughout the soak. One more stream, the control, runs from
start to end: every one of its results must arrive, or the script exits with status 1.

Every `--sample-s` seconds it prints a row: the daemon's RSS (VmRSS of /proc/PID/status), its
CPU over the interval, the event-loop lag (the watchdog's gauges on the daemon's `/metrics`),
the streams open (daemon's gauge) and the results received against those due. At the end, a
summary: results lost (per stream and in total), RSS at start and end and its least-squares
slope in MB per hour, loop lag p50/p99 (from the watchdog's histogram) and max, end-to-end
latency percentiles (scheduled send of the hop's last message -> result received), daemon CPU.

    python benchmarks/soak.py                         # 500 streams, 60 minutes
    python benchmarks/soak.py --quick --streams 500   # 10 minutes
    python benchmarks/soak.py --seconds 12 --streams 5 --call-seconds 3,6 --sample-s 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import sys
import time
import urllib.request
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import zmq
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import (
    AUDIO_HEADER,
    FORMAT,
    FRAME_MS,
    FRAME_SAMPLES,
    percentiles,
    read_proc,
    start_daemon,
    synthetic_speechlike,
)

from clients.local_daemon import free_port, stop_process
from daemon.wire.results import decode_pub
from daemon.wire.zmq_messages import CloseMessage, ErrorReply, OpenedReply, OpenMessage, parse_reply
from streaming_models.runtime.default_model import packaged_model_path

FRAME_S = FRAME_MS / 1000
OPEN_LEAD_TICKS = 10  # a stream is opened 200 ms before its first message
SLOT_GAP_TICKS = 25  # a slot opens its next stream 500 ms after closing the last
LATENESS_BIN_S = 1e-4
LATENESS_BINS = 20_000  # 0.1 ms bins up to 2 s; later is counted in the last bin
CONTROL_SLOT = -1
DRAIN_PER_WAKEUP = 5000


# ---- the plan: which stream runs when ------------------------------------------------------------

@dataclass(frozen=True)
class PlannedStream:
    stream_id: str
    slot: int  # CONTROL_SLOT for the control stream
    start_tick: int  # its frame k is due at origin + (start_tick + k) * 20 ms + the slot's phase
    frames: int

    @property
    def end_tick(self) -> int:
        return self.start_tick + self.frames


def plan_streams(tag: str, slots: int, total_ticks: int, call_ticks: tuple[int, int], seed: int) -> list[PlannedStream]:
    """Each slot's streams back to back (a gap of SLOT_GAP_TICKS between), lengths uniform in
    `call_ticks`, the last one cut at `total_ticks`; the slots' first starts spread over the first
    call length's tenth so that the open burst is not one tick. Then the control stream."""
    rng = random.Random(seed)
    plan: list[PlannedStream] = []
    stagger = max(1, min(call_ticks[0] // 10, total_ticks // 10))
    for slot in range(slots):
        tick, generation = OPEN_LEAD_TICKS + rng.randrange(stagger), 0
        while tick < total_ticks - OPEN_LEAD_TICKS:
            frames = min(rng.randint(*call_ticks), total_ticks - tick)
            plan.append(PlannedStream(f"{tag}-s{slot}-g{generation}", slot, tick, frames))
            tick += frames + SLOT_GAP_TICKS
            generation += 1
    plan.append(PlannedStream(f"{tag}-control", CONTROL_SLOT, OPEN_LEAD_TICKS, total_ticks - OPEN_LEAD_TICKS))
    return plan


def slot_phase_s(slot: int, slots: int) -> float:
    """The slot's offset within each 20 ms tick (the control stream goes first)."""
    return 0.0 if slot == CONTROL_SLOT else (slot + 1) * FRAME_S / (slots + 1)


def due_at(origin: float, stream: PlannedStream, frame: int, slots: int) -> float:
    return origin + (stream.start_tick + frame) * FRAME_S + slot_phase_s(stream.slot, slots)


# ---- the sender process ------------------------------------------------------------------------

@dataclass
class SoakSenderReport:
    messages: int
    lateness_ms: dict[str, float]
    behind_ms_max: float
    cpu_s: float
    opened: int
    errors: list[str]
    error_count: int


def run_soak_sender(endpoint: str, plan: list[PlannedStream], slots: int, total_ticks: int, origin: float,
                    pipe: Connection) -> None:
    """Send the plan in real time: opens and closes at their ticks, one message per open stream
    per tick at the slot's phase. Lateness goes into a histogram (an hour of messages would not
    fit in a list)."""
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.SNDHWM, 0)
    dealer.setsockopt(zmq.RCVHWM, 0)
    dealer.connect(endpoint)
    longest = max(stream.frames for stream in plan)
    audio = synthetic_speechlike(longest * FRAME_S + 1, seed=7)
    frame_bytes = FRAME_SAMPLES * FORMAT.bytes_per_frame
    payloads = [audio[k * frame_bytes:(k + 1) * frame_bytes] for k in range(longest)]
    opens: dict[int, list[PlannedStream]] = defaultdict(list)
    closes: dict[int, list[PlannedStream]] = defaultdict(list)
    for stream in plan:
        opens[stream.start_tick - OPEN_LEAD_TICKS].append(stream)
        closes[stream.end_tick].append(stream)
    lanes = slots + 1  # the control stream's lane is the last
    lane_of = {CONTROL_SLOT: slots}
    phases = [slot_phase_s(slot, slots) for slot in range(slots)] + [slot_phase_s(CONTROL_SLOT, slots)]
    order = sorted(range(lanes), key=phases.__getitem__)
    quoted: list[bytes] = [b""] * lanes
    starts = [0] * lanes
    lengths = [0] * lanes  # 0: nothing to send in this lane
    late_counts = [0] * LATENESS_BINS
    errors: list[str] = []
    error_count = opened = messages = 0
    behind = 0.0
    send = dealer.send_multipart
    clock = time.monotonic
    while clock() < origin:
        time.sleep(0.001)
    cpu_start = time.process_time()
    for t in range(total_ticks + 1):
        for stream in closes.get(t, ()):
            dealer.send_multipart(CloseMessage(stream.stream_id).to_frames())
        for stream in opens.get(t, ()):
            dealer.send_multipart(OpenMessage(stream.stream_id, FORMAT, {"bench": "soak"}).to_frames())
            lane = lane_of.get(stream.slot, stream.slot)
            quoted[lane] = json.dumps(stream.stream_id).encode()
            starts[lane], lengths[lane] = stream.start_tick, stream.frames
        slot_start = origin + t * FRAME_S
        for lane in order:
            k = t - starts[lane]
            if not 0 <= k < lengths[lane]:
                continue
            due = slot_start + phases[lane]
            now = clock()
            if due - now > 0.0005:
                time.sleep(due - now)
                now = clock()
            send([AUDIO_HEADER % (quoted[lane], k), payloads[k]])
            late = now - due
            late_counts[min(max(int(late / LATENESS_BIN_S), 0), LATENESS_BINS - 1)] += 1
            behind = max(behind, late)
            messages += 1
        while dealer.poll(0):
            reply = parse_reply(dealer.recv_multipart())
            if isinstance(reply, OpenedReply):
                opened += 1
            elif isinstance(reply, ErrorReply):
                error_count += 1
                if len(errors) < 20:
                    errors.append(f"{reply.code}: {reply.message}")
    cpu_s = time.process_time() - cpu_start
    pipe.send(SoakSenderReport(messages, histogram_percentiles(late_counts, LATENESS_BIN_S * 1000),
                               round(1000 * behind, 1), cpu_s, opened, errors, error_count))
    dealer.close(linger=5000)
    context.term()


def histogram_percentiles(counts: list[int], bin_width: float) -> dict[str, float]:
    """p50/p95/p99/max of values counted in bins [i * width, (i + 1) * width), each read as its upper edge."""
    array = np.asarray(counts, dtype=np.float64)
    total = array.sum()
    if not total:
        return {}
    cumulative = np.cumsum(array) / total
    figures = {f"p{q}": round(float((np.searchsorted(cumulative, q / 100) + 1) * bin_width), 1) for q in (50, 95, 99)}
    return figures | {"max": round(float((np.flatnonzero(array)[-1] + 1) * bin_width), 1)}


# ---- the measuring side --------------------------------------------------------------------------

@dataclass
class DaemonMetricsSample:
    streams_open: float
    loop_lag_s: float
    loop_lag_max_s: float  # the worst within the watchdog's window
    lag_buckets: dict[float, float]  # cumulative count per upper bound (+Inf included)
    dropped: dict[str, float]  # spoofwatch_dropped_total by reason (buffer_overflow: the daemon fell behind)


def parse_daemon_metrics(text: str) -> DaemonMetricsSample:
    values: dict[str, float] = {}
    buckets: dict[float, float] = {}
    dropped: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "spoofwatch_event_loop_lag_histogram_seconds_bucket":
                buckets[float(sample.labels["le"])] = sample.value
            elif sample.name == "spoofwatch_dropped_total":
                dropped[sample.labels["reason"]] = sample.value
            elif not sample.labels:
                values[sample.name] = sample.value
    return DaemonMetricsSample(values.get("spoofwatch_streams_open", float("nan")),
                               values.get("spoofwatch_event_loop_lag_seconds", float("nan")),
                               values.get("spoofwatch_event_loop_lag_max_seconds", float("nan")), buckets, dropped)


def fetch_daemon_metrics(url: str) -> DaemonMetricsSample | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return parse_daemon_metrics(response.read().decode())
    except OSError:
        return None


def bucket_quantile(buckets: dict[float, float], q: float) -> float:
    """Prometheus's histogram_quantile: linear within the bucket that holds the q-th observation."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if not total:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if bound == float("inf"):
                return lower
            inside = buckets[bound] - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, buckets[bound]
    return lower


def lag_figures(buckets: dict[float, float], window_maxima_s: list[float]) -> dict[str, float]:
    """p50/p99 interpolated in the watchdog's histogram buckets (capped at the max: the buckets are
    coarse), max the worst of the watchdog's window gauge over the samples, in ms."""
    worst = max(window_maxima_s, default=float("nan"))
    return {"p50": round(1000 * min(bucket_quantile(buckets, 0.5), worst), 1),
            "p99": round(1000 * min(bucket_quantile(buckets, 0.99), worst), 1), "max": round(1000 * worst, 1)}


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def slope_per_hour(times_s: list[float], values: list[float]) -> float:
    """Least-squares slope of `values` against time, per hour."""
    if len(times_s) < 2:
        return float("nan")
    return float(np.polyfit(np.asarray(times_s), np.asarray(values), 1)[0] * 3600)


def probe_hop_ms(endpoint: str) -> float:
    """Open and close one stream to learn the daemon's hop (results per second per stream)."""
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 1000)
    dealer.connect(endpoint)
    stream_id = f"soak-probe-{os.getpid()}"
    try:
        dealer.send_multipart(OpenMessage(stream_id, FORMAT, {"bench": "soak"}).to_frames())
        if not dealer.poll(10_000):
            raise SystemExit("the daemon did not answer the probe stream's open")
        reply = parse_reply(dealer.recv_multipart())
        if not isinstance(reply, OpenedReply):
            raise SystemExit(f"the daemon refused the probe stream: {reply}")
        dealer.send_multipart(CloseMessage(stream_id).to_frames())
        return reply.hop_ms
    finally:
        dealer.close()
        context.term()


@dataclass
class Row:
    elapsed_s: float
    rss_mb: float
    cpu_percent: float
    loop_lag_ms: float
    loop_lag_max_ms: float
    streams_open: float
    received: int
    due: int


@dataclass
class SoakSummary:
    streams: int
    seconds: float
    hop_ms: float
    streams_planned: int
    expected: int
    received: int
    lost: int
    streams_with_loss: int
    worst_streams: dict[str, int]  # stream id -> results lost, the worst few
    control_expected: int
    control_lost: int
    rss_start_mb: float
    rss_end_mb: float
    rss_slope_mb_per_hour: float
    rss_slope_after_warmup_mb_per_hour: float  # over the rows after the first fifth of the soak
    loop_lag_ms: dict[str, float]  # p50/p99 from the watchdog's histogram, max from its window gauge
    end_to_end_ms: dict[str, float]
    daemon_cpu_percent: float
    sender_lateness_ms: dict[str, float]
    sender_behind_ms_max: float
    sender_cpu_percent: float
    send_errors: int
    daemon_dropped: dict[str, float] = field(default_factory=dict)
    error_examples: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)


class ResultTally:
    """Results per stream (their seqs) and end-to-end latencies, from the PUB messages."""

    def __init__(self, plan: list[PlannedStream], origin: float, slots: int) -> None:
        self.by_id = {stream.stream_id: stream for stream in plan}
        self.origin, self.slots = origin, slots
        self.seqs: dict[str, list[int]] = defaultdict(list)
        self.closed: set[str] = set()
        self.end_to_end_ms: list[float] = []
        self.count = 0

    def take(self, frames: list[bytes], received_at: float) -> None:
        message = decode_pub(frames)
        stream = self.by_id.get(message["stream_id"])
        if stream is None:
            return
        if message["type"] == "closed":
            self.closed.add(stream.stream_id)
        elif message["type"] == "result":
            self.seqs[stream.stream_id].append(message["seq"])
            self.count += 1
            last_frame = min(max(int(np.ceil(message["t_end_s"] / FRAME_S - 1e-6)) - 1, 0), stream.frames - 1)
            self.end_to_end_ms.append(1000 * (received_at - due_at(self.origin, stream, last_frame, self.slots)))

    def full_hops(self, stream: PlannedStream, hop_ms: float) -> int:
        return int(stream.frames * FRAME_MS // hop_ms)

    def lost(self, stream: PlannedStream, hop_ms: float) -> int:
        expected = self.full_hops(stream, hop_ms)
        return expected - len({seq for seq in self.seqs.get(stream.stream_id, ()) if seq < expected})


def results_due(plan: list[PlannedStream], origin: float, now: float, hop_ms: float, grace_s: float) -> int:
    """Full hops of every stream whose last message was due at least `grace_s` before `now`."""
    ticks = (now - grace_s - origin) / FRAME_S
    hop_ticks = hop_ms / FRAME_MS
    return sum(int(min(max(ticks - s.start_tick, 0), s.frames) // hop_ticks) for s in plan)


def run_soak(args: argparse.Namespace) -> SoakSummary:
    http_port = free_port()
    args.daemon_arg = [*args.daemon_arg, "--webrtc.port", str(http_port),
                       "--observability.enabled", "true", "--observability.lag-window-s", str(args.sample_s)]
    daemon = start_daemon(args, max_streams=args.streams + 20)
    try:
        return measure(args, daemon.pid, f"http://127.0.0.1:{http_port}/metrics")
    finally:
        stop_process(daemon, timeout_s=20)


def measure(args: argparse.Namespace, pid: int, metrics_url: str) -> SoakSummary:
    hop_ms = probe_hop_ms(args.endpoint)
    total_ticks = int(args.seconds / FRAME_S)
    call_ticks = (int(args.call_seconds[0] / FRAME_S), int(args.call_seconds[1] / FRAME_S))
    tag = f"soak-{os.getpid()}-{int(time.time())}"
    plan = plan_streams(tag, args.streams, total_ticks, call_ticks, args.seed)
    control = plan[-1]
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, tag.encode())
    sub.connect(args.results_endpoint)
    time.sleep(0.3)
    origin = time.monotonic() + 2.0
    receiver, sender_end = multiprocessing.Pipe(duplex=False)
    sender = multiprocessing.Process(target=run_soak_sender,
                                     args=(args.endpoint, plan, args.streams, total_ticks, origin, sender_end),
                                     daemon=True)
    sender.start()
    tally = ResultTally(plan, origin, args.streams)
    rows: list[Row] = []
    lag_max_s: list[float] = []
    first_buckets: dict[float, float] = {}
    last_buckets: dict[float, float] = {}
    end_at = origin + total_ticks * FRAME_S
    finish_by = end_at + 15.0
    next_sample = origin
    previous = (time.monotonic(), read_proc(pid).cpu_s)
    first_cpu = previous
    print(f"{'m:ss':>6} {'RSS MB':>8} {'CPU %':>6} {'lag ms':>7} {'lag max':>8} {'open':>5} "
          f"{'results':>10} {'due':>10}", flush=True)
    while time.monotonic() < finish_by and not (time.monotonic() > end_at and tally.closed >= tally.by_id.keys()):
        now = time.monotonic()
        if now >= next_sample:
            next_sample = now + args.sample_s
            cpu_s = read_proc(pid).cpu_s
            metrics = fetch_daemon_metrics(metrics_url)
            if metrics is not None:
                lag_max_s.append(metrics.loop_lag_max_s)
                first_buckets = first_buckets or metrics.lag_buckets
                last_buckets = metrics.lag_buckets
            row = Row(round(now - origin, 1), round(rss_bytes(pid) / 2**20, 1),
                      round(100 * (cpu_s - previous[1]) / max(now - previous[0], 1e-9), 1),
                      round(1000 * metrics.loop_lag_s, 1) if metrics else float("nan"),
                      round(1000 * metrics.loop_lag_max_s, 1) if metrics else float("nan"),
                      metrics.streams_open if metrics else float("nan"), tally.count,
                      results_due(plan, origin, now, hop_ms, grace_s=2.0))
            previous = (now, cpu_s)
            rows.append(row)
            print(f"{int(row.elapsed_s // 60):3d}:{int(row.elapsed_s % 60):02d} {row.rss_mb:8.1f} {row.cpu_percent:6.1f} {row.loop_lag_ms:7.1f} "
                  f"{row.loop_lag_max_ms:8.1f} {row.streams_open:5.0f} {row.received:10d} {row.due:10d}", flush=True)
        if not sub.poll(100):
            continue
        for _ in range(DRAIN_PER_WAKEUP):  # bounded, so that the samples keep their schedule
            try:
                frames = sub.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                break
            tally.take(frames, time.monotonic())
    last_cpu = (time.monotonic(), read_proc(pid).cpu_s)
    report: SoakSenderReport | None = receiver.recv() if receiver.poll(30) else None
    sender.join(timeout=30)
    sub.close(linger=0)
    context.term()
    if report is None:
        raise SystemExit(f"the sender process sent no report (exit code {sender.exitcode})")
    metrics = fetch_daemon_metrics(metrics_url)
    if metrics is not None:
        lag_max_s.append(metrics.loop_lag_max_s)
        last_buckets = metrics.lag_buckets
    window = {bound: last_buckets.get(bound, 0.0) - first_buckets.get(bound, 0.0) for bound in last_buckets}
    lost = {stream.stream_id: tally.lost(stream, hop_ms) for stream in plan}
    worst = dict(sorted(((k, v) for k, v in lost.items() if v), key=lambda item: -item[1])[:5])
    measured_rows = [row for row in rows if row.elapsed_s <= total_ticks * FRAME_S]
    after_warmup = [row for row in measured_rows if row.elapsed_s >= args.seconds / 5]
    expected = sum(tally.full_hops(stream, hop_ms) for stream in plan)
    elapsed_s = max(last_cpu[0] - first_cpu[0], 1e-9)
    return SoakSummary(
        streams=args.streams, seconds=args.seconds, hop_ms=hop_ms, streams_planned=len(plan), expected=expected,
        received=expected - sum(lost.values()), lost=sum(lost.values()), streams_with_loss=sum(1 for v in lost.values() if v),
        worst_streams=worst, control_expected=tally.full_hops(control, hop_ms), control_lost=lost[control.stream_id],
        rss_start_mb=measured_rows[0].rss_mb if measured_rows else float("nan"),
        rss_end_mb=measured_rows[-1].rss_mb if measured_rows else float("nan"),
        rss_slope_mb_per_hour=round(slope_per_hour([r.elapsed_s for r in measured_rows],
                                                   [r.rss_mb for r in measured_rows]), 1),
        rss_slope_after_warmup_mb_per_hour=round(slope_per_hour([r.elapsed_s for r in after_warmup],
                                                                [r.rss_mb for r in after_warmup]), 1),
        loop_lag_ms=lag_figures(window, lag_max_s),
        end_to_end_ms=percentiles(tally.end_to_end_ms),
        daemon_cpu_percent=round(100 * (last_cpu[1] - first_cpu[1]) / elapsed_s, 1),
        sender_lateness_ms=report.lateness_ms, sender_behind_ms_max=report.behind_ms_max,
        sender_cpu_percent=round(100 * report.cpu_s / (total_ticks * FRAME_S), 1),
        send_errors=report.error_count, daemon_dropped=metrics.dropped if metrics else {},
        error_examples=report.errors[:3], rows=rows,
    )


def print_summary(summary: SoakSummary) -> None:
    print(
        f"soak: {summary.streams} streams (+1 control), {summary.seconds / 60:.1f} min, hop {summary.hop_ms:.0f} ms, "
        f"{summary.streams_planned} streams opened in all\n"
        f"  results {summary.received}/{summary.expected}, lost {summary.lost} "
        f"({summary.streams_with_loss} streams with loss; worst {summary.worst_streams})\n"
        f"  control stream: lost {summary.control_lost} of {summary.control_expected}\n"
        f"  RSS {summary.rss_start_mb} MB -> {summary.rss_end_mb} MB, slope {summary.rss_slope_mb_per_hour} MB/hour "
        f"({summary.rss_slope_after_warmup_mb_per_hour} MB/hour after the first fifth)\n"
        f"  event-loop lag ms {summary.loop_lag_ms} (p50/p99 from the watchdog's buckets)\n"
        f"  end-to-end ms {summary.end_to_end_ms} (scheduled send of the hop's last message -> result received)\n"
        f"  daemon CPU {summary.daemon_cpu_percent}% of one core; sender CPU {summary.sender_cpu_percent}%, "
        f"lateness ms {summary.sender_lateness_ms}\n"
        f"  send errors {summary.send_errors} {summary.error_examples}; daemon drops {summary.daemon_dropped}",
        flush=True,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", type=Path, default=packaged_model_path(), help="ONNX model for the daemon")
    parser.add_argument("--streams", type=int, default=500, help="concurrent rolling streams (default 500)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=60.0, help="soak length (default 60)")
    length.add_argument("--quick", action="store_true", help="10 minutes")
    length.add_argument("--seconds", type=float, default=None, help="soak length in seconds (tests)")
    parser.add_argument("--call-seconds", default="60,300", help="MIN,MAX length of one stream (default 60,300)")
    parser.add_argument("--sample-s", type=float, default=15.0, help="seconds between rows (default 15)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the call lengths")
    parser.add_argument("--daemon-arg", action="append", default=[], help="extra flag for the daemon")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary (with the rows) here")
    return parser


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    if args.seconds is None:
        args.seconds = 600.0 if args.quick else args.minutes * 60
    low, high = (float(x) for x in args.call_seconds.split(","))
    args.call_seconds = (low, max(low, high))
    return args


def main() -> int:
    args = resolve(build_parser().parse_args())
    if not args.model.is_file():
        print(f"model not found: {args.model} (pass --model PATH)", file=sys.stderr)
        return 2
    summary = run_soak(args)
    print_summary(summary)
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(summary), indent=2))
    if summary.control_lost:
        print(f"FAIL: {summary.control_lost} results of the control stream were lost", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
