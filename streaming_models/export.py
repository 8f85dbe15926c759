"""Export a training checkpoint to one ONNX file that follows runtime/model_format.py.

    spoofwatch export --checkpoint runs/x/best.pt --out model.onnx [--torchscript model.pt]
    spoofwatch export --out model.onnx --triton DIR [--triton-instances gpu:1,cpu:2]

`--triton DIR` writes a Triton model repository for the ONNX file `--out` (exported now, or
earlier when `--checkpoint` is left out): streaming_models/triton_repository.py.

The graph takes one hop of audio plus every state and returns the hop's logits plus the
new states. The legacy TorchScript exporter is used on purpose (`dynamo=False`): the
dynamo exporter fixes the GRU's sequence length. After writing, the file is checked
with `onnx.checker` and run in onnxruntime against PyTorch over a multi-hop stream;
any difference above 1e-4 fails the export.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import structlog
import torch
from torch import nn

from streaming_models.logs import log_to_stderr
from streaming_models.model import DetectorEnsemble, Network, load_checkpoint
from streaming_models.runtime.errors import SpoofwatchError
from streaming_models.runtime.model_format import (
    AUDIO_INPUT,
    LOGITS_OUTPUT,
    METADATA_KEY,
    ModelMetadata,
    StateSpec,
)
from streaming_models.triton_repository import add_arguments as add_triton_arguments
from streaming_models.triton_repository import (
    parse_instances,
    read_onnx_metadata,
    write_from_arguments,
)

log = structlog.get_logger(__name__)

OPSET = 17
PARITY_TOLERANCE = 1e-4
MODEL_VERSION = "0.1.0"


class OneHop(nn.Module):
    """(audio [B, hop], *states) -> (logits [B, heads], *new states): the exported signature."""

    def __init__(self, model: Network) -> None:
        super().__init__()
        self.model = model

    def forward(self, audio: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, new_states = self.model(audio, list(states))  # logits [B, 1, heads]
        return (logits[:, 0], *new_states)


def build_metadata(model: Network, ckpt: dict[str, Any]) -> ModelMetadata:
    c = model.config
    states = tuple(StateSpec(f"{name}_in", f"{name}_out", shape)
                   for name, shape in model.state_shapes().items())
    corpus_hash = str(ckpt.get("corpus_hash", "unknown"))
    extra: dict[str, Any] = {
        "features": c.features,
        "parameters": model.num_parameters(),
        "train_step": int(ckpt.get("step", 0)),
        "manifest": str(ckpt.get("manifest", "")),
        "model_args": c.to_dict(),
    }
    kind = c.features
    if isinstance(model, DetectorEnsemble):
        kind = f"{c.features}x{len(model.members)}"
        extra["model_args"] = [m.config.to_dict() for m in model.detectors()]
        extra["members"] = [str(m.get("source", "")) for m in ckpt.get("members", [])]
        extra["head_members"] = {head: list(indexes) for head, indexes in model.head_members.items()}
        if model.or_groups:
            extra["or_groups"] = {head: [list(g) for g in groups] for head, groups in model.or_groups.items()}
            extra["or_offsets"] = {head: list(offsets) for head, offsets in model.or_offsets.items()}
    extra.update({f"dev_{k}": float(v) for k, v in ckpt.get("dev_metrics", {}).items()})
    meta = ModelMetadata(
        model_id=f"spoofwatch-{kind}-{corpus_hash[:8]}-s{int(ckpt.get('step', 0))}",
        sample_rate_hz=c.sample_rate_hz,
        hop_samples=c.hop_samples,
        states=states,
        heads=c.heads,
        label_policy=str(ckpt.get("policy", "unknown")),
        corpus_hash=corpus_hash,
        version=MODEL_VERSION,
        operating_thresholds={head: float(t) for head, t in ckpt.get("thresholds", {}).items()},
        extra=extra,
    )
    meta.validate()
    return meta


def export_onnx(model: Network, meta: ModelMetadata, out: Path) -> None:
    wrapper = OneHop(model).eval()  # export restores the wrapper's mode afterwards: keep it eval
    batch = 2
    audio = torch.zeros(batch, model.config.hop_samples)
    states = model.initial_states(batch)
    input_names = [AUDIO_INPUT, *(s.input_name for s in meta.states)]
    output_names = [LOGITS_OUTPUT, *(s.output_name for s in meta.states)]
    dynamic_axes = {name: {0: "batch"} for name in input_names + output_names}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(wrapper, (audio, *states), str(out), input_names=input_names,
                      output_names=output_names, dynamic_axes=dynamic_axes, opset_version=OPSET,
                      dynamo=False)
    proto = onnx.load(str(out))
    # Slicing leaves the state outputs' sizes symbolic; declare them, so consumers (and the
    # checker's shape inference) see the same fixed per-stream shapes as on the inputs.
    fixed = {LOGITS_OUTPUT: (len(meta.heads),), **{s.output_name: s.shape for s in meta.states}}
    for output in proto.graph.output:
        dims = output.type.tensor_type.shape.dim
        dims[0].dim_param = "batch"
        for dim, size in zip(dims[1:], fixed[output.name], strict=True):
            dim.dim_value = size
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(out))


def parity_max_diff(model: Network, onnx_path: Path, hops: int = 12, batch: int = 3,
                    seed: int = 0) -> float:
    """Largest |ONNX - PyTorch| over logits and states, feeding `hops` hops one by one."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    meta = ModelMetadata.from_json(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
    gen = torch.Generator().manual_seed(seed)
    # Speech-like level plus a burst of silence, so log floors and loud frames both occur.
    audio = 0.1 * torch.randn(batch, hops * meta.hop_samples, generator=gen)
    audio[:, meta.hop_samples: 2 * meta.hop_samples] = 0.0
    torch_states = model.initial_states(batch)
    onnx_states = {s.input_name: t.numpy() for s, t in zip(meta.states, torch_states, strict=True)}
    worst = 0.0
    with torch.no_grad():
        for i in range(hops):
            chunk = audio[:, i * meta.hop_samples: (i + 1) * meta.hop_samples]
            logits, torch_states = model(chunk, torch_states)
            outs = session.run(None, {AUDIO_INPUT: np.ascontiguousarray(chunk.numpy()), **onnx_states})
            worst = max(worst, float(np.abs(outs[0] - logits[:, 0].numpy()).max()))
            for spec, mine, theirs in zip(meta.states, torch_states, outs[1:], strict=True):
                worst = max(worst, float(np.abs(mine.numpy() - theirs).max()))
            onnx_states = {s.input_name: o for s, o in zip(meta.states, outs[1:], strict=True)}
    return worst


