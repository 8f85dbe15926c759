"""Results through `spoofwatch proxy` against subscribing to the daemon directly.

    python benchmarks/results_proxy.py [--rates 2000,10000,50000] [--seconds 5] [--size 450]

A publisher process binds a PUB socket (as a daemon's results socket) and sends result-sized
messages at each rate in 1 ms ticks, each stamped with its send time (CLOCK_MONOTONIC, one clock
for the machine). The proxy runs as its own process (`python -m clients.cli proxy --connect PUB
--xpub ...`). This process holds two SUB sockets, one on the publisher and one on the proxy, and
prints for each: messages received, latency p50/p99/max; and the proxy's CPU per 1000 messages,
read from /proc. What a deployment adds by the proxy: one hop of latency and that CPU.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import zmq

REPO = Path(__file__).resolve().parents[1]
END = b"end"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def publish(endpoint: str, rate: int, seconds: float, size: int, start_at: float) -> None:
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 1_000_000)
    pub.bind(endpoint)
    padding = "x" * max(0, size - 120)
    while time.monotonic() < start_at:
        time.sleep(0.01)
    per_tick = max(1, rate // 1000)
    ticks = int(seconds * 1000)
    for tick in range(ticks):
        due = start_at + tick / 1000
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for _ in range(per_tick):
            body = json.dumps({"type": "result", "stream_id": "call-1", "sent": time.monotonic(), "pad": padding})
            pub.send_multipart([b"call-1", body.encode()])
    time.sleep(0.2)
    for _ in range(3):
        pub.send_multipart([END, b"{}"])
        time.sleep(0.05)
    pub.close(linger=2000)
    context.term()


def run_rate(rate: int, seconds: float, size: int) -> None:
    pub_endpoint = f"tcp://127.0.0.1:{free_port()}"
    xpub_endpoint = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proxy = subprocess.Popen([sys.executable, "-m", "clients.cli", "proxy", "--connect", pub_endpoint,
                              "--xpub", xpub_endpoint], env=env, stderr=subprocess.DEVNULL)
    context = zmq.Context()
    subscribers = {"direct": context.socket(zmq.SUB), "proxy": context.socket(zmq.SUB)}
    for name, sub in subscribers.items():
        sub.setsockopt(zmq.RCVHWM, 1_000_000)
        sub.subscribe(b"")
        sub.connect(pub_endpoint if name == "direct" else xpub_endpoint)
    start_at = time.monotonic() + 2.0  # both subscriptions reach the publisher first
    publisher = multiprocessing.Process(target=publish, args=(pub_endpoint, rate, seconds, size, start_at))
    publisher.start()
    latencies: dict[str, list[float]] = {name: [] for name in subscribers}
    done: set[str] = set()
    poller = zmq.Poller()
    for sub in subscribers.values():
        poller.register(sub, zmq.POLLIN)
    cpu_before = None
    deadline = start_at + seconds + 30
    while len(done) < len(subscribers) and time.monotonic() < deadline:
        if cpu_before is None and time.monotonic() >= start_at:
            cpu_before = cpu_seconds(proxy.pid)
        for sub, _ in poller.poll(100):
            name = next(n for n, s in subscribers.items() if s is sub)
            while True:
                try:
                    topic, body = sub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if topic == END:
                    done.add(name)
                    continue
                latencies[name].append(time.monotonic() - json.loads(body)["sent"])
    proxy_cpu = cpu_seconds(proxy.pid) - (cpu_before or 0.0)
    publisher.join()
    proxy.terminate()
    proxy.wait()
    for sub in subscribers.values():
        sub.close(linger=0)
    context.term()
    sent = max(1, rate // 1000) * int(seconds * 1000)
    for name, values in latencies.items():
        ms = 1000 * np.asarray(values) if values else np.zeros(1)
        print(f"{rate:>7}/s {name:>7}: {len(values):>8} of {sent} received, latency p50 {np.percentile(ms, 50):7.3f} "
              f"p99 {np.percentile(ms, 99):8.3f} max {ms.max():8.3f} ms")
    print(f"{rate:>7}/s   proxy: {1000 * proxy_cpu / max(1, len(latencies['proxy'])) * 1000:7.1f} ms CPU per 1000 "
          f"messages ({100 * proxy_cpu / seconds:.0f} % of a core)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="2000,10000,50000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=450, help="bytes per message (a result is ~300-500)")
    args = parser.parse_args(argv)
    for rate in (int(r) for r in args.rates.split(",")):
        run_rate(rate, args.seconds, args.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
