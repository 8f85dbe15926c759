"""onnxruntime backend: runs the exported ONNX graph (see model_format.py).

Synchronous and usable offline: the daemon's batcher and the offline tools drive it through the
same scorer (scorer.py), so offline scores go through exactly the code the daemon runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import structlog

from streaming_models.runtime.backend import check_inputs, sigmoid, zero_states
from streaming_models.runtime.errors import BackendError, ModelFormatError
from streaming_models.runtime.model_format import (
    AUDIO_INPUT,
    LOGITS_OUTPUT,
    METADATA_KEY,
    ModelMetadata,
)

log = structlog.get_logger(__name__)

DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def choose_providers(wanted: Sequence[str]) -> list[str]:
    """The wanted providers this onnxruntime build has, in the wanted order."""
    available = set(ort.get_available_providers())
    chosen = [p for p in wanted if p in available]
    if not chosen:
        raise BackendError(
            f"none of the providers {list(wanted)} is available in this onnxruntime "
            f"(available: {sorted(available)})"
        )
    return chosen


def open_session(path: Path, providers: Sequence[str], intra_op_threads: int,
                 kind: str = "ONNX model") -> tuple[ort.InferenceSession, list[str]]:
    """An onnxruntime session on `path` (one inter-op thread) with the wanted providers this build
    has, and those providers; `kind` names the file in errors."""
    if not path.is_file():
        raise BackendError(f"{kind} not found: {path}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    chosen = choose_providers(providers)
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=chosen), chosen
    except Exception as exc:  # onnxruntime raises its own untyped exceptions
        raise BackendError(f"onnxruntime could not load {kind} {path}: {exc}") from exc


def read_metadata(session: ort.InferenceSession, path: Path) -> ModelMetadata:
    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise ModelFormatError(f"{path}: ONNX metadata_props has no {METADATA_KEY!r} entry")
    meta = ModelMetadata.from_json(props[METADATA_KEY])
    inputs = {i.name for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    needed_in = {AUDIO_INPUT, *(s.input_name for s in meta.states)}
    needed_out = {LOGITS_OUTPUT, *(s.output_name for s in meta.states)}
    if missing := needed_in - inputs:
        raise ModelFormatError(f"{path}: graph lacks inputs {sorted(missing)} (has {sorted(inputs)})")
    if missing := needed_out - outputs:
        raise ModelFormatError(f"{path}: graph lacks outputs {sorted(missing)} (has {sorted(outputs)})")
    return meta


class OnnxBackend:
    def __init__(
        self,
        model_path: str | Path,
        providers: Sequence[str] = DEFAULT_PROVIDERS,
        intra_op_threads: int = 1,
    ) -> None:
        path = Path(model_path)
        self._session, self.providers = open_session(path, providers, intra_op_threads)
        self.metadata = read_metadata(self._session, path)
        self._output_names = [LOGITS_OUTPUT, *(s.output_name for s in self.metadata.states)]
        log.info("backend_loaded", backend="onnx", path=str(path), providers=self._session.get_providers(),
                 model_id=self.metadata.model_id)

    def initial_states(self, batch: int) -> list[np.ndarray]:
        return zero_states(self.metadata, batch)

    def run(self, audio: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        check_inputs(self.metadata, audio, states)
        feed = {AUDIO_INPUT: audio}
        for spec, state in zip(self.metadata.states, states, strict=True):
            feed[spec.input_name] = np.ascontiguousarray(state, dtype=np.float32)
        logits, *new_states = self._session.run(self._output_names, feed)
        return sigmoid(np.asarray(logits)[:, :2]), [np.asarray(s, dtype=np.float32) for s in new_states]
