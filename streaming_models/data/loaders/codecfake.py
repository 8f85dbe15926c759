"""CodecDeepfakeDetection (CDD, "How to Label Resynthesized Audio", ICASSP 2026) -> manifest items.

Layout (the dataset README, zenodo record 17225924):

    ROOT/asvspoof5/flac_{T,D,E}/*.flac            bonafide ASVspoof 5 speech (train/dev/eval)
    ROOT/CoRS_{train,dev,test}/<Codec>/*.wav      bonafide speech resynthesized by a neural codec
                                                 (DescriptAudioCodec, EnCodecVocos, Mimi, XCodec2)
    ROOT/CoSG/...                                 spoofs from codec-based zero-shot TTS

Labels: asvspoof5 -> bonafide, no codec. CoRS -> bonafide source, neural codec, family and
objective from the codec folder (loaders/codecs.py; DAC and EnCodec compression, Mimi and XCodec2
synthesis), parent = the ASVspoof 5 utterance with the same file stem. CoSG -> spoof, neural codec,
objective synthesis, generator = the attacker folder. CoSG's inner layout is not fixed by the
README: a path component naming a split (train/dev/test/eval) gives the split, the first other
component the attacker; files with no split component are rejected with a clear error.
Speakers come from ASVspoof 5 protocol TSVs when present under ROOT (see asvspoof5.py).
"""

from __future__ import annotations

import re
from pathlib import Path

from streaming_models.data.loaders.asvspoof5 import speaker_map
from streaming_models.data.loaders.codecs import codec_family, codec_objective
from streaming_models.data.loaders.common import LoaderError, audio_files
from streaming_models.data.manifest import CorpusItem, Split

BONAFIDE_DIRS: dict[str, Split] = {"flac_T": "train", "flac_D": "dev", "flac_E": "test", "flac_E_eval": "test"}
SPLIT_WORDS: dict[str, Split] = {"train": "train", "dev": "dev", "valid": "dev", "test": "test", "eval": "test"}
CORPUS = "cdd"


def load_codecfake(root: Path) -> list[CorpusItem]:
    root = Path(root).resolve()
    if not root.is_dir():
        raise LoaderError(f"{root} is not a folder")
    speakers = speaker_map(root) or speaker_map(root / "asvspoof5")
    items = _bonafide(root / "asvspoof5", speakers)
    bonafide_ids = {Path(item.path).stem for item in items}
    items += _cors(root, speakers, bonafide_ids)
    items += _cosg(root / "CoSG")
    if not items:
        raise LoaderError(f"{root}: no asvspoof5/flac_*, CoRS_* or CoSG audio found (CodecDeepfakeDetection layout)")
    return items


def _bonafide(folder: Path, speakers: dict[str, str]) -> list[CorpusItem]:
    items = []
    for name, split in BONAFIDE_DIRS.items():
        for path in audio_files(folder / name) if (folder / name).is_dir() else []:
            items.append(CorpusItem(
                path=str(path), source="bonafide", generator="human", speaker=speakers.get(path.stem, "unknown"),
                language="en", split=split, corpus=CORPUS, item_id=f"{CORPUS}:asvspoof5:{path.stem}",
            ))
    return items


def _cors(root: Path, speakers: dict[str, str], bonafide_ids: set[str]) -> list[CorpusItem]:
    items = []
    for split_dir in sorted(root.glob("CoRS_*")):
        split = SPLIT_WORDS.get(split_dir.name.removeprefix("CoRS_").lower())
        if split is None or not split_dir.is_dir():
            raise LoaderError(f"{split_dir}: expected CoRS_train, CoRS_dev or CoRS_test")
        for codec_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            family = codec_family(codec_dir.name)
            for path in audio_files(codec_dir):
                items.append(CorpusItem(
                    path=str(path), source="bonafide", generator="human", codec="neural",
                    codec_family=family, codec_objective=codec_objective(family), channel=(codec_dir.name,),
                    speaker=speakers.get(path.stem, "unknown"), language="en", split=split, corpus=CORPUS,
                    parent=f"{CORPUS}:asvspoof5:{path.stem}" if path.stem in bonafide_ids else None,
                    item_id=f"{CORPUS}:cors:{codec_dir.name}:{path.stem}",
                ))
    return items


def _cosg(folder: Path) -> list[CorpusItem]:
    if not folder.is_dir():
        return []
    items = []
    for path in audio_files(folder):
        parts = path.relative_to(folder).parts[:-1]
        splits = [SPLIT_WORDS[w] for w in (_split_word(p) for p in parts) if w is not None]
        if not splits:
            raise LoaderError(f"{path}: no train/dev/test folder in its path under CoSG/, cannot assign a split")
        others = [p for p in parts if _split_word(p) is None]
        attacker = others[0] if others else "unknown"
        items.append(CorpusItem(
            path=str(path), source="spoof", generator=attacker, codec="neural", codec_family="unknown",
            codec_objective="synthesis", language="en", split=splits[0], corpus=CORPUS,
            item_id=f"{CORPUS}:cosg:{attacker}:{path.stem}",
        ))
    return items


def _split_word(component: str) -> str | None:
    """"train", "CoSG_dev", "test-set" -> the split word; anything else -> None."""
    for word in re.split(r"[^a-z]+", component.lower()):
        if word in SPLIT_WORDS:
            return word
    return None
