"""Write a Triton Inference Server model repository for an exported detector (one .onnx file).

    spoofwatch export --out model.onnx --triton DIR [--triton-instances gpu:1,cpu:2]
    python -m streaming_models.triton_repository [--onnx model.onnx] --out DIR [--instances gpu:1]
                                                  (the same without torch, e.g. in the daemon image)

The graph is stateless with every recurrent state explicit (runtime/model_format.py), so the
repository declares the audio and each state as inputs and the logits and each state as outputs:
the daemon keeps every stream's state and sends it with each hop, and any instance of any Triton
server can score any hop of any stream. Names, shapes and dtypes come from the model's own
metadata; the per-stream dims are the ONNX graph's without its batch dimension (Triton adds it,
`max_batch_size` > 0). Dynamic batching takes its largest batch and queue delay from the daemon's
`[batching]` settings, so a Triton server batches like the in-process batcher would.

Two serving backends:
- `onnxruntime` (production): Triton's ONNX Runtime backend runs `1/model.onnx`, on GPU or CPU
  instances (`instance_group`).
- `python`: Triton's Python backend runs `1/model.py`, which runs the same `model.onnx` with the
  onnxruntime of the stub's Python. For Triton builds without the ONNX Runtime backend, such as the
  `tritonserver` bundled in the `nvidia-pytriton` wheel the tests use (tests/triton_server.py).

The model's metadata JSON travels in the config as the parameter `spoofwatch`, so a daemon on the
`triton` backend reads the sample rate, hop and states from the server it uses.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from streaming_models.runtime.default_model import DEFAULT_MODEL, find_model
from streaming_models.runtime.model_format import (
    AUDIO_INPUT,
    LOGITS_OUTPUT,
    METADATA_KEY,
    ModelMetadata,
)

ServingBackend = Literal["onnxruntime", "python"]
InstanceKind = Literal["gpu", "cpu"]
DEFAULT_MODEL_NAME = "spoofwatch"
MODEL_VERSION = "1"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dims: tuple[int, ...]  # per stream, without the batch dimension


@dataclass(frozen=True)
class TritonModelSpec:
    """Everything config.pbtxt says, derived from the model's metadata and the daemon's batching."""

    name: str
    metadata: ModelMetadata
    max_batch_size: int
    max_queue_delay_us: int
    instances: tuple[tuple[InstanceKind, int], ...]
    backend: ServingBackend = "onnxruntime"

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        meta = self.metadata
        return (TensorSpec(AUDIO_INPUT, (meta.hop_samples,)),
                *(TensorSpec(s.input_name, s.shape) for s in meta.states))

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        meta = self.metadata
        return (TensorSpec(LOGITS_OUTPUT, (len(meta.heads),)),
                *(TensorSpec(s.output_name, s.shape) for s in meta.states))


def parse_instances(text: str) -> tuple[tuple[InstanceKind, int], ...]:
    """`gpu:1,cpu:2` -> (("gpu", 1), ("cpu", 2)); a kind without a count means one instance."""
    groups: list[tuple[InstanceKind, int]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, count = part.partition(":")
        if kind not in ("gpu", "cpu"):
            raise ValueError(f"instance kind must be gpu or cpu, got {kind!r}")
        number = int(count) if count else 1
        if number < 1:
            raise ValueError(f"instance count must be >= 1, got {number}")
        groups.append((kind, number))  # type: ignore[arg-type]  # checked above
    if not groups:
        raise ValueError("name at least one instance group, e.g. gpu:1 or cpu:2")
    return tuple(groups)


def _quoted(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid protobuf text-format string


def _tensor_block(key: str, tensors: Sequence[TensorSpec]) -> list[str]:
    lines = [f"{key} ["]
    for i, tensor in enumerate(tensors):
        dims = ", ".join(str(d) for d in tensor.dims)
        comma = "," if i < len(tensors) - 1 else ""
        lines.append(f"  {{ name: {_quoted(tensor.name)} data_type: TYPE_FP32 dims: [ {dims} ] }}{comma}")
    lines.append("]")
    return lines


def config_pbtxt(spec: TritonModelSpec) -> str:
    """The model's config.pbtxt (protobuf text format of Triton's ModelConfig)."""
    lines = [f"name: {_quoted(spec.name)}", f"backend: {_quoted(spec.backend)}",
             f"max_batch_size: {spec.max_batch_size}"]
    lines += _tensor_block("input", spec.inputs)
    lines += _tensor_block("output", spec.outputs)
    lines += ["dynamic_batching {", f"  max_queue_delay_microseconds: {spec.max_queue_delay_us}", "}"]
    groups = [f"  {{ count: {count} kind: KIND_{kind.upper()} }}" for kind, count in spec.instances]
    lines += ["instance_group [", ",\n".join(groups), "]"]
    lines += ["parameters {", f"  key: {_quoted(METADATA_KEY)}",
              f"  value: {{ string_value: {_quoted(spec.metadata.to_json())} }}", "}"]
    return "\n".join(lines) + "\n"


PYTHON_MODEL = '''\
"""Triton Python-backend model: runs model.onnx (beside this file) with onnxruntime on CPU.

