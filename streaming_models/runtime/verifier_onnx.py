"""onnxruntime runner of an exported second-tier verifier (verifier_format.py): windows in,
probabilities out. Stateless, synchronous, usable offline; the daemon calls it from an executor.

Loading checks the file against the contract before anything is scored: the metadata entry, the
graph's one input `audio` [batch, samples] and its output `logits` [batch, 2], so a wrong file
fails at start with what is wrong rather than at the first window.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import structlog

from streaming_models.runtime.backend import sigmoid
from streaming_models.runtime.errors import BackendError, ModelFormatError
from streaming_models.runtime.model_format import METADATA_KEY
from streaming_models.runtime.onnx_backend import DEFAULT_PROVIDERS, open_session
from streaming_models.runtime.verifier_format import (
    VERIFIER_AUDIO_INPUT,
    VERIFIER_LOGITS_OUTPUT,
    VERIFIER_METADATA_KEY,
    VerifierMetadata,
)

log = structlog.get_logger(__name__)


def _describe(arg: ort.NodeArg) -> str:
    return f"{arg.name} {arg.type} {list(arg.shape)}"


def read_verifier_metadata(session: ort.InferenceSession, path: Path) -> VerifierMetadata:
    """The file's `VerifierMetadata`, after checking the graph's input and output against it."""
    props = session.get_modelmeta().custom_metadata_map
    if VERIFIER_METADATA_KEY not in props:
        hint = (f"; it has {METADATA_KEY!r}: a streaming detector (model.path), not a verifier"
                if METADATA_KEY in props else "; export it with streaming_models.verifier.model.export_onnx")
        raise ModelFormatError(f"{path}: ONNX metadata_props has no {VERIFIER_METADATA_KEY!r} entry{hint}")
    meta = VerifierMetadata.from_json(props[VERIFIER_METADATA_KEY])
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != [VERIFIER_AUDIO_INPUT]:
        raise ModelFormatError(f"{path}: a verifier takes one input {VERIFIER_AUDIO_INPUT!r} [batch, samples], "
                               f"the graph has {[_describe(i) for i in inputs]}")
    audio = inputs[0]
    if audio.type != "tensor(float)" or len(audio.shape) != 2:
        raise ModelFormatError(f"{path}: input must be float32 [batch, samples], got {_describe(audio)}")
    logits = next((o for o in outputs if o.name == VERIFIER_LOGITS_OUTPUT), None)
    if logits is None:
        raise ModelFormatError(f"{path}: graph lacks the output {VERIFIER_LOGITS_OUTPUT!r} "
                               f"(has {[o.name for o in outputs]})")
    width = logits.shape[-1] if len(logits.shape) == 2 else None
    if logits.type != "tensor(float)" or len(logits.shape) != 2 or (isinstance(width, int) and width != len(meta.heads)):
        raise ModelFormatError(f"{path}: output must be float32 [batch, {len(meta.heads)}] ({', '.join(meta.heads)}), "
                               f"got {_describe(logits)}")
    return meta


class OnnxVerifier:
    """`run(windows [B, samples]) -> probabilities [B, 2]` (spoof, codec) of an exported verifier."""

    def __init__(self, model_path: str | Path, providers: Sequence[str] = DEFAULT_PROVIDERS,
                 intra_op_threads: int = 1) -> None:
        path = Path(model_path)
        self._session, self.providers = open_session(path, providers, intra_op_threads, kind="verifier ONNX model")
        self.path = path
        self.metadata = read_verifier_metadata(self._session, path)
        log.info("verifier_loaded", path=str(path), providers=self._session.get_providers(),
                 model_id=self.metadata.model_id, window_s=self.metadata.window_s)

    def run(self, windows: np.ndarray) -> np.ndarray:
        """PROBABILITIES float32 [B, 2] (sigmoid of the logits) of windows float32 [B, samples]."""
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        if windows.ndim != 2 or windows.shape[1] == 0:
            raise ValueError(f"windows must be [batch, samples], got {list(windows.shape)}")
        (logits,) = self._session.run([VERIFIER_LOGITS_OUTPUT], {VERIFIER_AUDIO_INPUT: windows})
        logits = np.asarray(logits)
        if logits.shape != (windows.shape[0], len(self.metadata.heads)):
            raise BackendError(f"the verifier answered logits of shape {list(logits.shape)} for "
                               f"{windows.shape[0]} windows")
        return sigmoid(logits)