def export_torchscript(model: Network, meta: ModelMetadata, out: Path) -> float:
    """Traced TorchScript for streaming_models/runtime/torch_backend.py (CPU or CUDA), metadata as the extra file
    `spoofwatch`; returns the largest |TorchScript - eager| over a multi-hop stream at batch 3."""
    wrapper = OneHop(model).eval()
    example = (torch.zeros(2, meta.hop_samples), *model.initial_states(2))
    with torch.no_grad():
        traced = torch.jit.trace(wrapper, example, check_trace=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(traced, str(out), _extra_files={METADATA_KEY: meta.to_json()})
    loaded = torch.jit.load(str(out))
    gen = torch.Generator().manual_seed(1)
    mine, theirs, worst = model.initial_states(3), model.initial_states(3), 0.0
    with torch.no_grad():
        for _ in range(6):
            audio = 0.1 * torch.randn(3, meta.hop_samples, generator=gen)
            eager_logits, mine = model(audio, mine)
            script_logits, *theirs = loaded(audio, *theirs)
            worst = max(worst, float((eager_logits[:, 0] - script_logits).abs().max()),
                        *(float((a - b).abs().max()) for a, b in zip(mine, theirs, strict=True)))
    return worst


def export_checkpoint(checkpoint: Path, out: Path, torchscript: Path | None = None) -> ModelMetadata:
    model, ckpt = load_checkpoint(str(checkpoint))
    meta = build_metadata(model, ckpt)
    export_onnx(model, meta, out)
    diff = parity_max_diff(model, out)
    if diff > PARITY_TOLERANCE:
        raise RuntimeError(f"ONNX/PyTorch parity failed: max diff {diff:.3g} > {PARITY_TOLERANCE}")
    log.info("exported", out=str(out), model_id=meta.model_id, parity_max_diff=diff,
             size_bytes=out.stat().st_size)
    if torchscript is not None:
        diff = export_torchscript(model, meta, torchscript)
        if diff > PARITY_TOLERANCE:
            raise RuntimeError(f"TorchScript/PyTorch parity failed: max diff {diff:.3g} > {PARITY_TOLERANCE}")
        log.info("exported", out=str(torchscript), format="torchscript", parity_max_diff=diff)
    return meta


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="spoofwatch export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path,
                        help="training checkpoint (.pt); without it, --out is an exported ONNX file to read")
    parser.add_argument("--out", required=True, type=Path, help="ONNX file to write (or to read, see --checkpoint)")
    parser.add_argument("--torchscript", type=Path, help="also write TorchScript here (daemon torch backend)")
    parser.add_argument("--triton", type=Path, metavar="DIR",
                        help="write a Triton model repository for the ONNX file here (docs/scale-out.md)")
    add_triton_arguments(parser, "triton-")
    args = parser.parse_args(argv)
    log_to_stderr()
    if args.checkpoint is None and args.triton is None:
        parser.error("give --checkpoint (export) and/or --triton (a repository for an exported --out)")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        parser.error(f"checkpoint {args.checkpoint} does not exist")
    if args.checkpoint is None and not args.out.is_file():
        parser.error(f"ONNX file {args.out} does not exist (export it first, with --checkpoint)")
    try:
        parse_instances(args.triton_instances)
    except ValueError as exc:
        parser.error(f"--triton-instances: {exc}")
    try:
        if args.checkpoint is not None:
            meta = export_checkpoint(args.checkpoint, args.out, args.torchscript)
        else:
            meta = read_onnx_metadata(args.out)
        report: dict[str, Any] = {"out": str(args.out), "model_id": meta.model_id,
                                  "size_bytes": args.out.stat().st_size}
        if args.triton is not None:
            report["triton_model"] = str(write_from_arguments(args, "triton-", args.out, meta, args.triton))
    except (ValueError, RuntimeError, SpoofwatchError) as exc:
        print(f"spoofwatch export: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
