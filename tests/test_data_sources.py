"""Bonafide sources: shared-data corpora, Debian speech packages (parsed from a fake tree), errors."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streaming_models.data.plan import split_for_speaker, utterance_split
from streaming_models.data.sources import (
    SourceUnavailable,
    fetch_debian_package,
    load_source,
    source_names,
)


def test_librispeech_train_and_test_other(shared_data: Path) -> None:
    train = load_source("librispeech", shared_data)
    test = load_source("librispeech-test-other", shared_data)
    assert len(train) == 251 and len({u.speaker for u in train}) == 251
    assert len(test) == 100 and len({u.speaker for u in test}) == 10
    assert all(u.fixed_split == "test" and utterance_split(u, 0.5) == "test" for u in test)
    assert not {u.speaker for u in test} & {u.speaker for u in train}
    assert all(u.sample_rate_hz == 16000 and u.language == "en" and u.duration_s > 1 for u in train)


def test_fsdd_speakers(shared_data: Path) -> None:
    fsdd = load_source("fsdd", shared_data)
    assert len(fsdd) == 3000
    assert {u.speaker for u in fsdd} == {f"fsdd/{n}" for n in ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")}
    assert {u.sample_rate_hz for u in fsdd} == {8000}


def test_missing_shared_data_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="SPOOFWATCH_SHARED_DATA"):
        load_source("librispeech", tmp_path)
    with pytest.raises(ValueError, match="unknown bonafide source"):
        load_source("nosuch", tmp_path)


def _tone(path: Path, sr: int = 8000, seconds: float = 0.5) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.2 * np.sin(np.arange(int(sr * seconds)) * 0.1), sr)


def test_debian_packages_parse_speakers_and_languages(tmp_path: Path) -> None:
    """Readers on a tree laid out as the extracted packages are (a finished fetch is reused)."""
    sounds = tmp_path / "asterisk-core-sounds-es-wav" / "usr" / "share" / "asterisk" / "sounds"
    _tone(sounds / "es_MX_f_Allison" / "digits" / "1.wav")
    _tone(sounds / "es_MX_f_Allison" / "hello.wav")
    fillets = tmp_path / "fillets-ng-data-nl" / "usr" / "share" / "games" / "fillets-ng" / "sound"
    _tone(fillets / "city" / "nl" / "vit-m-hlava.ogg", 22050)
    _tone(fillets / "city" / "nl" / "vit-hs-klid1.ogg", 22050)
    _tone(tmp_path / "klettres-data" / "usr" / "share" / "klettres" / "en_GB" / "alpha" / "a.ogg", 22050)
    for name in ("asterisk-core-sounds-es-wav", "fillets-ng-data-nl", "klettres-data"):
        (tmp_path / name / ".complete").write_text("ok\n")
    asterisk = load_source("debian:asterisk-core-sounds-es-wav", debian_cache_dir=tmp_path)
    assert [(u.speaker, u.language) for u in asterisk] == [("asterisk/Allison", "es")] * 2
    assert len({u.utt_id for u in asterisk}) == 2
    fish = load_source("debian:fillets-ng-data-nl", debian_cache_dir=tmp_path)
    assert {u.speaker for u in fish} == {"fillets-nl/m", "fillets-nl/city-hs"}
    assert {u.language for u in fish} == {"nl"}
    letters = load_source("debian:klettres-data", debian_cache_dir=tmp_path)
    assert [(u.speaker, u.language) for u in letters] == [("klettres/en_GB", "en")]


def test_debian_fetch_without_apt_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SourceUnavailable, match="apt-get"):
        fetch_debian_package("klettres-data", tmp_path / "cache")


def test_source_names_and_split_hash() -> None:
    names = source_names()
    assert "librispeech" in names and "debian:asterisk-core-sounds-en-wav" in names
    assert "debian:codec2-examples" not in names  # codec2/HTS outputs, not genuine speech
    splits = [split_for_speaker(f"spk{i}", 0.2) for i in range(2000)]
    assert 0.17 < splits.count("dev") / len(splits) < 0.23
    assert split_for_speaker("spk1", 0.2) == split_for_speaker("spk1", 0.2)


def test_wideband_asterisk_prompts_are_decoded_from_g722_once(tmp_path: Path) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (scripts/system-packages.txt lists it)")
    package = "asterisk-core-sounds-en-g722"
    sounds = tmp_path / package / "usr" / "share" / "asterisk" / "sounds" / "en_US_f_Allison"
    tone = tmp_path / "tone.wav"
    sf.write(tone, 0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000), 16000)
    for name in ("digits/1.g722", "hello.g722"):
        (sounds / name).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(tone), "-ar", "16000", "-c:a", "g722",
                        "-f", "g722", str(sounds / name)], check=True)
    (tmp_path / package / ".complete").write_text("ok\n")
    prompts = load_source(f"debian:{package}", debian_cache_dir=tmp_path)
    assert sorted(u.utt_id for u in prompts) == [f"{package}-digits-1", f"{package}-hello"]
    assert {(u.speaker, u.language, u.sample_rate_hz) for u in prompts} == {("asterisk/Allison", "en", 16000)}
    decoded, rate = sf.read(prompts[0].path)
    assert rate == 16000 and abs(len(decoded) - 16000) < 400 and np.abs(decoded).max() > 0.2
    (sounds / "hello.g722").unlink()  # a finished decode is reused, not redone
    assert len(load_source(f"debian:{package}", debian_cache_dir=tmp_path)) == 2


def test_full_band_volunteer_recordings_keep_speech_only_and_drop_copies(tmp_path: Path) -> None:
    stamps = tmp_path / "tuxpaint-stamps-default" / "usr" / "share" / "tuxpaint" / "stamps"
    _tone(stamps / "animals" / "frog_desc.ogg", 44100)
    _tone(stamps / "animals" / "frog_desc_pt_BR.ogg", 44100, seconds=0.6)
    _tone(stamps / "animals" / "frog.ogg", 44100, seconds=0.7)  # the croak: a sound effect, not speech
    _tone(stamps / "shapes" / "star_desc_es.ogg", 44100, seconds=0.8)
    shutil.copy(stamps / "shapes" / "star_desc_es.ogg", stamps / "animals" / "star_desc_es.ogg")
    words = tmp_path / "ktuberling-data" / "usr" / "share" / "ktuberling" / "sounds"
    _tone(words / "sr" / "hat.ogg", 22050)
    (words / "sr@latin").mkdir()
    shutil.copy(words / "sr" / "hat.ogg", words / "sr@latin" / "hat.ogg")  # the same recording, Latin script
    _tone(words / "de" / "hat.ogg", 22050, seconds=0.9)
    for name in ("tuxpaint-stamps-default", "ktuberling-data"):
        (tmp_path / name / ".complete").write_text("ok\n")
    described = load_source("debian:tuxpaint-stamps-default", debian_cache_dir=tmp_path)
    assert sorted((u.speaker, u.language) for u in described) == [
        ("tuxpaint/en", "en"), ("tuxpaint/es", "es"), ("tuxpaint/pt", "pt")]
    assert all(u.sample_rate_hz == 44100 for u in described)
    spoken = load_source("debian:ktuberling-data", debian_cache_dir=tmp_path)
    assert sorted(u.speaker for u in spoken) == ["ktuberling/de", "ktuberling/sr"]
