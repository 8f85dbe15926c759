"""Take members out of an exported ensemble and fuse them with trained checkpoints: one head from each.

    python -m streaming_models.graft --checkpoint runs/final/best.pt --take-head spoof \
        --onnx streaming_models/default_model/spoofwatch-default.onnx --onnx-head codec --out runs/graft/best.pt

A shipped model keeps no training checkpoint, only its ONNX file. When a new recipe improves one head
and not the other, the better head of each should ship. This rebuilds the members that feed
`--onnx-head` in the ONNX file as PyTorch detectors (their configs are in the file's metadata; the
weights are its initializers, with ONNX's GRU gate order z, r, h put back to PyTorch's r, z, n), checks
that they reproduce that head of the ONNX file hop by hop, and writes an ensemble checkpoint whose
`--take-head` comes from the checkpoint's members for it and `--onnx-head` from the rebuilt ones.
Each head keeps the operating threshold of the model it came from. `spoofwatch export` then writes
the fused model (with its own parity check).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from streaming_models.model import DetectorEnsemble, ModelConfig, StreamingDetector, load_checkpoint
from streaming_models.runtime.onnx_backend import OnnxBackend
from streaming_models.runtime.scorer import HopScorer

PARITY_TOLERANCE = 1e-4  # probability, as the exporter's own check


def _gates_to_torch(weight: np.ndarray, hidden: int) -> np.ndarray:
    """ONNX stacks the GRU gates z, r, h; PyTorch r, z, n."""
    z, r, h = (weight[i * hidden:(i + 1) * hidden] for i in range(3))
    return np.concatenate([r, z, h])


def members_from_onnx(path: Path, indexes: list[int]) -> list[StreamingDetector]:
    """Rebuild members of an exported ensemble. The unnamed initializers come six per member in member
    order (feature mean and std, GRU W, R and B, head weight as a MatMul); the rest keep their names."""
    graph = onnx.load(str(path)).graph
    tensors = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    meta = OnnxBackend(path, providers=("CPUExecutionProvider",)).metadata
    member_args: list[dict[str, Any]] = meta.extra["model_args"]  # type: ignore[assignment]
    unnamed = [name for name in tensors if name.startswith("onnx::")]
    if len(unnamed) != 6 * len(member_args):
        raise ValueError(f"{path}: expected 6 unnamed initializers per member, found {len(unnamed)} for "
                         f"{len(member_args)} members")
    members = []
    for index in indexes:
        member = StreamingDetector(ModelConfig.from_dict(member_args[index]))
        mean, std, w, r, b, head = (tensors[name] for name in unnamed[6 * index: 6 * index + 6])
        hidden = member.config.gru_hidden
        prefix = f"model.members.{index}."
        state = {key[len(prefix):]: torch.from_numpy(value.copy()) for key, value in tensors.items()
                 if key.startswith(prefix)}
        state.update({
            "frontend.mean": torch.from_numpy(mean.reshape(-1).copy()),
            "frontend.std": torch.from_numpy(std.reshape(-1).copy()),
            "gru.weight_ih_l0": torch.from_numpy(_gates_to_torch(w[0], hidden)),
            "gru.weight_hh_l0": torch.from_numpy(_gates_to_torch(r[0], hidden)),
            "gru.bias_ih_l0": torch.from_numpy(_gates_to_torch(b[0, : 3 * hidden], hidden)),
            "gru.bias_hh_l0": torch.from_numpy(_gates_to_torch(b[0, 3 * hidden:], hidden)),
            "head.weight": torch.from_numpy(head.T.copy()),
        })
        member.load_state_dict(state, strict=True)
        members.append(member.eval())
    return members


def head_difference(model: torch.nn.Module, onnx_path: Path, model_column: int, onnx_column: int,
                    hops: int = 30, batch: int = 6, seed: int = 0) -> float:
    """Largest probability difference of one head between a PyTorch model and an ONNX file, hop by hop."""
    scorer = HopScorer(OnnxBackend(onnx_path, providers=("CPUExecutionProvider",)))
    hop_samples, rate = scorer.metadata.hop_samples, scorer.metadata.sample_rate_hz
    rng = np.random.default_rng(seed)
    t = np.arange(hops * hop_samples) / rate
    tones = np.sin(2 * np.pi * np.outer(rng.uniform(80, 400, batch), t)) * rng.uniform(0.05, 0.5, (batch, 1))
    audio = (tones + 0.05 * rng.standard_normal(tones.shape)).astype(np.float32)  # voiced-ish, then noise
    cut = audio.reshape(batch, hops, hop_samples)
    onnx_probs = np.stack(scorer.score_streams(list(cut)))  # [batch, hops, heads]
    torch_states = model.initial_states(batch)  # type: ignore[operator]
    worst = 0.0
    with torch.no_grad():
        for h in range(hops):
            logits, torch_states = model(torch.from_numpy(np.ascontiguousarray(cut[:, h])), torch_states)
            mine = torch.sigmoid(logits[:, -1, model_column]).numpy()
            worst = max(worst, float(np.abs(mine - onnx_probs[:, h, onnx_column]).max()))
    return worst


def graft(checkpoint: Path, take_head: str, onnx_path: Path, onnx_head: str) -> dict[str, Any]:
    _, ckpt = load_checkpoint(str(checkpoint))
    if "members" not in ckpt:
        raise ValueError(f"{checkpoint}: an ensemble checkpoint is expected (spoofwatch ensemble)")
    meta = OnnxBackend(onnx_path, providers=("CPUExecutionProvider",)).metadata
    heads: list[str] = list(meta.heads)
    onnx_members = [int(i) for i in meta.extra["head_members"][onnx_head]]  # type: ignore[index]
    ours = [int(i) for i in ckpt["head_members"][take_head]]
    rebuilt = members_from_onnx(onnx_path, onnx_members)
    # the rebuilt members alone must reproduce the ONNX file's head
    check = rebuilt[0] if len(rebuilt) == 1 else DetectorEnsemble(rebuilt).eval()
    diff = head_difference(check, onnx_path, heads.index(onnx_head), heads.index(onnx_head))
    if diff > PARITY_TOLERANCE:
        raise ValueError(f"rebuilt {onnx_head} members differ from {onnx_path} by {diff:.2e} in probability")
    kept = [ckpt["members"][i] for i in ours]
    grafted = [{"model_args": m.config.to_dict(), "model": m.state_dict(), "step": int(meta.extra.get("train_step", 0)),
                "source": f"{onnx_path}#member{i}"} for m, i in zip(rebuilt, onnx_members, strict=True)]
    thresholds = dict(ckpt["thresholds"])
    thresholds[onnx_head] = meta.operating_thresholds[onnx_head]
    if onnx_head in meta.extra.get("or_groups", {}):  # type: ignore[operator]
        raise ValueError(f"{onnx_path}: head {onnx_head!r} is an 'any of' fusion; only a mean head can be grafted")
    position = {member: i for i, member in enumerate(ours)}
    or_groups = {take_head: [[position[m] for m in group] for group in ckpt["or_groups"][take_head]]
                 } if take_head in ckpt.get("or_groups", {}) else {}
    or_offsets = {take_head: list(ckpt["or_offsets"][take_head])} if or_groups else {}
    out = dict(ckpt)
    out.update(members=kept + grafted,
               head_members={take_head: list(range(len(kept))),
                             onnx_head: list(range(len(kept), len(kept) + len(grafted)))},
               or_groups=or_groups, or_offsets=or_offsets,
               thresholds=thresholds, grafted={"onnx": str(onnx_path), "model_id": meta.model_id, "head": onnx_head,
                                               "members": onnx_members, "parity_max_diff": diff})
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m streaming_models.graft", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="ensemble checkpoint giving --take-head")
    parser.add_argument("--take-head", required=True)
    parser.add_argument("--onnx", type=Path, required=True, help="exported model giving --onnx-head")
    parser.add_argument("--onnx-head", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.take_head == args.onnx_head:
        parser.error("--take-head and --onnx-head must differ")
    try:
        fused = graft(args.checkpoint, args.take_head, args.onnx, args.onnx_head)
    except (OSError, ValueError, KeyError) as exc:
        print(f"graft: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(fused, args.out)
    print(json.dumps({"out": str(args.out), **fused["grafted"], "thresholds": fused["thresholds"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
