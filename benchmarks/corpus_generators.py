"""Real-time factor of every corpus generator, one thread, as a builder worker runs it.

    OMP_NUM_THREADS=1 python benchmarks/corpus_generators.py [--items 3] [--families espeak,flite]

Prints, per family: seconds of audio made, wall seconds (after one warm-up call that
loads the engine), RTF = wall / audio, and for TTS the seconds of audio per text
character (the builder plans TTS hours with it). Needs ../shared/data for the
copy-synthesis families.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from streaming_models.data import texts
from streaming_models.data.generators import is_text_to_speech, list_families, make_generator
from streaming_models.data.sources import load_source


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=3)
    parser.add_argument("--families", default=",".join(list_families()))
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    rng = np.random.default_rng(0)
    cache = Path(__file__).resolve().parent.parent / ".cache" / "engines"
    parents = load_source("librispeech")[: args.items + 1]
    print(f"{'family':<12} {'audio_s':>8} {'wall_s':>8} {'rtf':>7} {'s/char':>7}")
    for family in args.families.split(","):
        generator = make_generator(family, cache)
        generator.check_available()
        audio_s = wall_s = chars = 0.0
        if is_text_to_speech(generator):
            voices = [v for v in generator.voices() if v.language in texts.languages()]  # type: ignore[union-attr]
            for i in range(args.items + 1):
                voice = voices[int(rng.integers(len(voices)))]
                pool = texts.sentences(voice.language)
                text = pool[int(rng.integers(len(pool)))]
                started = time.perf_counter()
                audio, sr = generator.synthesize(text, voice, rng)  # type: ignore[union-attr]
                if i:  # the first call loads the engine
                    wall_s += time.perf_counter() - started
                    audio_s += audio.size / sr
                    chars += len(text)
        else:
            for i, utt in enumerate(parents):
                x, sr = sf.read(str(utt.path), dtype="float32")
                x = x[: sr * 8]
                started = time.perf_counter()
                audio, out_sr = generator.resynthesize(x, sr, rng)  # type: ignore[union-attr]
                if i:
                    wall_s += time.perf_counter() - started
                    audio_s += audio.size / out_sr
        per_char = f"{audio_s / chars:7.4f}" if chars else "      -"
        print(f"{family:<12} {audio_s:8.1f} {wall_s:8.2f} {wall_s / audio_s:7.3f} {per_char}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
