"""Local cluster benchmark: daemon replicas on one Triton server against one in-process daemon (issue #25).

    python benchmarks/cluster.py capacity --search --budget-ms 100 --duration 10
    python benchmarks/cluster.py capacity --streams 25,50 --topologies single,cluster
    python benchmarks/cluster.py results --streams 300 --duration 20 --rounds 2

Every process runs on this machine, on loopback. Topologies:

- `single`: one daemon, inference in-process (onnx); the subscriber connects to its results socket.
- `cluster`: one `tritonserver` from the Triton test environment (`make triton-env`,
  tests/triton_server.py; the model through Triton's Python backend, `--triton-instances` CPU
  instances), `--replicas` daemons with `[model] backend = "triton"` on it, and `spoofwatch proxy`;
  each daemon's results socket connects to the proxy's XSUB (`[zmq] pub_connect`) and the subscriber
  connects to its XPUB.

The streams and their measurement are benchmarks/load.py's (`run_sender`, `measure_level`): N
real-time 8 kHz µ-law streams, 20 ms messages, from a separate sender process; with several replicas
each stream goes to the replica that the client library's consistent hashing names
(clients/placement.py `HashRing` over the replicas' ingest endpoints, as `ReplicaSet` places them),
one connection per replica.

`capacity` runs each topology over levels N (`--streams`, or `--search`: doubling, then bisecting
like load.py) and says per level whether the topology held it: end-to-end p99 within `--budget-ms`,
no result lost, and a sender that kept real time. CPU is that of every process of the topology
(daemons, Triton and its backend stubs, the proxy, each with its child processes), read from /proc
over the level's steady part; per stream it is that total over N.

`results` compares the two ways to one results endpoint at production-like rates (10 results per
second per stream): `--replicas` daemons (in-process inference unless `--replica-backend triton`)
whose results sockets connect to the proxy; each level runs once with one subscriber on the proxy's
XPUB and once with one subscriber connected to every replica's PUB, in turns (`--rounds`). It reports
results delivered, end-to-end latency at the subscriber and the proxy's CPU. (With no subscriber on
the proxy its XSUB subscribes to nothing, so the daemons send it nothing during the direct turns.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

BENCHMARKS = Path(__file__).resolve().parent
REPO_ROOT = BENCHMARKS.parent
sys.path[:0] = [str(REPO_ROOT), str(BENCHMARKS), str(REPO_ROOT / "tests")]  # load.py; the Triton launcher

from load import (
    LevelResult,
    ProcSample,
    measure_level,
    next_search_level,
    read_proc,
    wait_until_ready,
)

from clients.local_daemon import daemon_command, free_port, stop_process
from clients.placement import HashRing
from streaming_models.runtime.default_model import packaged_model_path

TOPOLOGIES = ("single", "cluster")
Backend = Literal["onnx", "triton"]


# ---- what is measured: process trees ------------------------------------------------------------

def process_tree(root: int) -> list[int]:
    """`root` and every process under it (Triton runs each model instance as a child stub process)."""
    children: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile
        children[ppid].append(int(stat.parent.name))
    tree, queue = [], [root]
    while queue:
        pid = queue.pop()
        tree.append(pid)
        queue.extend(children[pid])
    return tree


def tree_sample(root: int) -> ProcSample:
    """CPU and RSS summed over `root`'s process tree; the main thread is `root`'s own."""
    total = ProcSample(0.0, 0.0, 0)
    for pid in process_tree(root):
        try:
            sample = read_proc(pid)
        except (OSError, IndexError, ValueError):
            continue
        total.cpu_s += sample.cpu_s
        total.rss_bytes += sample.rss_bytes
        if pid == root:
            total.main_thread_cpu_s = sample.main_thread_cpu_s
    return total


# ---- a topology: its processes, where streams go, where results come from ----------------------------

@dataclass
class Placement:
    """Each stream id's ingest endpoint by the client library's ring; counts the streams per replica."""

    ring: HashRing
    counts: Counter[str] = field(default_factory=Counter)

    def __call__(self, stream_id: str) -> str:
        owner = self.ring.node_for(stream_id)
        self.counts[owner] += 1
        return owner


@dataclass
class Topology:
    name: str
    replica_ingests: list[str]
    replica_results: list[str]
    subscribe_to: list[str]  # where the one subscriber connects by default
    members: dict[str, int]  # measured process trees by name: "daemon 1", "triton", "proxy"
    xpub: str | None = None  # the proxy's subscriber side, when there is a proxy
    placement: Placement = field(init=False)
    idle_rss: int = field(init=False, default=0)
    idle_cpu_percent: float = field(init=False, default=float("nan"))  # every member, no stream open

    def __post_init__(self) -> None:
        self.placement = Placement(HashRing(self.replica_ingests))

    def measure_idle(self, seconds: float) -> None:
        """What the topology costs with no stream: per-stream figures above it are each stream's own."""
        began, first = time.monotonic(), self.probe()
        time.sleep(seconds)
        elapsed, last = time.monotonic() - began, self.probe()
        self.idle_rss = last.rss_bytes
        self.idle_cpu_percent = round(100 * (last.cpu_s - first.cpu_s) / elapsed, 1)

    def probe(self) -> ProcSample:
        """One sample over every member: CPU and RSS summed, the daemons' event-loop threads summed,
        and each member's CPU as a part."""
        total = ProcSample(0.0, 0.0, 0)
        for name, pid in self.members.items():
            sample = tree_sample(pid)
            total.cpu_s += sample.cpu_s
            total.rss_bytes += sample.rss_bytes
            total.parts_cpu_s[name] = sample.cpu_s
            if name.startswith("daemon"):
                total.main_thread_cpu_s += sample.main_thread_cpu_s
        return total


