"""Corpus builder: labels, speaker-disjoint splits, resume, determinism, and clear errors up front.

Most tests use in-process fake engines and transforms on a synthetic shared-data
folder, so they check the builder's logic fast and without the real engines; one
test builds a tiny corpus with real engines and transforms in two processes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from streaming_models.data.builder import BuildError, BuildOptions, CorpusBuilder
from streaming_models.data.generators import GeneratorUnavailable, Voice, make_generator
from streaming_models.data.manifest import read_manifest
from streaming_models.data.recipe import load_recipe, parse_recipe
from streaming_models.runtime.settings import ConfigError

SR = 16000


def write_fake_shared(root: Path) -> Path:
    """A folder shaped like ../shared/data with a few seconds of tones per speaker."""
    rng = np.random.default_rng(0)
    ls = root / "speech" / "librispeech-subset"
    for i, speaker in enumerate(["11", "22", "33", "44", "55", "66", "77", "88"]):
        path = ls / "train-clean-100" / f"{speaker}-100-0000.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(int(SR * (1.0 + 0.1 * i))) / SR
        sf.write(path, (0.2 * np.sin(2 * np.pi * (150 + 20 * i) * t) + 0.01 * rng.standard_normal(t.size)), SR)
    for speaker in ["901", "902"]:
        for k in range(2):
            path = ls / "test-other" / speaker / f"{speaker}-5-000{k}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, 0.2 * np.sin(2 * np.pi * 200 * np.arange(SR) / SR), SR)
    fsdd = root / "speech" / "fsdd"
    fsdd.mkdir(parents=True)
    for name in ["george", "jackson"]:
        for digit in range(3):
            sf.write(fsdd / f"{digit}_{name}_0.wav", 0.3 * np.sin(2 * np.pi * 300 * np.arange(4000) / 8000), 8000)
    (root / "README.md").write_text("fake shared data for tests\n")
    return root


class FakeTTS:
    family = "faketts"

    def check_available(self) -> None:
        pass

    def voices(self) -> list[Voice]:
        return [Voice(f"v{i}", "en") for i in range(6)] + [Voice("v-es", "es")]

    def synthesize(self, text: str, voice: Voice, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        n = 22050 * (1 + len(text) % 3) // 4
        return (0.3 * np.sin(np.arange(n) * 0.05 * (1 + rng.random()))).astype(np.float32), 22050


class FakeVocoder:
    family = "fakevoc"

    def check_available(self) -> None:
        pass

    def resynthesize(self, audio: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        return (audio * 0.5 + 0.01 * rng.standard_normal(audio.size)).astype(np.float32), sr


class MissingTTS(FakeTTS):
    family = "missing"

    def check_available(self) -> None:
        raise GeneratorUnavailable("`fakesay` not found: install the Debian package `fakesay-bin`")


def fake_generator(family: str, cache_dir: Path) -> Any:
    return {"faketts": FakeTTS, "fakevoc": FakeVocoder, "missing": MissingTTS}[family]()


class FakeTransform:
    def __init__(self, name: str) -> None:
        self.name = name
        family = name.split("@")[0]
        self.kind = "neural" if family == "fakecodec" else ("channel" if family == "noise" else "telephony")
        self.codec_family = "none" if self.kind == "channel" else family
        self.codec_objective = "none" if self.kind == "channel" else "compression"

    def check_available(self) -> None:
        pass

    def apply(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return (audio * 0.9 + 0.001 * rng.standard_normal(audio.size)).astype(np.float32)


def fake_transform(spec: str) -> FakeTransform:
    if spec.split("@")[0] not in ("fakecodec", "fakephone", "noise"):
        raise ValueError(f"unknown transform {spec}")
    return FakeTransform(spec)


RECIPE: dict[str, Any] = {
    "name": "unit",
    "seed": 7,
    "dev_fraction": 0.4,
    "bonafide": [{"source": "librispeech"}, {"source": "fsdd", "max_items": 4},
                 {"source": "librispeech-test-other"}],
    "tts": [{"family": "faketts", "hours": 0.004, "sentences_per_item": [1, 2]}],
    "copy_synthesis": [{"family": "fakevoc", "hours": 0.0015, "parents": ["librispeech", "librispeech-test-other"]}],
    "neural_codec": {"transforms": ["fakecodec@1k", "fakecodec@2k"], "bonafide_fraction": 0.5, "spoof_fraction": 0.5},
    "channel": {"fraction": 0.5, "chains": [["fakephone"], ["fakephone", "noise@20dB"]]},
}


def make_builder(tmp_path: Path, out: str, recipe: dict[str, Any] | None = None, **kw: Any) -> CorpusBuilder:
    shared = tmp_path / "shared"
    if not shared.exists():
        write_fake_shared(shared)
    options = BuildOptions(out_dir=tmp_path / out, workers=1, shared_dir=shared, progress=False,
                           cache_dir=tmp_path / "engines", transform_factory=fake_transform,
                           generator_factory=fake_generator, **kw)
    return CorpusBuilder(parse_recipe(recipe or RECIPE), options)


def test_build_writes_labelled_manifest_and_summary(tmp_path: Path) -> None:
    report = make_builder(tmp_path, "a").build()
    assert report.complete and not report.failures
    items = list(read_manifest(report.manifest))  # type: ignore[arg-type]
    assert {i.generator for i in items} == {"human", "faketts", "fakevoc"}
    assert {i.source for i in items} == {"bonafide", "spoof"}
    for item in items:
        audio, sr = sf.read(tmp_path / "a" / item.path)
        assert sr == 16000 == item.sample_rate_hz
        assert item.duration_s == pytest.approx(audio.size / sr, abs=1e-3)
        if item.channel and item.channel[0].startswith("fakecodec"):
            assert (item.codec, item.codec_family, item.codec_objective) == ("neural", "fakecodec", "compression")
            assert item.parent is not None and "~" in item.item_id
        elif item.channel:
            assert (item.codec, item.codec_family) == ("telephony", "fakephone")
        else:
            assert (item.codec, item.codec_family, item.codec_objective) == ("none", "none", "none")
    neural = [i for i in items if i.codec == "neural"]
    assert {i.source for i in neural} == {"bonafide", "spoof"}, "neural resynthesis of both classes"
    # the channel is applied in every class, not only in one
    for source in ("bonafide", "spoof"):
        with_channel = [i for i in items if i.source == source and [c for c in i.channel if "fakecodec" not in c]]
        assert 0 < len(with_channel) < len([i for i in items if i.source == source])
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["items"] == len(items)
    assert set(summary["hours_by"]["generator"]) == {"human", "faketts", "fakevoc"}
    assert "| generator | hours | items |" in (tmp_path / "a" / "summary.md").read_text()


def test_splits_are_speaker_disjoint_and_follow_parents(tmp_path: Path) -> None:
    report = make_builder(tmp_path, "a").build()
    items = list(read_manifest(report.manifest))  # type: ignore[arg-type]
    by_id = {i.item_id: i for i in items}
    speakers: dict[str, set[str]] = {}
    for item in items:
        speakers.setdefault(item.split, set()).add(item.speaker)
    assert speakers["train"].isdisjoint(speakers["dev"])
    assert speakers["test"] == {"librispeech/901", "librispeech/902"}
    assert not speakers["test"] & (speakers["train"] | speakers["dev"])
    for item in items:
        if item.parent in by_id:
            assert item.split == by_id[item.parent].split
    for item in items:
        if item.generator == "fakevoc" and "~" not in item.item_id:  # a copy-synthesis, not its codec copy
            parent_speaker = "librispeech/" + item.parent.split("-")[1]  # type: ignore[union-attr]
            assert item.speaker == parent_speaker


def test_same_seed_same_manifest_other_seed_differs(tmp_path: Path) -> None:
    first = make_builder(tmp_path, "a").build().manifest.read_bytes()  # type: ignore[union-attr]
    second = make_builder(tmp_path, "b").build().manifest.read_bytes()  # type: ignore[union-attr]
    assert first == second
    other = make_builder(tmp_path, "c", {**RECIPE, "seed": 8}).build().manifest.read_bytes()  # type: ignore[union-attr]
    assert other != first


def test_interrupted_build_resumes_to_the_same_manifest(tmp_path: Path) -> None:
    partial = make_builder(tmp_path, "r", stop_after_jobs=5).build()
    assert not partial.complete and partial.manifest is None
    assert not (tmp_path / "r" / "manifest.jsonl").exists()
    assert len({i.extra["job"] for i in read_manifest(tmp_path / "r" / "manifest.partial.jsonl")}) == 5
    resumed = make_builder(tmp_path, "r").build()
    assert resumed.complete and resumed.skipped_jobs == 5
    assert resumed.rendered_jobs == resumed.planned_jobs - 5
    again = make_builder(tmp_path, "r").build()
    assert again.rendered_jobs == 0 and again.skipped_jobs == again.planned_jobs
    fresh = make_builder(tmp_path, "f").build()
    assert resumed.manifest.read_bytes() == fresh.manifest.read_bytes()  # type: ignore[union-attr]
    assert not (tmp_path / "r" / "manifest.partial.jsonl").exists()


def test_half_written_item_is_redone_on_resume(tmp_path: Path) -> None:
    report = make_builder(tmp_path, "h").build()
    victim = next(iter(read_manifest(report.manifest)))  # type: ignore[arg-type]
    (tmp_path / "h" / victim.path).unlink()
    resumed = make_builder(tmp_path, "h").build()
    assert resumed.rendered_jobs == 1 and (tmp_path / "h" / victim.path).is_file()


def test_out_dir_of_another_recipe_is_refused(tmp_path: Path) -> None:
    make_builder(tmp_path, "x", stop_after_jobs=1).build()
    with pytest.raises(BuildError, match="another recipe"):
        make_builder(tmp_path, "x", {**RECIPE, "seed": 99}).build()


def test_missing_engine_fails_before_any_work_and_names_the_package(tmp_path: Path) -> None:
    recipe = {**RECIPE, "tts": [*RECIPE["tts"], {"family": "missing", "hours": 0.01}]}
    with pytest.raises(BuildError, match="fakesay-bin"):
        make_builder(tmp_path, "m", recipe).build()
    assert not (tmp_path / "m").exists()


def test_missing_real_engine_binary_names_the_debian_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    for family, package in (("espeak", "espeak-ng"), ("flite", "flite"), ("festival", "festival")):
        with pytest.raises(GeneratorUnavailable, match=f"apt-get install {package}"):
            make_generator(family, tmp_path).check_available()


def test_missing_source_and_unknown_transform_are_listed_together(tmp_path: Path) -> None:
    recipe = {**RECIPE, "channel": {"fraction": 0.5, "chains": [["nosuchcodec"]]}}
    builder = make_builder(tmp_path, "s", recipe)
    builder.options = BuildOptions(**{**builder.options.__dict__, "shared_dir": tmp_path / "nowhere"})
    with pytest.raises(BuildError) as err:
        builder.build()
    assert "SPOOFWATCH_SHARED_DATA" in str(err.value) and "nosuchcodec" in str(err.value)


def test_recipe_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown keys"):
        parse_recipe({**RECIPE, "bonafid": []})
    with pytest.raises(ConfigError, match="channel.fraction"):
        parse_recipe({**RECIPE, "channel": {"fraction": 1.5, "chains": [["x"]]}})
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(tmp_path / "none.toml")


@pytest.mark.parametrize("name", ["small", "medium", "default"])
def test_committed_recipes_parse(name: str) -> None:
    recipe = load_recipe(Path(__file__).resolve().parent.parent / "configs" / "data" / f"{name}.toml")
    assert recipe.name == name and recipe.channel.fraction == pytest.approx(0.5, abs=0.1)


@pytest.mark.slow
def test_real_engines_and_transforms_in_two_processes(tmp_path: Path) -> None:
    """espeak-ng + WORLD + the real Lyra / G.711 transforms, rendered by a 2-process pool."""
    try:
        make_generator("espeak", tmp_path).check_available()
        make_generator("world", tmp_path).check_available()
    except GeneratorUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must install the corpus engines: {exc}")
        pytest.skip(str(exc))
    shared = write_fake_shared(tmp_path / "shared")
    recipe = parse_recipe({
        "name": "real", "seed": 3, "dev_fraction": 0.3,
        "bonafide": [{"source": "librispeech", "max_items": 3}],
        "tts": [{"family": "espeak", "hours": 0.002, "languages": ["en"]}],
        "copy_synthesis": [{"family": "world", "hours": 0.0005}],
        "neural_codec": {"transforms": ["lyra@6k"], "bonafide_fraction": 1.0, "spoof_fraction": 1.0},
        "channel": {"fraction": 0.5, "chains": [["g711-mulaw"]]},
    })
    report = CorpusBuilder(recipe, BuildOptions(out_dir=tmp_path / "out", workers=2, shared_dir=shared,
                                                progress=False, cache_dir=tmp_path / "engines")).build()
    assert report.complete, report.failures
    items = list(read_manifest(report.manifest))  # type: ignore[arg-type]
    assert {i.generator for i in items} == {"human", "espeak", "world"}
    lyra = [i for i in items if i.codec == "neural"]
    assert lyra and all(i.codec_family == "lyra" and i.channel[0] == "lyra@6k" for i in lyra)
    assert all(i.codec_family == "g711" for i in items if i.codec == "telephony")


def test_cli_check_and_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from streaming_models.data.cli import main

    shared = write_fake_shared(tmp_path / "shared")
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "cli"\nseed = 1\n[[bonafide]]\nsource = "librispeech"\n')
    assert main(["check", "--recipe", str(recipe), "--shared-data", str(shared)]) == 0
    assert "recipe cli: sources, engines and transforms available; 8 jobs" in capsys.readouterr().out
    assert main(["build", "--recipe", str(recipe), "--shared-data", str(shared), "--out", str(tmp_path / "o"),
                 "--workers", "1", "--no-progress"]) == 0
    assert len(list(read_manifest(tmp_path / "o" / "manifest.jsonl"))) == 8
    assert main(["check", "--recipe", str(tmp_path / "missing.toml")]) == 1
    assert "recipe not found" in capsys.readouterr().err
    assert main(["check", "--small", "--recipe", str(recipe)]) == 2
    assert main(["check"]) == 2


def test_short_clips_are_joined_per_speaker(tmp_path: Path) -> None:
    recipe = {**RECIPE, "tts": [], "copy_synthesis": [], "bonafide": [{"source": "fsdd", "join_to_s": 0.9}]}
    report = make_builder(tmp_path, "j", recipe).build()
    items = [i for i in read_manifest(report.manifest) if "~" not in i.item_id]  # type: ignore[arg-type]
    # 3 clips of 0.5 s per speaker -> one item of 2 clips (+ pause) and one single clip, per speaker
    assert sorted(i.extra.get("joined_clips", "1") for i in items) == ["1", "1", "2", "2"]
    for item in items:
        if item.extra.get("joined_clips") == "2":
            assert 1.15 <= item.duration_s <= 1.5 and item.extra["native_rate_hz"] == "8000"
            assert item.item_id.endswith("+1")
    assert {i.speaker for i in items} == {"fsdd/george", "fsdd/jackson"}


def test_source_decoding_beyond_full_scale_is_scaled(tmp_path: Path) -> None:
    from streaming_models.data.render import RenderConfig, Renderer

    path = tmp_path / "loud.wav"
    sf.write(path, 40.0 * np.sin(np.arange(8000) * 0.05), 8000, subtype="FLOAT")
    renderer = Renderer(RenderConfig(out_dir=tmp_path, seed=0, cache_dir=tmp_path, max_item_s=5.0,
                                     level_dbfs=(-30.0, -20.0)))
    audio, sr = renderer._read_source(str(path), np.random.default_rng(0))
    assert sr == 8000 and 0.99 <= float(np.max(np.abs(audio))) <= 1.0


def test_status_writes_the_manifest_of_finished_jobs(tmp_path: Path) -> None:
    make_builder(tmp_path, "p", stop_after_jobs=4).build()
    done, planned, manifest = make_builder(tmp_path, "p").status()
    assert done == 4 and planned > 4 and manifest.name == "manifest.partial.jsonl"
    assert json.loads((tmp_path / "p" / "summary.partial.json").read_text())["jobs_done"] == 4
    make_builder(tmp_path, "p").build()
    done, planned, manifest = make_builder(tmp_path, "p").status()
    assert done == planned and manifest.name == "manifest.jsonl"


def test_a_tts_family_with_few_voices_is_split_by_item_not_by_voice(tmp_path: Path) -> None:
    one_voice = {**RECIPE, "tts": [{"family": "faketts", "hours": 0.02, "voices": ["v0"]}]}
    builder = make_builder(tmp_path, "few", one_voice)
    jobs = [j for j in builder.plan(*builder.voices_only()) if j.kind == "tts"]
    assert {j.speaker for j in jobs} == {"faketts/v0"}
    assert {j.split for j in jobs} == {"train", "dev"}  # split by voice, all of it would sit in one split
    many = {**RECIPE, "tts": [{"family": "faketts", "hours": 0.02}]}
    builder = make_builder(tmp_path, "many", many)
    splits_by_voice: dict[str, set[str]] = {}
    for job in (j for j in builder.plan(*builder.voices_only()) if j.kind == "tts"):
        splits_by_voice.setdefault(job.speaker, set()).add(job.split)
    assert len(splits_by_voice) >= 4 and all(len(s) == 1 for s in splits_by_voice.values())
