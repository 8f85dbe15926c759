"""`spoofwatch data import-public` on tiny git repositories the tests build."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streaming_models.data.manifest import read_manifest
from streaming_models.data.public.cli import main_import_public
from streaming_models.data.public.decode import decode
from streaming_models.data.public.dedupe import Copy, DuplicateIndex
from streaming_models.data.public.registry import glob_to_regex, load_registry
from streaming_models.runtime.settings import ConfigError

RATE = 22050


def _speechlike(seed: int, seconds: float = 1.5, rate: int = RATE) -> np.ndarray:
    """Noise bursts under a syllable-rate envelope: distinct per seed, like speech is per sentence."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6) * t + rng.uniform(0, 6))
    return (0.3 * envelope * rng.standard_normal(t.size)).astype(np.float32)


def _wav(audio: np.ndarray, rate: int = RATE) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _ffmpeg(data: bytes, fmt: str, *codec: str) -> bytes:
    return subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", *codec, "-f", fmt, "pipe:1"], input=data,
                          capture_output=True, check=True).stdout


def _git_repo(root: Path, files: dict[str, bytes]) -> str:
    root.mkdir(parents=True)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(root), "PATH": "/usr/bin:/bin"}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "samples"]):
        subprocess.run(["git", *args], cwd=root, check=True, env=env)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    """Two demo repositories, a reserved md5 list and a registry."""
    gt1, gt2, reserved_clip = _speechlike(1), _speechlike(2), _speechlike(3)
    demo_files = {
        "gt/s1.wav": _wav(gt1), "gt/s2.wav": _wav(gt2), "gt/s1_again.wav": _wav(gt1),
        "hifigan/s1.wav": _wav(_speechlike(11)), "hifigan/s2.wav": _wav(_speechlike(12)),
        "encodec/s1.wav": _wav(_speechlike(21)),
        "baseline/s1.m4a": _ffmpeg(_wav(_speechlike(31)), "mp4", "-c:a", "aac", "-b:a", "96k", "-movflags", "frag_keyframe+empty_moov"),
        "comparison/ns2.wav": _wav(reserved_clip), "comparison/ours.wav": _wav(_speechlike(41)),
        "singing/a.wav": _wav(_speechlike(51)),
        "index.html": b"<html></html>",
    }
    other_files = {  # a re-encoded copy of demo's gt/s1 and a clip of its own
        "samples/copy.mp3": _ffmpeg(demo_files["gt/s1.wav"], "mp3", "-b:a", "128k"),
        "samples/own.wav": _wav(_speechlike(61), 16000),
        "samples/forgotten.flac": b"",
    }
    mirror = tmp_path / "mirror"
    demo_commit = _git_repo(mirror / "acme+demo", demo_files)
    other_commit = _git_repo(mirror / "other" / "page", other_files)
    reserved = tmp_path / "reserved.txt"
    reserved.write_text(hashlib.md5(demo_files["comparison/ns2.wav"]).hexdigest() + "\n")
    registry = tmp_path / "registry"
    registry.mkdir()
    (registry / "acme__demo.toml").write_text(f'''
repo = "acme/demo"
commit = "{demo_commit}"
ref = "main"
licence = "test"
language = "en"

[[rule]]
glob = "gt/*.wav"
source = "bonafide"
pair = '/(s\\d)\\.'

[[rule]]
glob = "hifigan/*.wav"
source = "spoof"
generator = "hifigan"
family = "gan-vocoder"
pair = '/(s\\d)\\.'

[[rule]]
glob = "encodec/*.wav"
source = "bonafide"
codec = "neural"
codec_family = "encodec"
pair = '/(s\\d)\\.'

[[rule]]
glob = ["baseline/*.m4a", "comparison/*.wav"]
source = "spoof"
generator = "baseline-tts"
family = "acoustic-tts"
language = "de"

[[rule]]
glob = "singing/**"
source = "skip"
reason = "singing"
''')
    (registry / "other__page.toml").write_text(f'''
repo = "other/page"
commit = "{other_commit}"
ref = "main"
licence = "test"

[[rule]]
glob = "samples/*.{{mp3,wav}}"
source = "bonafide"

[[rule]]
glob = "samples/*.mp3"
source = "bonafide"

[[rule]]
glob = "samples/*.wav"
source = "bonafide"
speaker = "spk9"
''')
    return {"mirror": mirror, "registry": registry, "reserved": reserved, "out": tmp_path / "corpus"}


