"""benchmarks/gpu_speed.py on the CPU: the parity check and the timed step (the GPU figures come from a device)."""

from __future__ import annotations

import torch
from benchmark_modules import load_benchmark


def test_parity_and_step_on_the_cpu() -> None:
    bench = load_benchmark("gpu_speed")
    model = bench.shipped_architecture().eval()
    cpu = torch.device("cpu")
    assert bench.parity(model, cpu, torch.float32, hops=3, batch=2) == 0.0
    assert bench.parity(model, cpu, torch.bfloat16, hops=3, batch=2) > 0.0  # half precision moves scores
    step = bench.make_step(model, 4, cpu, torch.float32, graph=False)
    with torch.inference_mode():
        first = step(0.1 * torch.randn(4, model.config.hop_samples)).clone()
        again = step(0.1 * torch.randn(4, model.config.hop_samples))
    assert first.shape == (4, 2) and torch.all((first >= 0) & (first <= 1))
    assert not torch.equal(first, again)  # states carried between hops on the device
