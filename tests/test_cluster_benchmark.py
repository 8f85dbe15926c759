"""benchmarks/cluster.py end to end at tiny size: real daemons, a real Triton server, the results proxy."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest
import zmq
from benchmark_modules import load_benchmark
from triton_server import find_triton, free_port

from daemon.wire.zmq_messages import (
    AudioMessage,
    CloseMessage,
    OpenedReply,
    OpenMessage,
    parse_request,
)


@pytest.fixture(scope="module")
def cluster() -> ModuleType:
    return load_benchmark("cluster")


def test_the_sender_sends_each_stream_to_the_replica_it_is_placed_on() -> None:
    """load.py's sender with a placement (what the cluster benchmark gives it): every message of a
    stream, open, audio and close, goes to that stream's replica and no other."""
    context = zmq.Context()
    routers = [context.socket(zmq.ROUTER) for _ in range(2)]
    endpoints = [f"tcp://127.0.0.1:{free_port()}" for _ in routers]
    for router, endpoint in zip(routers, endpoints, strict=True):
        router.bind(endpoint)
    ids = [f"s{i}" for i in range(6)]
    placement = {stream_id: endpoints[i % 3 == 0] for i, stream_id in enumerate(ids)}  # s0, s3 on the second
    seen: list[set[tuple[str, str]]] = [set(), set()]
    stop = threading.Event()

    def serve() -> None:
        poller = zmq.Poller()
        for router in routers:
            poller.register(router, zmq.POLLIN)
        while not stop.is_set():
            for router, _ in poller.poll(50):
                peer, *frames = router.recv_multipart()
                message = parse_request(frames)
                kind = {OpenMessage: "open", AudioMessage: "audio", CloseMessage: "close"}[type(message)]
                seen[routers.index(router)].add((kind, message.stream_id))
                if kind == "open":
                    router.send_multipart([peer, *OpenedReply(message.stream_id, "m", 100.0).to_frames()])

    server = threading.Thread(target=serve)
    server.start()
    receiver, sender_end = multiprocessing.Pipe(duplex=False)
    try:
        load_benchmark("load").run_sender(placement, ids, 0.1, time.monotonic() + 0.3, sender_end)
        report = receiver.recv()
        time.sleep(0.3)  # the last closes arrive
    finally:
        stop.set()
        server.join()
        for router in routers:
            router.close(linger=0)
        context.term()
    assert report.error_count == 0 and report.messages == 6 * 5
    for k, endpoint in enumerate(endpoints):
        mine = {stream_id for stream_id in ids if placement[stream_id] == endpoint}
        assert seen[k] == {(kind, s) for s in mine for kind in ("open", "audio", "close")}, k


def test_process_tree_counts_the_children(cluster: ModuleType) -> None:
    """Triton's model instances are child processes of tritonserver: the CPU figure must include them."""
    spawn_child = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'import time; time.sleep(30)'])"
    parent = subprocess.Popen([sys.executable, "-c", spawn_child])
    try:
        deadline = time.monotonic() + 20
        while len(tree := cluster.process_tree(parent.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tree[0] == parent.pid and len(tree) == 2
        child = tree[1]
        assert int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1]) == parent.pid
        sample = cluster.tree_sample(parent.pid)
        assert sample.rss_bytes > cluster.read_proc(parent.pid).rss_bytes  # the child's memory counted too
    finally:
        for pid in cluster.process_tree(parent.pid)[1:]:
            subprocess.run(["kill", str(pid)], check=False)
        parent.kill()
        parent.wait()


def test_capacity_runs_one_daemon_and_two_replicas_on_triton(cluster: ModuleType, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tritonclient.grpc")
    dist = find_triton()
    if isinstance(dist, str):
        pytest.skip(dist)
    out = tmp_path / "capacity.json"
    assert cluster.main(["capacity", "--streams", "6", "--duration", "4", "--warmup-s", "0",
                         "--log-dir", str(tmp_path), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report) == {"single", "cluster"}
    members = {"single": {"daemon 1"}, "cluster": {"triton", "proxy", "daemon 1", "daemon 2"}}
    for name, levels in report.items():
        (level,) = levels
        assert level["streams"] == 6 and sum(level["streams_per_replica"]) == 6
        assert level["expected"] > 0 and level["received"] == level["expected"] and level["lost"] == 0, name
        assert level["end_to_end_ms"]["p50"] > 0
        parts = level["cpu_percent_by_part"]
        assert set(parts) == members[name]
        assert sum(parts.values()) == pytest.approx(level["cpu_percent"], abs=0.5)
        assert level["idle_cpu_percent"] >= 0 and level["cpu_per_stream_above_idle"] == pytest.approx(
            (level["cpu_percent"] - level["idle_cpu_percent"]) / 6, abs=1e-3)
        assert sum(parts[member] for member in parts if member.startswith("daemon")) > 0, parts
    assert report["cluster"][0]["cpu_percent_by_part"]["triton"] > 0  # inference ran on Triton
    summary = capsys.readouterr().out.split("streams held", 1)[1]
    assert "\nsingle " in summary and "\ncluster " in summary


def test_results_through_the_proxy_and_from_every_replica(cluster: ModuleType, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results.json"
    # 16 streams: the ring leaves one of two replicas without a stream with probability 2^-15
    assert cluster.main(["results", "--streams", "16", "--duration", "3", "--warmup-s", "0",
                         "--log-dir", str(tmp_path), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report) == {"proxy", "direct"}
    for path, levels in report.items():
        (level,) = levels
        per_replica = level["streams_per_replica"]
        assert len(per_replica) == 2 and min(per_replica) > 0 and sum(per_replica) == 16, per_replica
        # every result of both replicas reached the one subscriber, whichever way it connected
        assert level["expected"] > 0 and level["received"] == level["expected"], path
        assert set(level["cpu_percent_by_part"]) == {"proxy", "daemon 1", "daemon 2"}
    summary = capsys.readouterr().out.split("per 1000 results", 1)[1]
    assert "\nproxy " in summary and "\ndirect " in summary
