"""Triton backend: each batch goes to a Triton Inference Server over gRPC, states and all.

The repository comes from `spoofwatch export --triton DIR` (streaming_models/triton_repository.py):
the audio and every recurrent state are inputs, the logits and every new state outputs. The daemon
keeps each stream's state and sends it with the hop, so the server holds nothing per stream; any
endpoint can score any hop, and a hop retried on another endpoint after a failure is scored from the
same state, its result written back once (the scorer writes states only from a successful call).

The client is tritonclient's synchronous gRPC client, on purpose: a Backend is synchronous and the
daemon's batcher already calls it in its one inference thread (run_in_executor), where a blocking
network wait releases the GIL and never holds the event loop. The asyncio client would need the
Backend protocol and the scorer made async for no gain: the batcher runs one batch at a time.

The model's metadata (rate, hop, states, thresholds) is read from the served model's config
(parameter `spoofwatch`), so the daemon needs no local copy of the model; given one (`fallback`),
a batch that no endpoint could score runs in-process instead, when the operator asked for that.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from streaming_models.runtime.backend import Backend, check_inputs, sigmoid, zero_states
from streaming_models.runtime.errors import BackendError, ModelFormatError
from streaming_models.runtime.model_format import (
    AUDIO_INPUT,
    LOGITS_OUTPUT,
    METADATA_KEY,
    ModelMetadata,
)

log = structlog.get_logger(__name__)

DEFAULT_MODEL_NAME = "spoofwatch"


def _grpc() -> Any:
    try:
        import tritonclient.grpc as grpcclient
    except ImportError as exc:
        raise BackendError("the triton backend needs tritonclient: pip install 'spoofwatch[triton]'") from exc
    return grpcclient


def metadata_from_config(config: dict[str, Any], where: str) -> ModelMetadata:
    """The `spoofwatch` parameter of a served model's config (JSON form), checked against its tensors."""
    raw = config.get("parameters", {}).get(METADATA_KEY, {}).get("string_value")
    if not raw:
        raise ModelFormatError(f"{where}: the model's config has no {METADATA_KEY!r} parameter "
                               "(make the repository with `spoofwatch export --triton`)")
    meta = ModelMetadata.from_json(raw)
    inputs = {t["name"] for t in config.get("input", [])}
    outputs = {t["name"] for t in config.get("output", [])}
    if missing := {AUDIO_INPUT, *(s.input_name for s in meta.states)} - inputs:
        raise ModelFormatError(f"{where}: the model lacks inputs {sorted(missing)}")
    if missing := {LOGITS_OUTPUT, *(s.output_name for s in meta.states)} - outputs:
        raise ModelFormatError(f"{where}: the model lacks outputs {sorted(missing)}")
    return meta


class TritonBackend:
    def __init__(self, model_path: str | Path | None = None, *,
                 endpoints: Sequence[str] = ("127.0.0.1:8001",), model_name: str = DEFAULT_MODEL_NAME,
                 timeout_s: float = 1.0, retries: int = 1, fallback: Backend | None = None) -> None:
        if not endpoints:
            raise BackendError("the triton backend needs at least one endpoint (model.triton_endpoints)")
        grpcclient = _grpc()
        self._errors: tuple[type[BaseException], ...] = (grpcclient.InferenceServerException,)
        self._grpc = grpcclient
        self.endpoints = tuple(endpoints)
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.retries = retries
        self.fallback = fallback
        self._clients = [grpcclient.InferenceServerClient(url=endpoint) for endpoint in self.endpoints]
        self._current = 0  # the endpoint that answered last; tried first
        self.metadata = self._read_metadata()
        if fallback is not None and fallback.metadata.model_id != self.metadata.model_id:
            raise BackendError(f"the fallback model {fallback.metadata.model_id!r} ({model_path}) is not the "
                               f"model Triton serves ({self.metadata.model_id!r})")
        self._output_names = [LOGITS_OUTPUT, *(s.output_name for s in self.metadata.states)]
        log.info("backend_loaded", backend="triton", endpoints=list(self.endpoints), model=model_name,
                 model_id=self.metadata.model_id, fallback=fallback is not None)

    def _read_metadata(self) -> ModelMetadata:
        failures = []
        for index, client in enumerate(self._clients):
            where = f"triton {self.endpoints[index]} model {self.model_name!r}"
            try:
                config = client.get_model_config(self.model_name, as_json=True,
                                                 client_timeout=self.timeout_s)["config"]
            except self._errors as exc:
                failures.append(f"{self.endpoints[index]}: {_reason(exc)}")
                continue
            self._current = index
            return metadata_from_config(config, where)
        raise BackendError(f"Triton is not reachable (model {self.model_name!r}): " + "; ".join(failures))

    def initial_states(self, batch: int) -> list[np.ndarray]:
        return zero_states(self.metadata, batch)

    def run(self, audio: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        check_inputs(self.metadata, audio, states)
        inputs = [self._input(AUDIO_INPUT, audio)]
        inputs += [self._input(spec.input_name, state) for spec, state in zip(self.metadata.states, states, strict=True)]
        outputs = [self._grpc.InferRequestedOutput(name) for name in self._output_names]
        failures = []
        for attempt in range(self.retries + 1):
            index = (self._current + attempt) % len(self._clients)
            try:
                result = self._clients[index].infer(self.model_name, inputs, outputs=outputs,
                                                    client_timeout=self.timeout_s)
            except self._errors as exc:
                failures.append(f"{self.endpoints[index]}: {_reason(exc)}")
                log.warning("triton_call_failed", endpoint=self.endpoints[index], attempt=attempt + 1,
                            error=_reason(exc))
                continue
            self._current = index
            logits, *new_states = (np.asarray(result.as_numpy(name), dtype=np.float32) for name in self._output_names)
            return sigmoid(logits[:, :2]), new_states
        if self.fallback is not None:
            log.warning("triton_fallback_in_process", failures=failures)
            return self.fallback.run(audio, states)
        raise BackendError(f"Triton could not score the batch after {self.retries + 1} attempt(s): "
                           + "; ".join(failures))

    def _input(self, name: str, array: np.ndarray) -> Any:
        array = np.ascontiguousarray(array, dtype=np.float32)
        tensor = self._grpc.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        return tensor

    def close(self) -> None:
        for client in self._clients:
            client.close()


def _reason(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    message = getattr(exc, "message", None)
    text = message() if callable(message) else str(exc)
    code = status() if callable(status) else None
    return f"{code}: {text}" if code else text
