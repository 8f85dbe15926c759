"""Per-hop inference on a GPU: latency per batch call and the real-time streams one device serves.

    python benchmarks/gpu_speed.py --device cuda --batches 256,1024,4096,8192,16384 --graphs
    python benchmarks/gpu_speed.py --checkpoint runs/x/best.pt --device cuda      # trained weights
    python benchmarks/gpu_speed.py --device cpu --batches 8 --calls 5               # the code path, here

The model is the shipped architecture (six LFCC members on one shared STFT: four full-band for
the spoof head, two 0-4 kHz for the codec head) with fresh weights unless --checkpoint is given;
the cost does not depend on the weights. What one call times is the daemon's per-hop work with
the states kept on the device between hops (IO binding): copy the batch's 100 ms hops from
pinned host memory, run the network, copy the probabilities back, synchronize.

`--graphs` also times the same step captured once as a CUDA graph and replayed (one launch
per hop instead of one per kernel). `--host-states` also times each mode with the states kept in
pinned host memory and copied to the device and back on every call, as a Triton server with the
states as explicit inputs and outputs does (docs/scale-out.md): what keeping the state with the
daemon costs the GPU side. Each line prints p50 and p99 of the call, the streams it
serves in real time at that batch (batch x hop / p50) and whether p99 is within 50 ms. Before
timing, the device's probabilities are checked against the CPU's on the same hops.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable

import numpy as np
import torch

from streaming_models.model import (
    DetectorEnsemble,
    ModelConfig,
    Network,
    StreamingDetector,
    load_checkpoint,
)

LATENCY_BUDGET_MS = 50.0


def shipped_architecture() -> DetectorEnsemble:
    torch.manual_seed(0)
    full = [StreamingDetector(ModelConfig(features="lfcc")) for _ in range(4)]
    low = [StreamingDetector(ModelConfig(features="lfcc", top_hz=4000.0)) for _ in range(2)]
    return DetectorEnsemble(full + low, {"spoof": (0, 1, 2, 3), "codec": (4, 5)})


def parity(model: Network, device: torch.device, dtype: torch.dtype, hops: int = 20, batch: int = 8) -> float:
    """Largest probability difference between the device (at dtype) and the CPU in float32."""
    rng = np.random.default_rng(0)
    audio = torch.from_numpy((0.1 * rng.standard_normal((hops, batch, model.config.hop_samples))).astype(np.float32))
    cpu_states = model.initial_states(batch)
    cpu_model = copy.deepcopy(model).to("cpu")  # the caller's model may already sit on the device
    dev_model = copy.deepcopy(model).to(device)
    dev_states = [s.to(device) for s in model.initial_states(batch)]
    worst = 0.0
    with torch.inference_mode():
        for t in range(hops):
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                dev_logits, dev_states = dev_model(audio[t].to(device), dev_states)
            cpu_logits, cpu_states = cpu_model(audio[t], cpu_states)
            diff = (torch.sigmoid(dev_logits[:, -1].float().cpu()) - torch.sigmoid(cpu_logits[:, -1])).abs().max()
            worst = max(worst, float(diff))
    return worst


def make_step(model: Network, batch: int, device: torch.device, dtype: torch.dtype,
              graph: bool, host_states: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """One hop for `batch` streams: host audio in, host probabilities out, states stay on the device
    (or, with `host_states`, travel from pinned host memory and back on every call)."""
    states = [s.to(device) for s in model.initial_states(batch)]
    audio_dev = torch.zeros(batch, model.config.hop_samples, device=device)
    on_host = [s.pin_memory() if device.type == "cuda" else s for s in model.initial_states(batch)] if host_states else []

    def states_in() -> None:
        for dev, host in zip(states, on_host, strict=False):  # nothing without host_states
            dev.copy_(host, non_blocking=True)

    def states_out() -> None:
        for dev, host in zip(states, on_host, strict=False):
            host.copy_(dev, non_blocking=True)

    def forward() -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            logits, new_states = model(audio_dev, states)
        for old, new in zip(states, new_states, strict=True):
            old.copy_(new)
        return torch.sigmoid(logits[:, -1].float())

    if not graph:
        def eager(host_audio: torch.Tensor) -> torch.Tensor:
            audio_dev.copy_(host_audio, non_blocking=True)
            states_in()
            out = forward().to("cpu", non_blocking=True)
            states_out()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            return out
        return eager
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):  # warm up (cuDNN picks its kernels) before capture
            forward()
    torch.cuda.current_stream(device).wait_stream(side)
    cuda_graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(cuda_graph):
        static_out = forward()
    host_out = torch.empty(static_out.shape, pin_memory=True)

    def replay(host_audio: torch.Tensor) -> torch.Tensor:
        audio_dev.copy_(host_audio, non_blocking=True)
        states_in()
        cuda_graph.replay()
        host_out.copy_(static_out, non_blocking=True)
        states_out()
        torch.cuda.synchronize(device)
        return host_out
    return replay


def time_step(step: Callable[[torch.Tensor], torch.Tensor], host_audio: torch.Tensor, calls: int) -> np.ndarray:
    for _ in range(5):
        step(host_audio)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        step(host_audio)
        times.append((time.perf_counter() - start) * 1000.0)
    return np.array(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="trained checkpoint (default: the shipped architecture, fresh weights)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batches", default="256,1024,4096,8192")
    parser.add_argument("--dtypes", default="float32", help="comma list of float32, bfloat16, float16")
    parser.add_argument("--graphs", action="store_true", help="also time CUDA-graph replay")
    parser.add_argument("--calls", type=int, default=100, help="timed calls per setting")
    parser.add_argument("--host-states", action="store_true",
                        help="also time each mode with the states copied host -> device -> host every call")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    device = torch.device(args.device)
    model: Network = load_checkpoint(args.checkpoint)[0] if args.checkpoint else shipped_architecture()
    model.eval()
    hop_ms = 1000.0 * model.config.hop_samples / model.config.sample_rate_hz
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}, torch {torch.__version__}, {model.num_parameters():,} parameters, hop {hop_ms:.0f} ms")
    rows = []
    for dtype_name in args.dtypes.split(","):
        dtype = getattr(torch, dtype_name)
        print(f"{dtype_name}: largest probability difference against the CPU (float32): "
              f"{parity(model, device, dtype):.2e}")
        model.to(device)
        for batch in (int(b) for b in args.batches.split(",")):
            host_audio = (0.1 * torch.randn(batch, model.config.hop_samples))
            if device.type == "cuda":
                host_audio = host_audio.pin_memory()
            modes = ["eager"] + (["graph"] if args.graphs and device.type == "cuda" else [])
            if args.host_states:
                modes += [f"{mode}+host" for mode in modes]
            for mode in modes:
                try:
                    with torch.inference_mode():
                        step = make_step(model, batch, device, dtype, mode.startswith("graph"),
                                         host_states=mode.endswith("+host"))
                        ms = time_step(step, host_audio, args.calls)
                except RuntimeError as exc:  # e.g. out of memory, or a kernel that cannot be captured
                    print(f"  batch {batch:>6} {mode:<5} failed: {str(exc).splitlines()[0][:160]}")
                    continue
                p50, p99 = float(np.percentile(ms, 50)), float(np.percentile(ms, 99))
                row = {"dtype": dtype_name, "batch": batch, "mode": mode, "p50_ms": p50, "p99_ms": p99,
                       "realtime_streams": int(batch * hop_ms / p50), "within_budget": p99 <= LATENCY_BUDGET_MS}
                rows.append(row)
                print(f"  batch {batch:>6} {mode:<10} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  "
                      f"-> {row['realtime_streams']:>9,} real-time streams  "
                      f"{'p99 within' if row['within_budget'] else 'p99 OVER'} {LATENCY_BUDGET_MS:.0f} ms")
    best = max((r for r in rows if r["within_budget"]), key=lambda r: r["realtime_streams"], default=None)
    if best:
        print(f"most real-time streams with p99 <= {LATENCY_BUDGET_MS:.0f} ms: {best['realtime_streams']:,} "
              f"(batch {best['batch']}, {best['mode']}, {best['dtype']})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": name, "torch": torch.__version__, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
