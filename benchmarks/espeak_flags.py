"""Does a model flag rule-based synthesis at its own operating threshold? espeak-ng sentences scored
through the daemon's streaming path (hop cutting + ONNX backend), with the demo's genuine clip beside them.

    python benchmarks/espeak_flags.py --model runs/s15-rb5-graft/model.onnx
    python benchmarks/espeak_flags.py --model M.onnx --genuine ../shared/data/speech/librispeech-subset/test-other/1688/1688-142285-0000.flac

Renders the demo's spoof sentence (en-us, 150 wpm, as `spoofwatch demo` does) and three sentences in
each of four voices (speeds 140/150/160 wpm) with the Debian `espeak-ng` binary, then prints per file
the final and the peak p_spoof over its hops and whether the peak crosses the model's spoof threshold
(metadata; 0.5 when the model has none). Genuine files given with --genuine are printed the same way.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from streaming_models.evaluate import EvalItem, stream_scores
from streaming_models.runtime.onnx_backend import OnnxBackend

DEMO_SENTENCE = ("Hello, this is your bank calling. We noticed an unusual payment on your account. "
                 "Please confirm your card number so that we can stop it.")
SENTENCES = ("Please confirm the transfer of five thousand dollars to my savings account today.",
             "Hello, this is your bank calling about a suspicious payment on your card.",
             "The weather tomorrow will be cloudy with a chance of rain in the afternoon.")
VOICES = ("en", "en-gb-x-rp", "en-us", "en-us+f3")


def render(folder: Path) -> list[Path]:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit("espeak-ng is not installed (Debian package espeak-ng)")
    jobs = [("demo", "en-us", 150, DEMO_SENTENCE)] + [
        (f"{voice}_{i + 1}", voice, 140 + 10 * i, text) for voice in VOICES for i, text in enumerate(SENTENCES)]
    paths = []
    for name, voice, speed, text in jobs:
        path = folder / f"{name}.wav"
        subprocess.run([espeak, "-v", voice, "-s", str(speed), "-w", str(path), text], check=True,
                       capture_output=True, timeout=60)
        paths.append(path)
    return paths


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--genuine", type=Path, action="append", default=[], help="genuine files to print beside")
    args = parser.parse_args(argv)
    backend = OnnxBackend(args.model, providers=("CPUExecutionProvider",))
    threshold = backend.metadata.operating_thresholds.get("spoof", 0.5)
    with tempfile.TemporaryDirectory() as tmp:
        spoofs = render(Path(tmp))
        files = [(p, 1) for p in spoofs] + [(p, 0) for p in args.genuine]
        scores = stream_scores(backend, [EvalItem(p, y, 0, "espeak-ng" if y else "human", "none", "")
                                         for p, y in files], 16)
    print(f"{args.model}: spoof threshold {threshold:.3f}")
    flagged = 0
    for (path, spoof), s in zip(files, scores, strict=True):
        peak = float(s[:, 0].max())
        flagged += spoof and peak > threshold
        print(f"  {'spoof  ' if spoof else 'genuine'} {path.name:28s} final {s[-1, 0]:.3f} peak {peak:.3f}"
              f"{'  FLAGGED' if peak > threshold else ''}")
    print(f"espeak-ng files flagged: {flagged} of {len(spoofs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
