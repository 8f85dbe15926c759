"""Per-batch cost of scoring on a Triton server against in-process onnxruntime.

    python benchmarks/triton_overhead.py [--model FILE] [--batches 1,16,64] [--calls 200]
    python benchmarks/triton_overhead.py --endpoint HOST:PORT   # a server already running

Without `--endpoint` it starts the `tritonserver` of the Triton test environment (`make
triton-env`, tests/triton_server.py) on loopback, serving the model through Triton's Python
backend (the only one that wheel bundles), one CPU instance. For each batch size it times, call by
call and interleaved, `OnnxBackend.run` and `TritonBackend.run` (the same batch, states carried),
and prints wall-clock p50/p99 per call and the difference: what the daemon's batcher waits longer
per batch when its backend is Triton; and this process's CPU time per hop on each side (for Triton:
the client's cost, building and parsing the gRPC messages; the server's CPU is its own process).
Both sides use one onnxruntime thread.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # this checkout first, and the Triton launcher


def percentile_ms(values: list[float], q: float) -> float:
    return 1000.0 * float(np.percentile(values, q))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "streaming_models/default_model/spoofwatch-default.onnx")
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--endpoint", help="a running Triton server's gRPC HOST:PORT (else one is started)")
    parser.add_argument("--serve", action="store_true",
                        help="only start the server, print its endpoint and keep it up until interrupted "
                             "(for a daemon on `--model.backend triton`, e.g. under benchmarks/load.py)")
    args = parser.parse_args(argv)

    from streaming_models.runtime.onnx_backend import OnnxBackend
    from streaming_models.runtime.triton_backend import TritonBackend
    from streaming_models.triton_repository import read_onnx_metadata, write_repository

    with ExitStack() as stack:
        endpoint = args.endpoint
        if endpoint is None:
            from triton_server import find_triton, running_triton

            dist = find_triton()
            if isinstance(dist, str):
                print(f"cannot start Triton: {dist}", file=sys.stderr)
                return 2
            work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            write_repository(args.model, read_onnx_metadata(args.model), work / "repository",
                             max_batch_size=max(int(b) for b in args.batches.split(",")),
                             max_queue_delay_ms=0.0, instances=(("cpu", 1),), backend="python")
            endpoint = stack.enter_context(running_triton(dist, work / "repository", work)).grpc_endpoint
            if args.serve:
                print(f"triton serving {args.model.name} at {endpoint}", flush=True)
                stop = {signal.SIGINT, signal.SIGTERM}
                signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # so the server is stopped on the way out
                signal.sigwait(stop)
                return 0
        local = OnnxBackend(args.model, providers=["CPUExecutionProvider"])
        remote = TritonBackend(endpoints=[endpoint], timeout_s=30)
        meta = local.metadata
        print(f"model {meta.model_id}, Triton at {endpoint}, {args.calls} calls per batch size")
        print(f"{'batch':>6} {'in-process p50/p99 ms':>22} {'Triton p50/p99 ms':>20} {'overhead p50 ms':>16} "
              f"{'per hop us':>11} {'CPU/hop us local, client':>25}")
        rng = np.random.default_rng(0)
        for batch in (int(b) for b in args.batches.split(",")):
            audio = (0.1 * rng.standard_normal((batch, meta.hop_samples))).astype(np.float32)
            states = {"local": local.initial_states(batch), "remote": remote.initial_states(batch)}
            timings: dict[str, list[float]] = {"local": [], "remote": []}
            cpu: dict[str, float] = {"local": 0.0, "remote": 0.0}
            for _ in range(10):  # warm up both
                local.run(audio, states["local"])
                remote.run(audio, states["remote"])
            for _ in range(args.calls):
                for name, backend in (("local", local), ("remote", remote)):
                    started, cpu_started = time.perf_counter(), time.process_time()
                    _, states[name] = backend.run(audio, states[name])
                    timings[name].append(time.perf_counter() - started)
                    cpu[name] += time.process_time() - cpu_started
            lp50, lp99 = percentile_ms(timings["local"], 50), percentile_ms(timings["local"], 99)
            rp50, rp99 = percentile_ms(timings["remote"], 50), percentile_ms(timings["remote"], 99)
            print(f"{batch:>6} {lp50:>10.3f} / {lp99:<9.3f} {rp50:>9.3f} / {rp99:<8.3f} {rp50 - lp50:>16.3f} "
                  f"{1000 * (rp50 - lp50) / batch:>11.1f} "
                  f"{1e6 * cpu['local'] / (args.calls * batch):>12.1f}, {1e6 * cpu['remote'] / (args.calls * batch):<10.1f}")
        remote.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
