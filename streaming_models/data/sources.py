"""Bonafide speech sources: shared-data corpora and Debian speech packages.

Each source lists `Utterance`s (path, speaker, language, native rate, duration).
Speaker ids carry the source prefix so that two corpora never share an id by
accident, except where one voice really spans packages (Allison speaks the
English and the Spanish Asterisk prompts, so both carry `asterisk/Allison`).
LibriSpeech test-other is pinned to the `test` split: its speakers never train.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
import structlog

from streaming_models.data.manifest import Split
from streaming_models.paths import debian_speech_cache_dir, shared_data_dir

log = structlog.get_logger(__name__)

_AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


class SourceUnavailable(RuntimeError):
    """A bonafide source is missing; the message says where it was looked for and how to get it."""


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    path: Path
    speaker: str
    language: str
    corpus: str
    sample_rate_hz: int
    duration_s: float
    fixed_split: Split | None = None  # set where the rules of use pin a split (LibriSpeech test-other)




def _info(path: Path) -> tuple[int, float]:
    info = sf.info(str(path))
    return int(info.samplerate), float(info.duration)


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise SourceUnavailable(
            f"{what} not found at {path}: set SPOOFWATCH_SHARED_DATA to the shared data folder "
            f"(see ../shared/data/README.md)"
        )
    return path


def librispeech_train(shared: Path) -> list[Utterance]:
    root = _require_dir(shared / "speech" / "librispeech-subset" / "train-clean-100", "LibriSpeech train-clean-100")
    out = []
    for path in sorted(root.rglob("*.flac")):
        sr, dur = _info(path)
        out.append(Utterance(f"librispeech-{path.stem}", path, f"librispeech/{path.stem.split('-')[0]}", "en",
                             "librispeech", sr, dur))
    return out


def librispeech_test_other(shared: Path) -> list[Utterance]:
    root = _require_dir(shared / "speech" / "librispeech-subset" / "test-other", "LibriSpeech test-other")
    out = []
    for path in sorted(root.rglob("*.flac")):
        sr, dur = _info(path)
        out.append(Utterance(f"librispeech-{path.stem}", path, f"librispeech/{path.stem.split('-')[0]}", "en",
                             "librispeech", sr, dur, fixed_split="test"))
    return out


def fsdd(shared: Path) -> list[Utterance]:
    root = _require_dir(shared / "speech" / "fsdd", "free-spoken-digit-dataset")
    out = []
    for path in sorted(root.glob("*.wav")):
        _digit, name, _ = path.stem.split("_")
        sr, dur = _info(path)
        out.append(Utterance(f"fsdd-{path.stem}", path, f"fsdd/{name}", "en", "fsdd", sr, dur))
    return out


# ---- Debian speech packages --------------------------------------------------------------------

def fetch_debian_package(name: str, cache_dir: Path) -> Path:
    """`apt-get download NAME` + `dpkg-deb -x` into cache_dir/NAME (no root needed); reused once complete."""
    target = Path(cache_dir) / name
    marker = target / ".complete"
    if marker.is_file():
        return target
    for tool, package in (("apt-get", "apt"), ("dpkg-deb", "dpkg")):
        if shutil.which(tool) is None:
            raise SourceUnavailable(f"`{tool}` (Debian package {package}) is needed to fetch the speech package {name}")
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{name}-", dir=cache_dir) as tmp:
        done = subprocess.run(["apt-get", "download", name], cwd=tmp, capture_output=True, text=True, check=False)
        debs = sorted(Path(tmp).glob("*.deb"))
        if done.returncode != 0 or not debs:
            raise SourceUnavailable(
                f"could not fetch the Debian package {name} (`apt-get download {name}` said: "
                f"{done.stderr.strip()[-300:]}); run `apt-get update` or drop it from the recipe"
            )
        extract = Path(tmp) / "root"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(extract)], check=True, capture_output=True)
        if target.exists():
            shutil.rmtree(target)
        extract.replace(target)
    marker.write_text("ok\n")
    log.info("debian_package_fetched", package=name, path=str(target))
    return target


def _audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in _AUDIO_SUFFIXES and p.is_file())


def _asterisk(package: str, cache_dir: Path) -> list[Utterance]:
    return _asterisk_prompts(package, fetch_debian_package(package, cache_dir))


def _asterisk_g722(package: str, cache_dir: Path) -> list[Utterance]:
    """The wideband (16 kHz) studio versions of the prompts, decoded once from raw G.722 to WAV.

    G.722 at 64 kbit/s is close to transparent below 7 kHz; like LibriSpeech's MP3 and Fillets'
    Vorbis origins, this coding at the source is not labelled as a channel.
    """
    return _asterisk_prompts(package, _decode_g722_tree(fetch_debian_package(package, cache_dir)))


def _decode_g722_tree(root: Path) -> Path:
    """Mirror every headerless .g722 file under root as a 16 kHz WAV under root-decoded (reused once complete)."""
    decoded = root.with_name(f"{root.name}-decoded")
    marker = decoded / ".complete"
    if marker.is_file():
        return decoded
    if shutil.which("ffmpeg") is None:
        raise SourceUnavailable(f"`ffmpeg` (Debian package ffmpeg) is needed to decode the G.722 prompts in {root}")
    for source in sorted(root.rglob("*.g722")):
        target = decoded / source.relative_to(root).with_suffix(".wav")
        target.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "g722",
                               "-i", str(source), "-ar", "16000", "-ac", "1", str(target)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SourceUnavailable(f"ffmpeg could not decode {source}: {done.stderr.strip()[-300:]}")
    marker.write_text("ok\n")
    return decoded


def _asterisk_prompts(package: str, root: Path) -> list[Utterance]:
    out = []
    sounds = root / "usr" / "share" / "asterisk" / "sounds"
    for path in _audio_files(sounds):
        if path.parent.name == "silence":  # silence/1.wav ... silence/10.wav hold no speech
            continue
        voice_dir = path.relative_to(sounds).parts[0]
        lang, _region, _gender, voice = voice_dir.split("_", 3)
        sr, dur = _info(path)
        stem = "-".join(path.relative_to(sounds / voice_dir).with_suffix("").parts)
        out.append(Utterance(f"{package}-{stem}", path, f"asterisk/{voice}", lang, package, sr, dur))
    return out


def _fillets(package: str, cache_dir: Path) -> list[Utterance]:
    root = fetch_debian_package(package, cache_dir)
    language = package.rsplit("-", 1)[1]
    out = []
    for path in _audio_files(root / "usr" / "share" / "games" / "fillets-ng" / "sound"):
        level = path.parent.parent.name
        tokens = path.stem.split("-")
        # The two fish (m = small, v = big) are the same two actors in every level; others are per level.
        role = tokens[1] if len(tokens) > 1 and tokens[1] in ("m", "v") else f"{level}-{tokens[1] if len(tokens) > 1 else 'x'}"
        sr, dur = _info(path)
        out.append(Utterance(f"{package}-{level}-{path.stem}", path, f"fillets-{language}/{role}", language,
                             package, sr, dur))
    return out


def _klettres(package: str, cache_dir: Path) -> list[Utterance]:
    root = fetch_debian_package(package, cache_dir)
    out = []
    base = root / "usr" / "share" / "klettres"
    for path in _audio_files(base):
        lang_dir = path.relative_to(base).parts[0]
        sr, dur = _info(path)
        stem = "-".join(path.relative_to(base).with_suffix("").parts)
        out.append(Utterance(f"klettres-{stem}", path, f"klettres/{lang_dir}", lang_dir.split("_")[0].lower(),
                             package, sr, dur))
    return out


def _pocketsphinx(package: str, cache_dir: Path) -> list[Utterance]:
    root = fetch_debian_package(package, cache_dir)
    out = []
    base = root / "usr" / "share" / "pocketsphinx" / "test" / "data"
    for path in sorted(base.rglob("*.wav")):
        sr, dur = _info(path)
        out.append(Utterance(f"pocketsphinx-{path.parent.name}-{path.stem}", path, f"pocketsphinx/{path.parent.name}",
                             "en", package, sr, dur))
    return out


def _first_of_each_recording(paths: list[Path]) -> list[Path]:
    """Drop byte-identical copies (both packages reuse one recording under several names)."""
    seen: set[str] = set()
    kept = []
    for path in paths:
        digest = hashlib.sha1(path.read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            kept.append(path)
    return kept


_TUXPAINT_DESCRIPTION = re.compile(r"_desc(?:_(?P<locale>[A-Za-z]{2,3}(?:_[A-Za-z]{2})?))?$")


def _tuxpaint(package: str, cache_dir: Path) -> list[Utterance]:
    """Tux Paint's spoken stamp descriptions: volunteers' full-band (44.1 kHz) home recordings.

    `NAME_desc.ogg` is English, `NAME_desc_LOCALE.ogg` the translation; the stamps' other sounds
    are effects, not speech. Each language was recorded by one or a few volunteers (the package
    changelog credits them per language), so the language stands for the speaker.
    """
    root = fetch_debian_package(package, cache_dir)
    out = []
    base = root / "usr" / "share" / "tuxpaint" / "stamps"
    described = [p for p in _audio_files(base) if _TUXPAINT_DESCRIPTION.search(p.stem)]
    for path in _first_of_each_recording(described):
        match = _TUXPAINT_DESCRIPTION.search(path.stem)
        assert match is not None
        lang = (match.group("locale") or "en").split("_")[0].lower()
        sr, dur = _info(path)
        stem = "-".join(path.relative_to(base).with_suffix("").parts)
        out.append(Utterance(f"tuxpaint-{stem}", path, f"tuxpaint/{lang}", lang, package, sr, dur))
    return out


def _ktuberling(package: str, cache_dir: Path) -> list[Utterance]:
    """KTuberling's spoken words (one folder per language, one or two voices each, 8-48 kHz).

    The Serbian script variants (sr@latin, sr@ijekavian...) reuse the sr recordings: copies go.
    """
    root = fetch_debian_package(package, cache_dir)
    out = []
    base = root / "usr" / "share" / "ktuberling" / "sounds"
    for path in _first_of_each_recording(_audio_files(base)):
        if len(path.relative_to(base).parts) != 2:  # sounds/LANG/WORD.ogg only
            continue
        lang = path.parent.name.split("@")[0].lower()
        sr, dur = _info(path)
        out.append(Utterance(f"ktuberling-{path.parent.name}-{path.stem}", path, f"ktuberling/{lang}", lang,
                             package, sr, dur))
    return out


# codec2-examples is left out on purpose: most of its clips are codec2 or HTS outputs, not genuine speech.
_DEBIAN_READERS: dict[str, Callable[[str, Path], list[Utterance]]] = {
    "asterisk-core-sounds-en-wav": _asterisk,
    "asterisk-core-sounds-en-g722": _asterisk_g722,
    "asterisk-core-sounds-es-wav": _asterisk,
    "asterisk-core-sounds-fr-wav": _asterisk,
    "asterisk-core-sounds-it-wav": _asterisk,
    "asterisk-core-sounds-ru-wav": _asterisk,
    "asterisk-prompt-it-menardi-wav": _asterisk,
    "fillets-ng-data-cs": _fillets,
    "fillets-ng-data-nl": _fillets,
    "klettres-data": _klettres,
    "ktuberling-data": _ktuberling,
    "pocketsphinx-testdata": _pocketsphinx,
    "tuxpaint-stamps-default": _tuxpaint,
}

_SHARED_READERS: dict[str, Callable[[Path], list[Utterance]]] = {
    "librispeech": librispeech_train,
    "librispeech-test-other": librispeech_test_other,
    "fsdd": fsdd,
}


def source_names() -> list[str]:
    return sorted(_SHARED_READERS) + [f"debian:{name}" for name in sorted(_DEBIAN_READERS)]


def load_source(name: str, shared_dir: Path | None = None, debian_cache_dir: Path | None = None) -> list[Utterance]:
    """All utterances of one source, sorted by id; raises SourceUnavailable naming what is missing."""
    if name in _SHARED_READERS:
        utterances = _SHARED_READERS[name](Path(shared_dir) if shared_dir else shared_data_dir())
    elif name.startswith("debian:") and name.removeprefix("debian:") in _DEBIAN_READERS:
        package = name.removeprefix("debian:")
        utterances = _DEBIAN_READERS[package](package, Path(debian_cache_dir or debian_speech_cache_dir()))
    else:
        raise ValueError(f"unknown bonafide source {name!r}; known: {source_names()}")
    if not utterances:
        raise SourceUnavailable(f"bonafide source {name!r} has no audio files")
    return sorted(utterances, key=lambda u: u.utt_id)