def start_process(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def start_proxy(stack: ExitStack, log_dir: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """`spoofwatch proxy` in its own process; returns it, its XSUB and its XPUB endpoint."""
    xsub, xpub = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    log_path = log_dir / "cluster-proxy.log"
    process = start_process([sys.executable, "-m", "clients.cli", "proxy", "--xsub", xsub, "--xpub", xpub], log_path)
    stack.callback(stop_process, process)
    deadline = time.monotonic() + 30
    while "spoofwatch proxy:" not in log_path.read_text():  # printed once both sides are bound
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the proxy did not start:\n{log_path.read_text()[-2000:]}")
        time.sleep(0.1)
    return process, xsub, xpub


def start_triton(stack: ExitStack, args: argparse.Namespace) -> tuple[int, str]:
    """tritonserver serving `args.model` through its Python backend; returns its pid and gRPC endpoint."""
    from triton_server import find_triton, running_triton

    from streaming_models.triton_repository import read_onnx_metadata, write_repository

    dist = find_triton()
    if isinstance(dist, str):
        raise SystemExit(f"cannot start Triton: {dist}")
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cluster-triton-")))
    write_repository(args.model, read_onnx_metadata(args.model), work / "repository",
                     max_batch_size=args.triton_max_batch, max_queue_delay_ms=args.triton_queue_delay_ms,
                     instances=(("cpu", args.triton_instances),), backend="python")
    server = stack.enter_context(running_triton(dist, work / "repository", work))
    return server.process.pid, server.grpc_endpoint


@contextmanager
def running_topology(name: str, args: argparse.Namespace, max_streams: int, *, replicas: int, backend: Backend,
                     proxy: bool) -> Iterator[Topology]:
    """Start the processes of a topology (stopped on exit), every daemon answering pings."""
    log_dir: Path = args.log_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        members: dict[str, int] = {}
        extra = ["--streams.max-streams", str(max_streams), "--streams.idle-timeout-s", "30"]
        if backend == "triton":
            members["triton"], endpoint = start_triton(stack, args)
            extra += ["--model.backend", "triton", "--model.triton-endpoints", json.dumps([endpoint]),
                      "--model.triton-timeout-s", str(args.triton_timeout_s), "--model.triton-retries", "1",
                      # the stall check must outlast a batch that times out and fails over once
                      "--model.stall-timeout-s", str(2 * args.triton_timeout_s + 10.0)]
        xpub = None
        if proxy:
            proxy_process, xsub, xpub = start_proxy(stack, log_dir)
            members["proxy"] = proxy_process.pid
            extra += ["--zmq.pub-connect", json.dumps([xsub])]
        ingests, results = [], []
        daemons: list[tuple[subprocess.Popen[bytes], Path]] = []
        for k in range(1, replicas + 1):
            ingest, result = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
            log_path = log_dir / f"cluster-{name}-daemon{k}.log"
            process = start_process(daemon_command(args.model, ingest, result, *extra, *args.daemon_arg), log_path)
            stack.callback(stop_process, process, 20)
            daemons.append((process, log_path))
            members[f"daemon {k}"] = process.pid
            ingests.append(ingest)
            results.append(result)
        for (process, log_path), ingest in zip(daemons, ingests, strict=True):
            wait_until_ready(ingest, process, log_path)
        yield Topology(name, ingests, results, [xpub] if xpub else results, members, xpub)


def topology_for(name: str, args: argparse.Namespace, max_streams: int) -> AbstractContextManager[Topology]:
    if name == "single":
        return running_topology(name, args, max_streams, replicas=1, backend="onnx", proxy=False)
    return running_topology(name, args, max_streams, replicas=args.replicas, backend="triton", proxy=True)


# ---- one level ------------------------------------------------------------------------------------

def level_args(args: argparse.Namespace, topology: Topology) -> argparse.Namespace:
    """The namespace load.py's `measure_level` reads (one stream per message, no batching)."""
    return argparse.Namespace(endpoint=topology.replica_ingests[0], results_endpoint=topology.subscribe_to[0],
                              duration=args.duration, budget_ms=args.budget_ms, batched=False, batch_size=0,
                              spread_hops=args.spread_hops)


def held(result: LevelResult, budget_ms: float) -> bool:
    """The topology held the level: p99 end to end within budget, nothing lost, the sender in real time."""
    return (result.sender_kept_up and result.expected > 0 and result.lost == 0
            and result.end_to_end_ms.get("p99", 1e9) <= budget_ms)


@dataclass
class ClusterLevel:
    result: LevelResult
    streams_per_replica: list[int]  # in the order of the replicas, as the ring placed them
    idle_cpu_percent: float  # the topology's CPU with no stream open

    @property
    def cpu_per_stream_above_idle(self) -> float:
        return round((self.result.cpu_percent - self.idle_cpu_percent) / self.result.streams, 3)

    def as_json(self) -> dict[str, object]:
        return asdict(self.result) | {"streams_per_replica": self.streams_per_replica,
                                      "idle_cpu_percent": self.idle_cpu_percent,
                                      "cpu_per_stream_above_idle": self.cpu_per_stream_above_idle}


def run_level(args: argparse.Namespace, topology: Topology, n: int,
              subscribe_to: list[str] | None = None) -> ClusterLevel:
    topology.placement.counts.clear()
    result = measure_level(level_args(args, topology), n, None, topology.idle_rss, probe=topology.probe,
                           place=topology.placement, results_endpoints=subscribe_to or topology.subscribe_to)
    return ClusterLevel(result, [topology.placement.counts[ingest] for ingest in topology.replica_ingests],
                        topology.idle_cpu_percent)


def warm_up(args: argparse.Namespace, topology: Topology) -> None:
    """A few streams for `--warmup-s`, not reported: the first calls (Triton's model instances, the
    daemons' first batches) are slow once, which would otherwise fail the first level."""
    if args.warmup_s <= 0:
        return
    warm = argparse.Namespace(**{**vars(level_args(args, topology)), "duration": args.warmup_s})
    measure_level(warm, 4 * len(topology.replica_ingests), None, 0, place=topology.placement,
                  results_endpoints=topology.subscribe_to)
    time.sleep(1.0)


def describe_cpu(level: ClusterLevel) -> str:
    result = level.result
    per_stream = result.cpu_percent / result.streams if result.streams else float("nan")
    parts = ", ".join(f"{name} {pct}%" for name, pct in result.cpu_percent_by_part.items())
    return (f"CPU {result.cpu_percent}% of one core in all ({per_stream:.3f}% per stream, "
            f"{level.cpu_per_stream_above_idle}% above idle; {result.cpu_ms_per_1000_messages} ms per 1000 "
            f"messages): {parts}; event-loop threads {result.main_thread_percent}% (sum over replicas)")


def print_capacity_level(topology: Topology, level: ClusterLevel, budget_ms: float) -> None:
    result = level.result
    placed = ", ".join(f"{k}: {count}" for k, count in enumerate(level.streams_per_replica, 1))
    if not result.sender_kept_up:
        verdict = "NOT MEASURED: the sender fell behind real time; the topology saw less load"
    else:
        verdict = "HELD" if held(result, budget_ms) else "NOT HELD"
    print(f"[{topology.name}] N={result.streams}  streams per replica {{{placed}}}  results "
          f"{result.received}/{result.expected} (lost {result.lost}, late>{budget_ms:.0f}ms {result.late})\n"
          f"        end-to-end ms {result.end_to_end_ms}  daemon latency_ms {result.daemon_latency_ms}\n"
          f"        {describe_cpu(level)}; RSS {result.rss_mb} MB\n"
          f"        sender lateness ms {result.sender_lateness_ms}, send errors {result.send_errors} "
          f"{result.error_examples}\n"
          f"        -> {verdict} (p99 end-to-end <= {budget_ms:.0f} ms, 0 lost)", flush=True)


# ---- capacity: streams held and CPU per stream, per topology ------------------------------------------

def run_capacity(args: argparse.Namespace) -> dict[str, list[ClusterLevel]]:
    planned = [] if args.search else [int(n) for n in args.streams.split(",") if n.strip()]
    biggest = args.search_max if args.search else max(planned)
    report: dict[str, list[ClusterLevel]] = {}
    for name in args.topologies.split(","):
        began = time.monotonic()
        levels: list[ClusterLevel] = []
        history: list[tuple[int, bool]] = []
        todo = list(planned)
        with topology_for(name, args, biggest + 10) as topology:
            members = ", ".join(f"{member} (pid {pid})" for member, pid in topology.members.items())
            print(f"[{name}] {members}; subscriber on {', '.join(topology.subscribe_to)}; "
                  f"{args.duration:.0f} s per level", flush=True)
            topology.measure_idle(args.idle_s)
            print(f"[{name}] idle: CPU {topology.idle_cpu_percent}% of one core, RSS {topology.idle_rss / 2**20:.0f} MB",
                  flush=True)
            warm_up(args, topology)
            while True:
                n = next_search_level(history, args) if args.search else (todo.pop(0) if todo else None)
                if n is None:
                    break
                if time.monotonic() - began + args.duration + 15 > args.max_seconds:
                    print(f"[{name}] stopping: --max-seconds {args.max_seconds:.0f} reached", flush=True)
                    break
                level = run_level(args, topology, n)
                print_capacity_level(topology, level, args.budget_ms)
                levels.append(level)
                history.append((n, held(level.result, args.budget_ms)))
                time.sleep(2.0)  # the streams close between levels
        report[name] = levels
    print_capacity_summary(report, args.budget_ms)
    return report


def print_capacity_summary(report: dict[str, list[ClusterLevel]], budget_ms: float) -> None:
    print(f"\n{'topology':<10} {'streams held':>12} {'e2e p50 / p99 ms':>18} {'lost':>5} {'CPU % of a core':>16} "
          f"{'per stream':>11} {'above idle':>11}   (at the largest level held: p99 <= {budget_ms:.0f} ms, 0 lost)")
    for name, levels in report.items():
        tried = [level.result.streams for level in levels]
        passing = [level for level in levels if held(level.result, budget_ms)]
        if not passing:
            print(f"{name:<10} {'none':>12}   (tried {tried})")
            continue
        best = max(passing, key=lambda level: level.result.streams)
        r = best.result
        e2e = f"{r.end_to_end_ms.get('p50')} / {r.end_to_end_ms.get('p99')}"
        print(f"{name:<10} {r.streams:>12} {e2e:>18} {r.lost:>5} {r.cpu_percent:>16} "
              f"{r.cpu_percent / r.streams:>10.3f}% {best.cpu_per_stream_above_idle:>10.3f}%   (tried {tried})",
              flush=True)


# ---- results: through the proxy against subscribing to every replica -------------------------------------

def run_results(args: argparse.Namespace) -> dict[str, list[ClusterLevel]]:
    levels = [int(n) for n in args.streams.split(",") if n.strip()]
    report: dict[str, list[ClusterLevel]] = {"proxy": [], "direct": []}
    with running_topology("replicas", args, max(levels) + 10, replicas=args.replicas,
                          backend=args.replica_backend, proxy=True) as topology:
        assert topology.xpub is not None
        paths = {"proxy": [topology.xpub], "direct": topology.replica_results}
        print(f"[results] {', '.join(f'{m} (pid {p})' for m, p in topology.members.items())}; inference "
              f"{args.replica_backend}; proxy XPUB {topology.xpub}, replicas' PUB {', '.join(topology.replica_results)}",
              flush=True)
        topology.measure_idle(args.idle_s)
        warm_up(args, topology)
        for n in levels:
            for round_index in range(args.rounds):
                order = ("proxy", "direct") if round_index % 2 == 0 else ("direct", "proxy")
                for path in order:
                    level = run_level(args, topology, n, subscribe_to=paths[path])
                    report[path].append(level)
                    print_results_level(path, level)
                    time.sleep(2.0)
    print_results_summary(report)
    return report


def proxy_ms_per_1000_results(result: LevelResult) -> float:
    """The proxy's CPU per 1000 results it forwarded (results arrive at a steady rate over the level)."""
    rate = result.received / result.duration_s if result.duration_s else 0.0
    proxy_percent = result.cpu_percent_by_part.get("proxy", float("nan"))
    return round(1000 * 10 * proxy_percent / rate, 2) if rate else float("nan")


def print_results_level(path: str, level: ClusterLevel) -> None:
    result = level.result
    how = "one subscriber on the proxy's XPUB" if path == "proxy" else "one subscriber connected to every replica"
    print(f"[results/{path}] N={result.streams} ({how}; streams per replica {level.streams_per_replica}): "
          f"delivered {result.received}/{result.expected} (lost {result.lost}), "
          f"{result.received / result.duration_s:.0f} results/s\n"
          f"        end-to-end ms {result.end_to_end_ms}  daemon latency_ms {result.daemon_latency_ms}\n"
          f"        proxy CPU {result.cpu_percent_by_part.get('proxy')}% of one core "
          f"({proxy_ms_per_1000_results(result)} ms per 1000 results); {describe_cpu(level)}\n"
          f"        sender lateness ms {result.sender_lateness_ms}", flush=True)


def print_results_summary(report: dict[str, list[ClusterLevel]]) -> None:
    print(f"\n{'path':<7} {'N':>5} {'delivered':>17} {'e2e p50 / p99 ms':>18} {'proxy CPU':>10} {'per 1000 results':>17}")
    for path, levels in report.items():
        for level in levels:
            r = level.result
            e2e = f"{r.end_to_end_ms.get('p50')} / {r.end_to_end_ms.get('p99')}"
            print(f"{path:<7} {r.streams:>5} {f'{r.received} of {r.expected}':>17} {e2e:>18} "
                  f"{r.cpu_percent_by_part.get('proxy', float('nan')):>9}% {proxy_ms_per_1000_results(r):>14} ms",
                  flush=True)


# ---- main ---------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", type=Path, default=packaged_model_path(),
                        help="ONNX model: the in-process daemons' and the one Triton serves")
    common.add_argument("--duration", type=float, default=10.0, help="seconds of audio per stream per level")
    common.add_argument("--budget-ms", type=float, default=100.0, help="end-to-end p99 latency budget")
    common.add_argument("--replicas", type=int, default=2, help="daemon replicas in the cluster topology")
    common.add_argument("--spread-hops", action="store_true",
                        help="start stream i (i mod hop/20ms) frames late, so hops do not all end on one tick")
    common.add_argument("--triton-instances", type=int, default=1, help="Triton CPU model instances")
    common.add_argument("--triton-max-batch", type=int, default=128,
                        help="Triton max_batch_size (>= the daemons' batching.max_batch, 64 by default)")
    common.add_argument("--triton-queue-delay-ms", type=float, default=0.0,
                        help="Triton dynamic batching queue delay (adds to each hop's latency)")
    common.add_argument("--triton-timeout-s", type=float, default=5.0, help="the daemons' model.triton_timeout_s")
    common.add_argument("--idle-s", type=float, default=2.0,
                        help="before warming up, measure the topology's CPU with no stream for this long")
    common.add_argument("--warmup-s", type=float, default=3.0,
                        help="before the levels, a few streams for this long, not reported (0: none)")
    common.add_argument("--daemon-arg", action="append", default=[], help="extra flag for every daemon started")
    common.add_argument("--log-dir", type=Path, default=REPO_ROOT / "runs", help="the processes' logs go here")
    common.add_argument("--json", type=Path, default=None, help="also write every level to this JSON file")
    modes = parser.add_subparsers(dest="mode", required=True)
    capacity = modes.add_parser("capacity", parents=[common], help="streams held and CPU per stream, per topology")
    capacity.add_argument("--topologies", default=",".join(TOPOLOGIES), help="comma-separated: single, cluster")
    levels = capacity.add_mutually_exclusive_group()
    levels.add_argument("--streams", default="25,50,100", help="comma-separated levels N")
    levels.add_argument("--search", action="store_true", help="find the largest N each topology holds")
    capacity.add_argument("--search-start", type=int, default=25, help="--search: first N")
    capacity.add_argument("--search-max", type=int, default=1000, help="--search: never try more than this")
    capacity.add_argument("--max-seconds", type=float, default=900.0,
                          help="per topology: stop starting new levels after this")
    results = modes.add_parser("results", parents=[common], help="results through the proxy against direct")
    results.add_argument("--streams", default="300", help="comma-separated levels N")
    results.add_argument("--rounds", type=int, default=1, help="turns of (proxy, direct) per level, order alternating")
    results.add_argument("--replica-backend", choices=["onnx", "triton"], default="onnx",
                         help="the replicas' inference (onnx: in-process, so only the results path differs)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.model.is_file():
        print(f"model not found: {args.model} (pass --model PATH)", file=sys.stderr)
        return 2
    if args.mode == "capacity":
        unknown = set(args.topologies.split(",")) - set(TOPOLOGIES)
        if unknown:
            print(f"unknown topology {sorted(unknown)}: choose from {', '.join(TOPOLOGIES)}", file=sys.stderr)
            return 2
        report = run_capacity(args)
    else:
        report = run_results(args)
    if args.json is not None:
        args.json.write_text(json.dumps({k: [level.as_json() for level in v] for k, v in report.items()}, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
