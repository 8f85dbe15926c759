"""torch backend: runs a TorchScript export of the detector on CPU or CUDA.

Why TorchScript: the daemon must not import the training code, and running the ONNX
graph is not torch. A TorchScript file is self-contained and carries the same
`ModelMetadata` JSON as an extra file named `spoofwatch` (save it with
`torch.jit.save(module, path, _extra_files={"spoofwatch": metadata.to_json()})`).
Its `forward(audio, *states) -> (logits, *new_states)` follows model_format.py.
torch is imported lazily, so `serve` with the onnx backend never loads it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from streaming_models.runtime.backend import check_inputs, sigmoid, zero_states
from streaming_models.runtime.errors import BackendError, ModelFormatError
from streaming_models.runtime.model_format import METADATA_KEY, ModelMetadata

log = structlog.get_logger(__name__)


class TorchBackend:
    def __init__(self, model_path: str | Path, device: str = "auto", intra_op_threads: int = 1) -> None:
        try:
            import torch
        except ImportError as exc:
            raise BackendError("the torch backend needs torch (pip install 'spoofwatch[train]')") from exc
        path = Path(model_path)
        if not path.is_file():
            raise BackendError(f"TorchScript model not found: {path}")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendError("model.torch_device is cuda but torch sees no CUDA device")
        if intra_op_threads > 0 and device == "cpu":
            torch.set_num_threads(intra_op_threads)
        extra = {METADATA_KEY: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript: deprecated in 2.13, works
                self._module: Any = torch.jit.load(str(path), map_location=device, _extra_files=extra)
        except RuntimeError as exc:
            raise BackendError(f"torch could not load {path} as TorchScript: {exc}") from exc
        if not extra[METADATA_KEY]:
            raise ModelFormatError(f"{path}: TorchScript file has no {METADATA_KEY!r} extra file")
        self.metadata = ModelMetadata.from_json(extra[METADATA_KEY])
        self._module.eval()
        self._torch = torch
        self._device = torch.device(device)
        log.info("backend_loaded", backend="torch", path=str(path), device=device,
                 model_id=self.metadata.model_id)

    def initial_states(self, batch: int) -> list[np.ndarray]:
        return zero_states(self.metadata, batch)

    def run(self, audio: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        check_inputs(self.metadata, audio, states)
        torch = self._torch
        with torch.inference_mode():
            args = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self._device)
                    for a in (audio, *states)]
            logits, *new_states = self._module(*args)
            logits_np = logits.float().cpu().numpy()
            states_np = [s.float().cpu().numpy() for s in new_states]
        return sigmoid(logits_np[:, :2]), states_np