Written by spoofwatch (streaming_models/triton_repository.py). Triton's dynamic batcher hands
`execute` several requests; they are stacked into one onnxruntime call and cut back per request.
"""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.inputs = [tensor["name"] for tensor in config["input"]]
        self.outputs = [tensor["name"] for tensor in config["output"]]
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        path = Path(__file__).with_name("model.onnx")
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        feeds = [{name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.inputs}
                 for request in requests]
        sizes = [len(feed[self.inputs[0]]) for feed in feeds]
        batch = {name: np.concatenate([feed[name] for feed in feeds]).astype(np.float32, copy=False)
                 for name in self.inputs}
        results = self.session.run(self.outputs, batch)
        responses, start = [], 0
        for size in sizes:
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(result[start:start + size]))
                       for name, result in zip(self.outputs, results)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses
'''


def write_repository(onnx_path: Path, metadata: ModelMetadata, out_dir: Path, *,
                     model_name: str = DEFAULT_MODEL_NAME, max_batch_size: int = 64,
                     max_queue_delay_ms: float = 20.0,
                     instances: Sequence[tuple[InstanceKind, int]] = (("gpu", 1),),
                     backend: ServingBackend = "onnxruntime") -> Path:
    """`out_dir/<model_name>/{config.pbtxt, 1/model.onnx[, 1/model.py]}`; returns the model's folder."""
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    spec = TritonModelSpec(name=model_name, metadata=metadata, max_batch_size=max_batch_size,
                           max_queue_delay_us=round(max_queue_delay_ms * 1000), instances=tuple(instances),
                           backend=backend)
    model_dir = out_dir / model_name
    version_dir = model_dir / MODEL_VERSION
    version_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, version_dir / "model.onnx")
    if backend == "python":
        (version_dir / "model.py").write_text(PYTHON_MODEL)
    (model_dir / "config.pbtxt").write_text(config_pbtxt(spec))
    return model_dir


def read_onnx_metadata(onnx_path: Path) -> ModelMetadata:
    """The metadata of an exported model, checked against its graph (onnxruntime, CPU)."""
    import onnxruntime as ort

    from streaming_models.runtime.onnx_backend import read_metadata

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return read_metadata(session, onnx_path)


def daemon_batching(config_path: Path | None) -> tuple[int, float]:
    """[batching] max_batch and max_wait_ms of a daemon TOML, each the daemon's default when not set."""
    from streaming_models.runtime.settings import read_toml

    defaults = (64, 20.0)  # daemon/config.py BatchingConfig; a test holds them equal (this floor cannot import it)
    batching = read_toml(config_path).get("batching", {}) if config_path is not None else {}
    return int(batching.get("max_batch", defaults[0])), float(batching.get("max_wait_ms", defaults[1]))


def add_arguments(parser: argparse.ArgumentParser, prefix: str) -> None:
    """The repository's options, as `--<prefix>instances` etc. (prefix "triton-" in `spoofwatch export`)."""
    parser.add_argument(f"--{prefix}instances", default="gpu:1", metavar="KIND:COUNT,...",
                        help="Triton instance groups, gpu and/or cpu (default gpu:1)")
    parser.add_argument(f"--{prefix}backend", choices=("onnxruntime", "python"), default="onnxruntime",
                        help="Triton backend serving the model; python runs onnxruntime inside Triton's "
                             "Python backend, for servers built without the ONNX Runtime backend")
    parser.add_argument(f"--{prefix}model-name", default=DEFAULT_MODEL_NAME, help="the model's name in the repository")
    parser.add_argument(f"--{prefix}max-batch", type=int, metavar="N",
                        help="Triton's max_batch_size instead of the daemon's max_batch: larger lets its dynamic "
                             "batcher merge several daemons' batches into one GPU call (docs/scale-out.md)")
    parser.add_argument("--daemon-config", type=Path,
                        help="daemon TOML whose [batching] max_batch and max_wait_ms set Triton's dynamic "
                             "batching (default: the daemon's defaults)")


def write_from_arguments(args: argparse.Namespace, prefix: str, onnx_path: Path, metadata: ModelMetadata,
                         out_dir: Path) -> Path:
    options = vars(args)
    key = prefix.replace("-", "_")
    max_batch, max_wait_ms = daemon_batching(args.daemon_config)
    if options[f"{key}max_batch"] is not None:
        max_batch = options[f"{key}max_batch"]
    return write_repository(onnx_path, metadata, out_dir, model_name=options[f"{key}model_name"],
                            max_batch_size=max_batch, max_queue_delay_ms=max_wait_ms,
                            instances=parse_instances(options[f"{key}instances"]), backend=options[f"{key}backend"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streaming_models.triton_repository",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", default=DEFAULT_MODEL,
                        help=f"an exported model (.onnx); default: the packaged {DEFAULT_MODEL}, found from any folder")
    parser.add_argument("--out", required=True, type=Path, help="the model repository to write")
    add_arguments(parser, "")
    args = parser.parse_args(argv)
    onnx_path = find_model(args.onnx)
    if onnx_path is None:
        parser.error(f"model {args.onnx} not found")
    try:
        model_dir = write_from_arguments(args, "", onnx_path, read_onnx_metadata(onnx_path), args.out)
    except (ValueError, OSError) as exc:
        print(f"triton repository: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"triton_model": str(model_dir)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