def _run(world: dict[str, Path], *extra: str, workers: int = 1) -> int:
    return main_import_public(["--registry", str(world["registry"]), "--mirror", str(world["mirror"]),
                               "--out", str(world["out"]), "--reserved", str(world["reserved"]),
                               "--dev-eval", str(world["out"] / "no-dev-eval.csv"), "--workers", str(workers),
                               *extra])


def _fix_other_registry(world: dict[str, Path]) -> None:
    path = world["registry"] / "other__page.toml"
    text = path.read_text().replace('''[[rule]]
glob = "samples/*.{mp3,wav}"
source = "bonafide"

''', "").replace('glob = "samples/*.wav"', 'glob = ["samples/*.wav", "samples/*.flac"]')
    path.write_text(text)


def test_glob_semantics() -> None:
    assert glob_to_regex("wavs/*_gt.wav").fullmatch("wavs/ss_01_gt.wav")
    assert not glob_to_regex("wavs/*.wav").fullmatch("wavs/a/b.wav")
    assert glob_to_regex("a/**/x.wav").fullmatch("a/x.wav")
    assert glob_to_regex("a/**/x.wav").fullmatch("a/b/c/x.wav")
    assert glob_to_regex("s/[!x]*.wav").fullmatch("s/a.wav")
    assert not glob_to_regex("s/[!x]*.wav").fullmatch("s/x.wav")


