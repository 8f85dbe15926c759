"""ASVspoof 5 (track 1): protocol TSV files + flac folders -> manifest items.

Layout (ASVspoof5 README; ASVspoof5_protocols.tar.gz unpacked in ROOT or ROOT/ASVspoof5_protocols):

    ROOT/ASVspoof5.train.tsv          + ROOT/flac_T/T_*.flac        -> split train
    ROOT/ASVspoof5.dev.track_1.tsv    + ROOT/flac_D/D_*.flac        -> split dev
    ROOT/ASVspoof5.eval.track_1.tsv   + ROOT/flac_E_eval/E_*.flac   -> split test (or flac_E)

Protocol lines are whitespace-separated, 10 columns:

    SPEAKER_ID FLAC_FILE_NAME SPEAKER_GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY TMP

KEY is bonafide/spoof; ATTACK_LABEL is the attack system (A01..A32); CODEC is "-" (none) or
C01..C11. C04 and C07 are EnCodec conditions (neural codec, compression); the other codes are
classical codecs / transmission conditions, labelled telephony. "-" fields are "not applicable".
"""

from __future__ import annotations

from pathlib import Path

from streaming_models.data.loaders.common import LoaderError
from streaming_models.data.manifest import CorpusItem, Split

NUM_COLUMNS = 10
COLUMNS = ("SPEAKER_ID", "FLAC_FILE_NAME", "SPEAKER_GENDER", "CODEC", "CODEC_Q", "CODEC_SEED",
           "ATTACK_TAG", "ATTACK_LABEL", "KEY", "TMP")
# (protocol file, candidate audio folders, split)
PARTITIONS: tuple[tuple[str, tuple[str, ...], Split], ...] = (
    ("ASVspoof5.train.tsv", ("flac_T",), "train"),
    ("ASVspoof5.dev.track_1.tsv", ("flac_D",), "dev"),
    ("ASVspoof5.eval.track_1.tsv", ("flac_E_eval", "flac_E"), "test"),
)
NEURAL_CODECS = {"C04": "encodec", "C07": "encodec"}  # C07 is MP3 followed by EnCodec
TELEPHONY_CODECS = {"C01": "opus", "C02": "amr", "C03": "speex", "C05": "mp3", "C06": "aac",
                    "C08": "opus", "C09": "amr", "C10": "speex"}


def load_asvspoof5(root: Path) -> list[CorpusItem]:
    root = Path(root).resolve()
    items: list[CorpusItem] = []
    found = []
    for protocol_name, audio_dirs, split in PARTITIONS:
        protocol = _find(root, protocol_name)
        if protocol is None:
            continue
        audio_dir = next((root / d for d in audio_dirs if (root / d).is_dir()), root / audio_dirs[0])
        found.append(protocol_name)
        items.extend(parse_protocol(protocol, audio_dir, split))
    if not found:
        names = ", ".join(p for p, _, _ in PARTITIONS)
        raise LoaderError(f"no ASVspoof 5 protocol file ({names}) in {root} or {root}/ASVspoof5_protocols")
    return items


def parse_protocol(protocol: Path, audio_dir: Path, split: Split) -> list[CorpusItem]:
    items = []
    with protocol.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) < NUM_COLUMNS - 1:  # TMP may be absent
                raise LoaderError(f"{protocol}:{lineno}: expected {NUM_COLUMNS} columns "
                                  f"({' '.join(COLUMNS)}), got {len(fields)}")
            row = dict(zip(COLUMNS, fields, strict=False))
            items.append(_item(row, audio_dir, split, f"{protocol}:{lineno}"))
    return items


def _item(row: dict[str, str], audio_dir: Path, split: Split, where: str) -> CorpusItem:
    key = row["KEY"]
    if key not in ("bonafide", "spoof"):
        raise LoaderError(f"{where}: KEY must be bonafide or spoof, got {key!r}")
    code = row["CODEC"]
    channel: tuple[str, ...]
    if code == "-":
        codec, family, objective, channel = "none", "none", "none", ()
    elif code in NEURAL_CODECS:
        codec, family, objective, channel = "neural", NEURAL_CODECS[code], "compression", (f"asvspoof5-{code}",)
    else:
        codec, family = "telephony", TELEPHONY_CODECS.get(code, f"asvspoof5-{code.lower()}")
        objective, channel = "compression", (f"asvspoof5-{code}",)
    attack = row["ATTACK_LABEL"]
    generator = "human" if key == "bonafide" else (attack if attack not in ("-", "spoof") else "unknown")
    extra = {name.lower(): row[name] for name in ("SPEAKER_GENDER", "CODEC", "CODEC_Q", "CODEC_SEED",
                                                  "ATTACK_TAG") if row.get(name, "-") != "-"}
    file_id = row["FLAC_FILE_NAME"]
    return CorpusItem(
        path=str(audio_dir / f"{file_id}.flac"), source=key, generator=generator,  # type: ignore[arg-type]
        codec=codec, codec_family=family, codec_objective=objective,  # type: ignore[arg-type]
        channel=channel, speaker=row["SPEAKER_ID"], language="en", split=split, corpus="asvspoof5",
        item_id=f"asvspoof5:{file_id}", extra=extra,
    )


def _find(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root / "ASVspoof5_protocols" / name, root / "protocols" / name):
        if candidate.is_file():
            return candidate
    return None


def speaker_map(root: Path) -> dict[str, str]:
    """FLAC_FILE_NAME -> SPEAKER_ID from whatever ASVspoof 5 protocols sit under root."""
    mapping: dict[str, str] = {}
    for protocol_name, _, _ in PARTITIONS:
        protocol = _find(root, protocol_name)
        if protocol is None:
            continue
        with protocol.open(encoding="utf-8") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) >= 2:
                    mapping[fields[1]] = fields[0]
    return mapping
