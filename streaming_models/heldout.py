"""Build the held-out evaluation set the model card reports: LibriSpeech test-other (speakers
that never train) as is, through Lyra v2 (held-out-speaker neural-codec resynthesis), and
through telephone channels (the false-alarm check on genuine telephone speech).

    python -m streaming_models.heldout --out artifacts/heldout
    spoofwatch evaluate --model M.onnx --labels artifacts/heldout/labels.csv

Writes FLAC files and a `labels.csv` in the dev-eval format (`path,label,codec,system,corpus`;
codec is none, neural or telephony). Each utterance gets one Lyra bitrate and one telephone
chain, rotated over the utterances, so every variant is one third or one eighth of the set.
Transforms come from the corpus builder's registry (streaming_models/data/transforms).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from streaming_models.audio_io import load_audio
from streaming_models.data.transforms.base import TransformUnavailable
from streaming_models.data.transforms.registry import get_transform

RATE = 16000
LYRA = ("lyra@3.2k", "lyra@6k", "lyra@9.2k")
TELEPHONE = ("g711-mulaw", "g711-alaw", "gsm", "amr-nb@7.4k", "g726@32k", "opus@8k", "codec2@3200", "g722")


def shared_data() -> Path:
    default = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    return Path(os.environ.get("SPOOFWATCH_SHARED_DATA", default))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m streaming_models.heldout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for audio and labels.csv")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N utterances (0 = all 100)")
    args = parser.parse_args(argv)
    source = shared_data() / "speech" / "librispeech-subset" / "test-other"
    files = sorted(source.rglob("*.flac"))
    if not files:
        print(f"no LibriSpeech test-other audio under {source} (set SPOOFWATCH_SHARED_DATA)", file=sys.stderr)
        return 2
    files = files[: args.limit] if args.limit > 0 else files
    rng = np.random.default_rng(0)
    rows = ["path,label,codec,system,corpus"]
    for sub in ("clean", "lyra", "telephone"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    try:
        for k, path in enumerate(tqdm(files, desc="held-out set", unit="file")):
            audio = load_audio(path, RATE)
            variants = (("clean", "none", "human", audio),
                        ("lyra", "neural", LYRA[k % len(LYRA)], None),
                        ("telephone", "telephony", TELEPHONE[k % len(TELEPHONE)], None))
            for sub, codec, system, out in variants:
                out = out if out is not None else get_transform(system).apply(audio, rng)
                name = f"{sub}/{path.stem}.flac"
                sf.write(args.out / name, out, RATE)
                rows.append(f"{name},bonafide,{codec},{system},test-other-{sub}")
    except TransformUnavailable as exc:
        print(f"python -m streaming_models.heldout: {exc}", file=sys.stderr)
        return 2
    (args.out / "labels.csv").write_text("\n".join(rows) + "\n")
    print(f"{len(rows) - 1} files, labels in {args.out / 'labels.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
