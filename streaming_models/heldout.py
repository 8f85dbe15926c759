"""Build the held-out evaluation sets the model card and the label study report: LibriSpeech
test-other (speakers that never train) as is, through Lyra v2 (held-out-speaker neural-codec
resynthesis), through telephone channels (the false-alarm check on genuine telephone speech),
and, on request, through each in-house codec and the in-house vocoder (leave-one-codec-out).

    python -m streaming_models.heldout --out artifacts/heldout
    python -m streaming_models.heldout --out artifacts/heldout-inhouse \
        --variants clean,inhouse-comp6k,inhouse-istft,inhouse-token1k,inhouse-vocoder
    spoofwatch evaluate --model M.onnx --labels artifacts/heldout/labels.csv

Writes FLAC files and a `labels.csv` in the dev-eval format (`path,label,codec,system,corpus`;
codec is none, neural or telephony). Variants: `clean` (label bonafide, system human); `lyra` and
`telephone` give each utterance one Lyra bitrate / one telephone chain, rotated over the
utterances; an in-house codec spec (`inhouse-comp6k`, `inhouse-istft`, `inhouse-token1k`) is
applied to every utterance (bonafide, codec neural, system = the spec); `inhouse-vocoder` is the
vocoder's copy-synthesis of every utterance (spoof, codec none). Transforms come from the corpus
builder's registry (streaming_models/data/transforms); the in-house models from `--checkpoints`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from streaming_models.audio_io import load_audio
from streaming_models.data.transforms.base import TransformUnavailable
from streaming_models.data.transforms.registry import get_transform, trained_transforms
from streaming_models.paths import resynthesis_artifacts_dir, shared_data_dir

RATE = 16000
LYRA = ("lyra@3.2k", "lyra@6k", "lyra@9.2k")
TELEPHONE = ("g711-mulaw", "g711-alaw", "gsm", "amr-nb@7.4k", "g726@32k", "opus@8k", "codec2@3200", "g722")
DEFAULT_VARIANTS = ("clean", "lyra", "telephone")
VOCODER = "inhouse-vocoder"

# one variant of one utterance: (audio, index of the utterance) -> (audio, label, codec, system)
Variant = Callable[[np.ndarray, int], tuple[np.ndarray, str, str, str]]




def known_variants() -> list[str]:
    return [*DEFAULT_VARIANTS, *trained_transforms(), VOCODER]


def parse_variants(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in names if v not in known_variants()]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(f"--variants {text!r}: give distinct names from {', '.join(known_variants())}")
    return names


def _rotated(specs: tuple[str, ...], codec: str, rng: np.random.Generator) -> Variant:
    def variant(audio: np.ndarray, k: int) -> tuple[np.ndarray, str, str, str]:
        spec = specs[k % len(specs)]
        return get_transform(spec).apply(audio, rng), "bonafide", codec, spec
    return variant


def _inhouse_codec(spec: str, checkpoints: Path, rng: np.random.Generator) -> Variant:
    from streaming_models.resynthesis.plugins import CODEC_TRANSFORMS

    by_spec = {cls().codec_family: cls for cls in CODEC_TRANSFORMS}
    cls = by_spec[spec]
    transform = cls(checkpoints / cls.model_name / "model.pt")
    transform.check_available()

    def variant(audio: np.ndarray, k: int) -> tuple[np.ndarray, str, str, str]:
        return transform.apply(audio, rng), "bonafide", "neural", spec
    return variant


def _inhouse_vocoder(checkpoints: Path, rng: np.random.Generator) -> Variant:
    from streaming_models.resynthesis.plugins import InhouseVocoderGenerator

    vocoder = InhouseVocoderGenerator(checkpoints / InhouseVocoderGenerator.model_name / "model.pt")
    vocoder.check_available()

    def variant(audio: np.ndarray, k: int) -> tuple[np.ndarray, str, str, str]:
        return vocoder.resynthesize(audio, RATE, rng)[0], "spoof", "none", VOCODER
    return variant


def make_variants(names: list[str], checkpoints: Path) -> dict[str, Variant]:
    """Every variant ready to run; raises TransformUnavailable (naming the fix) before any audio is made."""
    # Lyra and telephone share one stream, as the first version of this set did (same files); the
    # in-house models get their own, so adding them changes nothing in the default set.
    rng, inhouse_rng = np.random.default_rng(0), np.random.default_rng(1)
    variants: dict[str, Variant] = {}
    for name in names:
        if name == "clean":
            variants[name] = lambda audio, k: (audio, "bonafide", "none", "human")
        elif name == "lyra":
            variants[name] = _rotated(LYRA, "neural", rng)
        elif name == "telephone":
            variants[name] = _rotated(TELEPHONE, "telephony", rng)
        elif name == VOCODER:
            variants[name] = _inhouse_vocoder(checkpoints, inhouse_rng)
        else:
            variants[name] = _inhouse_codec(name, checkpoints, inhouse_rng)
    return variants


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m streaming_models.heldout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for audio and labels.csv")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N utterances (0 = all 100)")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help=f"comma-separated, from: {', '.join(known_variants())} (default: %(default)s)")
    parser.add_argument("--checkpoints", type=Path, default=resynthesis_artifacts_dir(),
                        help="folder of the in-house models, NAME/model.pt (default: artifacts/resynthesis "
                             "in the working directory)")
    args = parser.parse_args(argv)
    try:
        names = parse_variants(args.variants)
    except ValueError as exc:
        parser.error(str(exc))
    source = shared_data_dir() / "speech" / "librispeech-subset" / "test-other"
    files = sorted(source.rglob("*.flac"))
    if not files:
        print(f"no LibriSpeech test-other audio under {source} (set SPOOFWATCH_SHARED_DATA)", file=sys.stderr)
        return 2
    files = files[: args.limit] if args.limit > 0 else files
    rows = ["path,label,codec,system,corpus"]
    try:
        variants = make_variants(names, args.checkpoints)
        for sub in names:
            (args.out / sub).mkdir(parents=True, exist_ok=True)
        for k, path in enumerate(tqdm(files, desc="held-out set", unit="file")):
            audio = load_audio(path, RATE)
            for sub, variant in variants.items():
                out, label, codec, system = variant(audio, k)
                name = f"{sub}/{path.stem}.flac"
                sf.write(args.out / name, out, RATE)
                rows.append(f"{name},{label},{codec},{system},test-other-{sub}")
    except TransformUnavailable as exc:
        print(f"python -m streaming_models.heldout: {exc}", file=sys.stderr)
        return 2
    (args.out / "labels.csv").write_text("\n".join(rows) + "\n")
    print(f"{len(rows) - 1} files, labels in {args.out / 'labels.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