def test_a_rule_that_matches_nothing_is_refused_with_file_and_rule(world: dict[str, Path],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # other/page's first rule has a brace glob, which is not glob syntax: it matches no file
    assert _run(world, "--dry-run") == 1
    err = capsys.readouterr().err
    assert "other__page.toml" in err and "rule(s) [1]" in err


def test_dry_run_counts_labels_skips_reserved_and_unmatched(world: dict[str, Path],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = world["registry"] / "other__page.toml"
    path.write_text(path.read_text().replace('''[[rule]]
glob = "samples/*.{mp3,wav}"
source = "bonafide"

''', ""))
    assert _run(world, "--dry-run") == 1  # samples/forgotten.flac matches no rule
    out = capsys.readouterr().out
    assert "UNMATCHED samples/forgotten.flac" in out
    assert "reserved 1, reserved-folder 1" in out  # comparison/ns2.wav and its folder mate
    assert "skip (singing): 1" in out
    assert not world["out"].exists()  # a dry run writes nothing


def test_import_labels_pairs_decodes_and_drops_copies(world: dict[str, Path]) -> None:
    _fix_other_registry(world)
    assert _run(world, workers=2) == 0  # two workers: gt/s1_again.wav is gt/s1.wav's blob, decoded once
    items = {i.item_id: i for i in read_manifest(world["out"] / "manifest.jsonl")}
    assert set(items) == {"acme/demo:gt/s1.wav", "acme/demo:gt/s2.wav", "acme/demo:hifigan/s1.wav",
                          "acme/demo:hifigan/s2.wav", "acme/demo:encodec/s1.wav", "acme/demo:baseline/s1.m4a",
                          "other/page:samples/own.wav"}
    vocoded = items["acme/demo:hifigan/s2.wav"]
    assert (vocoded.source, vocoded.generator, vocoded.extra["family"]) == ("spoof", "hifigan", "gan-vocoder")
    assert vocoded.parent == "acme/demo:gt/s2.wav" and vocoded.corpus == "acme/demo"
    codec = items["acme/demo:encodec/s1.wav"]
    assert (codec.source, codec.codec, codec.codec_family, codec.codec_objective) == \
        ("bonafide", "neural", "encodec", "compression")
    assert codec.parent == "acme/demo:gt/s1.wav"
    assert items["acme/demo:gt/s1.wav"].split == items["acme/demo:hifigan/s1.wav"].split  # one sentence, one split
    aac = items["acme/demo:baseline/s1.m4a"]
    assert (aac.extra["lossy"], aac.language, aac.extra["native_rate_hz"]) == ("aac", "de", "22050")
    assert items["other/page:samples/own.wav"].speaker == "other/page:spk9"
    for item in items.values():
        info = sf.info(world["out"] / item.path)
        assert info.samplerate == 16000 and abs(info.frames / 16000 - item.duration_s) < 1e-3
    summary = json.loads((world["out"] / "summary.json").read_text())
    reports = {r["repo"]: r for r in summary["public"]["reports"]}
    assert reports["other/page"]["dropped"] == {"duplicate": 1, "undecodable": 1}  # the mp3 copy, the empty file
    assert reports["acme/demo"]["dropped"] == {"reserved": 1, "reserved-folder": 1, "duplicate": 1}
    assert summary["public"]["hours_by"]["targets"]["genuine_uncoded_at_22khz_or_more"] > 0
    assert "Per repository" in (world["out"] / "summary.md").read_text()


def test_a_rerun_reuses_decoded_files_and_writes_the_same_manifest(world: dict[str, Path]) -> None:
    _fix_other_registry(world)
    assert _run(world) == 0
    first = (world["out"] / "manifest.jsonl").read_text()
    assert _run(world) == 0
    assert (world["out"] / "manifest.jsonl").read_text() == first


@pytest.mark.parametrize(("rule", "message"), [
    ('glob = "a/*"\nsource = "spoof"\ngenerator = "x"\nfamily = "magic"', "rule[1].family: must be one of"),
    ('glob = "a/*"\nsource = "spoof"\ngenerator = "x"', "rule[1].family: is required in a spoof rule"),
    ('glob = "a/*"\nsource = "spoof"\nfamily = "vc"', "rule[1].generator: must be a non-empty string"),
    ('glob = "a/*"\nsource = "spoof"\ngenerator = "X TTS"\nfamily = "vc"', "rule[1].generator: 'X TTS' must be lowercase"),
    ('glob = "a/*"\nsource = "fake"', "rule[1].source: must be one of bonafide, spoof, skip"),
    ('glob = "a/*"', "rule[1].source: is required"),
    ('source = "bonafide"', "rule[1].glob: is required"),
    ('glob = []\nsource = "bonafide"', "rule[1].glob: must be a path glob or a list of them"),
    ('glob = 3\nsource = "bonafide"', "rule[1].glob: must be a list of strings"),
    ('glob = "a/[x"\nsource = "bonafide"', "rule[1].glob: unclosed '['"),
    ('glob = "a/*"\nsource = "bonafide"\ncodec = "neural"', "rule[1].codec_family: must be a non-empty string"),
    ('glob = "a/*"\nsource = "bonafide"\ncodec = "neural"\ncodec_family = "En Codec"', "rule[1].codec_family: 'En Codec'"),
    ('glob = "a/*"\nsource = "bonafide"\ncodec = "mp3"', "rule[1].codec: must be one of none, telephony, neural"),
    ('glob = "a/*"\nsource = "bonafide"\ncodec_family = "encodec"', "rule[1].codec_family: codec_family/codec_objective need"),
    ('glob = "a/*"\nsource = "bonafide"\ncodec = "neural"\ncodec_family = "x"\ncodec_objective = "art"',
     "rule[1].codec_objective: must be one of compression, synthesis"),
    ('glob = "a/*"\nsource = "bonafide"\nspeed = 2', "rule[1]: unknown keys ['speed']"),
    ('glob = "a/*"\nsource = "bonafide"\npair = "("', "rule[1].pair: '(' is not a valid regex"),
    ('glob = "a/*"\nsource = "bonafide"\nspeaker_pattern = ""', "rule[1].speaker_pattern: must be a non-empty regex"),
    ('glob = "a/*"\nsource = "bonafide"\nspeaker = "a"\nspeaker_pattern = "(x)"',
     "rule[1].speaker_pattern: give speaker or speaker_pattern, not both"),
    ('glob = "a/*"\nsource = "bonafide"\nspeaker = ""', "rule[1].speaker: must be a non-empty string"),
    ('glob = "a/*"\nsource = "bonafide"\nlanguage = 5', "rule[1].language: must be a string"),
    ('glob = "a/*"\nsource = "skip"', "rule[1].reason: must be a non-empty string"),
    ('glob = "a/*"\nsource = "skip"\nreason = "x"\ncodec = "none"', "rule[1]: a skip rule takes only glob and reason, not ['codec']"),
    ('glob = "a/*"\nsource = "bonafide"\nreason = "x"', "rule[1].reason: is for skip rules"),
    ('glob = "a/*"\nsource = "bonafide"\ngenerator = "vits"', "rule[1].generator: a bonafide rule has no generator"),
    ('glob = "a/*"\nsource = "bonafide"\nfamily = "vits"', "rule[1].family: a bonafide rule has no generator"),
])
def test_bad_rules_fail_naming_file_and_rule(tmp_path: Path, rule: str, message: str) -> None:
    (tmp_path / "x__y.toml").write_text(f'repo = "x/y"\ncommit = "{"a" * 40}"\nref = "main"\nlicence = "l"\n\n'
                                        f'[[rule]]\nglob = "ok/*"\nsource = "bonafide"\n\n[[rule]]\n{rule}\n')
    with pytest.raises(ConfigError, match=r"x__y\.toml: ") as info:
        load_registry(tmp_path)
    assert message in str(info.value)


_ENTRY = {"repo": '"x/y"', "commit": f'"{"a" * 40}"', "ref": '"main"', "licence": '"l"'}


@pytest.mark.parametrize(("change", "message"), [
    ({"commit": '"ABC"'}, "commit: must be 40 lowercase hex digits, got 'ABC'"),
    ({"commit": None}, "commit: is required"),
    ({"repo": '"no-owner"'}, "repo: must be owner/name"),
    ({"ref": '" "'}, "ref: must be a non-empty string"),
    ({"licence": "3"}, "licence: must be a string"),
    ({"language": '""'}, "language: must be a non-empty string"),
    ({"homepage": '"x"'}, "unknown keys ['homepage']"),
])
def test_bad_entries_fail_naming_file_and_key(tmp_path: Path, change: dict[str, str | None], message: str) -> None:
    keys = {k: v for k, v in {**_ENTRY, **change}.items() if v is not None}
    (tmp_path / "x__y.toml").write_text("".join(f"{k} = {v}\n" for k, v in keys.items())
                                        + '[[rule]]\nglob = "ok/*"\nsource = "bonafide"\n')
    with pytest.raises(ConfigError, match=r"x__y\.toml: ") as info:
        load_registry(tmp_path)
    assert message in str(info.value)


def test_an_entry_needs_a_rule_and_a_repository_one_file(tmp_path: Path) -> None:
    head = "".join(f"{k} = {v}\n" for k, v in _ENTRY.items())
    (tmp_path / "a.toml").write_text(head)
    with pytest.raises(ConfigError, match=r"a\.toml: rule: at least one \[\[rule\]\] is required"):
        load_registry(tmp_path)
    (tmp_path / "a.toml").write_text(head + '[[rule]]\nglob = "ok/*"\nsource = "bonafide"\n')
    (tmp_path / "b.toml").write_text(head + '[[rule]]\nglob = "ok/*"\nsource = "bonafide"\n')
    with pytest.raises(ConfigError, match=r"b\.toml: repo: repository x/y is also in .*a\.toml"):
        load_registry(tmp_path)
    (tmp_path / "b.toml").unlink()
    with pytest.raises(ConfigError, match=r"not in the registry: \['q/r'\]"):
        load_registry(tmp_path, ("q/r",))
    (tmp_path / "a.toml").write_text("repo = ")
    with pytest.raises(ConfigError, match=r"a\.toml: not valid TOML"):
        load_registry(tmp_path)
    (tmp_path / "a.toml").unlink()
    with pytest.raises(ConfigError, match="no registry files"):
        load_registry(tmp_path)


def test_a_missing_commit_is_named(world: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _fix_other_registry(world)
    path = world["registry"] / "acme__demo.toml"
    text = path.read_text()
    path.write_text(text.replace(text.split('commit = "')[1][:40], "b" * 40))
    assert _run(world, "--dry-run") == 1
    assert f"commit {'b' * 40} is not in" in capsys.readouterr().err


def test_decode_reports_native_rate_and_lossy_history() -> None:
    clip = _speechlike(5, rate=44100)
    wav = decode(_wav(clip, 44100), ".wav")
    assert (wav.native_rate_hz, wav.lossy, wav.audio.dtype) == (44100, "none", np.float32)
    assert abs(len(wav.audio) - 1.5 * 16000) <= 1
    mp3 = decode(_ffmpeg(_wav(clip, 44100), "mp3", "-b:a", "64k"), ".mp3")
    assert (mp3.native_rate_hz, mp3.lossy) == (44100, "mp3")
    ogg = decode(_ffmpeg(_wav(clip, 44100), "ogg", "-c:a", "libvorbis"), ".ogg")
    assert ogg.lossy == "vorbis"


def test_duplicate_index_tells_copies_from_renderings_of_the_same_sentence() -> None:
    rng = np.random.default_rng(0)
    original = _speechlike(7, 3.0, 16000)
    index = DuplicateIndex()
    index.add(original, "a:orig", "a", "bonafide/none/none")
    louder_shifted = np.concatenate([np.zeros(400, np.float32), 0.5 * original])
    assert index.find(louder_shifted, "b", "bonafide/none/none") == Copy("a:orig", False)
    # same envelope, other phase: what a vocoder or codec rendering of the sentence looks like
    blocks = original[: len(original) // 320 * 320].reshape(-1, 320)
    spectra = np.fft.rfft(blocks, axis=1)
    rerendered = np.fft.irfft(np.abs(spectra) * np.exp(1j * rng.uniform(0, 2 * np.pi, spectra.shape)),
                              320, axis=1).astype(np.float32).ravel()
    assert index.find(rerendered, "b", "bonafide/none/none") is None
    assert index.find(louder_shifted, "a", "bonafide/none/none") is None  # inside one page only exact copies count
    assert index.find(original.copy(), "a", "bonafide/none/none") == Copy("a:orig", False)
    # a waveform-preserving codec copy elsewhere is another kind of item, not a copy; the same samples
    # under another kind are a labelling conflict
    assert index.find(louder_shifted, "b", "bonafide/neural/dac") is None
    assert index.find(original.copy(), "b", "spoof/none/none") == Copy("a:orig", True)
    index.add(rerendered, "dev-eval:x", "dev-eval")  # any kind copies a dev-eval file
    assert index.find(rerendered.copy(), "b", "spoof/none/none") == Copy("dev-eval:x", False)


def test_copies_of_dev_eval_files_are_dropped(world: dict[str, Path]) -> None:
    _fix_other_registry(world)
    dev_eval = world["out"].parent / "dev-eval"
    dev_eval.mkdir()
    sf.write(dev_eval / "held.wav", _speechlike(61), 16000)  # the clip of other/page:samples/own.wav
    (dev_eval / "labels.csv").write_text("path,label,codec,system,corpus\nheld.wav,bonafide,none,,x\n")
    assert main_import_public(["--registry", str(world["registry"]), "--mirror", str(world["mirror"]),
                               "--out", str(world["out"]), "--reserved", str(world["reserved"]),
                               "--dev-eval", str(dev_eval / "labels.csv"), "--workers", "2"]) == 0
    ids = {i.item_id for i in read_manifest(world["out"] / "manifest.jsonl")}
    assert "other/page:samples/own.wav" not in ids and "acme/demo:gt/s1.wav" in ids
    reports = {r["repo"]: r for r in json.loads((world["out"] / "summary.json").read_text())["public"]["reports"]}
    assert reports["other/page"]["dropped"]["dev-eval-copy"] == 1


def test_an_import_adding_to_an_earlier_corpus_drops_copies_of_its_items(world: dict[str, Path]) -> None:
    _fix_other_registry(world)
    earlier = world["out"]
    assert _run(world, "--only", "acme/demo") == 0
    world["out"] = earlier.parent / "added"
    # other/page holds an MP3 re-encoding of acme/demo's gt/s1.wav: already in the earlier corpus
    assert _run(world, "--only", "other/page", "--known-corpus", str(earlier)) == 0
    ids = {i.item_id for i in read_manifest(world["out"] / "manifest.jsonl")}
    assert ids == {"other/page:samples/own.wav"}
    reports = {r["repo"]: r for r in json.loads((world["out"] / "summary.json").read_text())["public"]["reports"]}
    assert reports["other/page"]["dropped"] == {"known-corpus-copy": 1, "undecodable": 1}
    # without the earlier corpus the copy is not recognised: it is the only clip of its kind in this run
    world["out"] = earlier.parent / "alone"
    assert _run(world, "--only", "other/page") == 0
    assert len(list(read_manifest(world["out"] / "manifest.jsonl"))) == 2


def test_files_the_snapshot_lacks_are_counted_not_fatal(world: dict[str, Path],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    # fetch leaves out files of 4 MiB and more: the tree lists them, the objects are not there
    _fix_other_registry(world)
    git_dir = world["mirror"] / "acme+demo" / ".git"
    blob = subprocess.run(["git", f"--git-dir={git_dir}", "rev-parse", "HEAD:hifigan/s2.wav"], check=True,
                          capture_output=True, text=True).stdout.strip()
    (git_dir / "objects" / blob[:2] / blob[2:]).unlink()
    assert _run(world, "--dry-run") == 0
    assert "absent-from-snapshot 1" in capsys.readouterr().out


def test_an_m4a_with_its_index_at_the_end_decodes() -> None:
    """Some pages store AAC in MP4 with the index last (and name it .wav): it needs a seekable input."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.wav", Path(tmp) / "out.m4a"
        src.write_bytes(_wav(_speechlike(8), RATE))
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(src), "-c:a", "aac", str(dst)], check=True)
        decoded = decode(dst.read_bytes(), ".wav")
    assert (decoded.lossy, decoded.native_rate_hz) == ("aac", RATE)
    assert abs(len(decoded.audio) / 16000 - 1.5) < 0.1
