"""The in-house resynthesis models in the corpus builder: stable plans when codec groups are added,
recipe extension without re-rendering, early and clear errors for untrained models, the summary.

Planning tests use synthetic source pools and voice lists (no audio, no engines) with the real
default recipe; the build tests use the fake engines of test_data_builder.py.
"""

from __future__ import annotations

import copy
import json
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from test_data_builder import RECIPE, make_builder

from streaming_models.data.builder import BuildError, BuildOptions, CorpusBuilder
from streaming_models.data.generators import TRAINED_FAMILIES, Voice, list_families
from streaming_models.data.manifest import CorpusItem, read_manifest
from streaming_models.data.plan import Job, Planner
from streaming_models.data.recipe import parse_recipe
from streaming_models.data.sources import Utterance
from streaming_models.data.summary import summarize, to_markdown
from streaming_models.data.transforms.registry import trained_transforms
from streaming_models.runtime.settings import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RECIPE = REPO_ROOT / "configs" / "data" / "default.toml"
INHOUSE_CODECS = ["inhouse-comp6k", "inhouse-istft", "inhouse-token1k"]


def make_tiny_checkpoint(model_name: str, out: Path) -> Path:
    """An untrained model of the shipped config's kind and family at test size, saved as training saves."""
    from streaming_models.resynthesis.checkpoint import build_model, save_checkpoint
    from streaming_models.resynthesis.config import load_config, with_overrides

    shipped = load_config(REPO_ROOT / "configs" / "resynthesis" / f"{model_name}.toml")
    if shipped.kind == "codec":
        config = with_overrides(shipped, codec={"channels": 4, "max_channels": 16, "latent_dim": 8,
                                                "codebook_size": 16, "istft_dim": 16, "istft_layers": 1})
    else:
        config = with_overrides(shipped, vocoder={"channels": 16})
    torch.manual_seed(0)
    path = out / model_name / "model.pt"
    save_checkpoint(path, {"config": config.to_dict(), "model": build_model(config).state_dict()})
    return path


# ---- planning ------------------------------------------------------------------------------------

def fake_pools(recipe_raw: dict[str, Any]) -> dict[str, list[Utterance]]:
    names = {b["source"] for b in recipe_raw["bonafide"]}
    names |= {p for c in recipe_raw.get("copy_synthesis", []) for p in c.get("parents", ["librispeech"])}
    pools = {}
    for n, name in enumerate(sorted(names)):
        pools[name] = [Utterance(f"{name}/{s}-{k}", Path(f"/data/{name}/{s}-{k}.wav"), f"{name}/{s}", "en", name,
                                 16000, 0.3 + 0.37 * ((k * 7 + s * 3 + n) % 11),
                                 "test" if name == "librispeech-test-other" else None)
                       for s in range(6) for k in range(40)]
    return pools


def fake_voices(recipe_raw: dict[str, Any]) -> dict[str, list[Voice]]:
    return {t["family"]: [Voice(f"{t['family']}-v{i}", "en") for i in range(4)] for t in recipe_raw.get("tts", [])}


def plan(raw: dict[str, Any]) -> list[Job]:
    planner = Planner(parse_recipe(raw))
    pools = fake_pools(raw)
    return planner.bonafide_jobs(pools) + planner.tts_jobs(fake_voices(raw)) + planner.copy_jobs(pools)


def without_inhouse(raw: dict[str, Any]) -> dict[str, Any]:
    """The default recipe as it was before the in-house models: one [neural_codec] table."""
    before = copy.deepcopy(raw)
    before["neural_codec"] = raw["neural_codec"][0]
    before["copy_synthesis"] = [c for c in raw["copy_synthesis"] if c["family"] not in TRAINED_FAMILIES]
    return before


def test_default_recipe_names_every_inhouse_model() -> None:
    raw = tomllib.loads(DEFAULT_RECIPE.read_text(encoding="utf-8"))
    recipe = parse_recipe(raw)
    assert set(INHOUSE_CODECS) == set(trained_transforms()) <= set(recipe.neural_specs())
    assert set(TRAINED_FAMILIES) <= set(recipe.families()) and set(TRAINED_FAMILIES) <= set(list_families())
    from streaming_models.resynthesis.plugins import train_command

    assert TRAINED_FAMILIES == {"inhouse-vocoder": train_command("vocoder_mel")}
    inhouse = recipe.more_neural_codecs[0]
    assert inhouse.transforms == tuple(INHOUSE_CODECS) and 0 < inhouse.spoof_fraction < inhouse.bonafide_fraction


def test_adding_the_inhouse_groups_moves_no_planned_item() -> None:
    after_raw = tomllib.loads(DEFAULT_RECIPE.read_text(encoding="utf-8"))
    before, after = plan(without_inhouse(after_raw)), plan(after_raw)
    after_by_id = {j.job_id: j for j in after}
    assert len(before) > 2000
    extended = 0
    for job in before:
        new = after_by_id.pop(job.job_id)
        # everything about the job (paths, text, voice, split, outputs and their chains) is unchanged...
        assert replace(new, outputs=new.outputs[:len(job.outputs)]) == job
        # ...except in-house codec copies appended after its outputs
        for output in new.outputs[len(job.outputs):]:
            assert output.transforms[0] in INHOUSE_CODECS and output.item_id.startswith(f"{job.job_id}~inhouse-")
            extended += 1
    assert {j.generator for j in after_by_id.values()} == set(TRAINED_FAMILIES)  # only the vocoder's jobs are new
    share = extended / len(before)
    assert 0.1 < share < 0.3, share  # 25 % of bonafide and 15 % of spoof items get an in-house copy
    codecs = {o.transforms[0] for j in after for o in j.outputs if o.transforms}
    assert set(INHOUSE_CODECS) <= codecs


def test_a_third_codec_group_moves_nothing_of_the_first_two() -> None:
    raw = copy.deepcopy(RECIPE)
    raw["neural_codec"] = [RECIPE["neural_codec"], {"transforms": ["fakecodec@3k"], "bonafide_fraction": 0.5,
                                                    "spoof_fraction": 0.5}]
    three = copy.deepcopy(raw)
    three["neural_codec"].append({"name": "more", "transforms": ["fakecodec@4k"], "bonafide_fraction": 1.0})
    two_jobs, three_jobs = plan(raw), plan(three)
    assert len(two_jobs) == len(three_jobs)
    for a, b in zip(two_jobs, three_jobs, strict=True):
        assert b.outputs[:len(a.outputs)] == a.outputs
    # editing a later group (its fractions) moves nothing of the groups around it
    edited = copy.deepcopy(three)
    edited["neural_codec"][1]["bonafide_fraction"] = 0.1
    for a, b in zip(three_jobs, plan(edited), strict=True):
        assert [o for o in a.outputs if "fakecodec@3k" not in o.transforms] == [
            o for o in b.outputs if "fakecodec@3k" not in o.transforms]
    # the first group written as a single table plans exactly as the array's first table
    single = {**RECIPE}
    first = [replace(j, outputs=tuple(o for o in j.outputs if "fakecodec@3k" not in o.transforms)) for j in two_jobs]
    assert plan(single) == first


def test_codec_group_errors_name_the_field() -> None:
    group = {"transforms": ["fakecodec@3k"], "bonafide_fraction": 0.5}
    with pytest.raises(ConfigError, match=r"neural_codec\[1\]: unknown keys"):
        parse_recipe({**RECIPE, "neural_codec": [RECIPE["neural_codec"], {**group, "fraction": 1}]})
    with pytest.raises(ConfigError, match="listed in two neural_codec groups"):
        parse_recipe({**RECIPE, "neural_codec": [RECIPE["neural_codec"], {**group, "transforms": ["fakecodec@1k"]}]})
    with pytest.raises(ConfigError, match="distinct `name`"):
        parse_recipe({**RECIPE, "neural_codec": [RECIPE["neural_codec"], {**group, "name": "x"},
                                                 {"name": "x", "transforms": ["fakecodec@4k"]}]})
    with pytest.raises(ConfigError, match="transforms is empty"):
        parse_recipe({**RECIPE, "neural_codec": [RECIPE["neural_codec"], {"bonafide_fraction": 0.5}]})


# ---- building an extended recipe into an existing folder ------------------------------------------

EXTENDED: dict[str, Any] = {
    **RECIPE,
    "neural_codec": [RECIPE["neural_codec"], {"name": "new", "transforms": ["fakecodec@7k"],
                                               "bonafide_fraction": 0.5, "spoof_fraction": 0.5}],
    "tts": [{**RECIPE["tts"][0], "hours": 0.006}],  # more TTS jobs, appended after the earlier ones
}


def test_update_recipe_renders_only_new_outputs_and_matches_a_fresh_build(tmp_path: Path) -> None:
    first = make_builder(tmp_path, "u").build()
    assert first.complete
    old_records = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "u" / "records").iterdir()}
    old_audio = {p: p.stat().st_mtime_ns for p in (tmp_path / "u" / "audio").rglob("*.flac")}
    with pytest.raises(BuildError, match="--update-recipe"):
        make_builder(tmp_path, "u", EXTENDED).build()
    updated = make_builder(tmp_path, "u", EXTENDED, update_recipe=True).build()
    assert updated.complete and not updated.failures
    fresh = make_builder(tmp_path, "fresh", EXTENDED).build()
    assert updated.manifest.read_bytes() == fresh.manifest.read_bytes()  # type: ignore[union-attr]
    for item in read_manifest(updated.manifest):  # type: ignore[arg-type]
        assert (tmp_path / "u" / item.path).read_bytes() == (tmp_path / "fresh" / item.path).read_bytes()
    touched = [n for n, t in old_records.items() if (tmp_path / "u" / "records" / n).stat().st_mtime_ns != t]
    new_outputs = [i for i in read_manifest(updated.manifest) if "fakecodec@7k" in i.channel]  # type: ignore[arg-type]
    assert new_outputs and len(touched) == len({i.extra["job"] for i in new_outputs} & {n[:-5] for n in old_records})
    assert updated.rendered_jobs == len(touched) + updated.planned_jobs - len(old_records)
    # no file of the first build was written again: extended jobs rendered only their new outputs
    assert {p: p.stat().st_mtime_ns for p in old_audio} == old_audio
    again = make_builder(tmp_path, "u", EXTENDED, update_recipe=True).build()
    assert again.rendered_jobs == 0
    with pytest.raises(BuildError, match="only updates a build of the same recipe"):
        make_builder(tmp_path, "u", {**EXTENDED, "name": "other"}, update_recipe=True).build()


def test_untrained_inhouse_models_fail_the_check_naming_the_commands(tmp_path: Path) -> None:
    from streaming_models.resynthesis.plugins import CODEC_TRANSFORMS, InhouseVocoderGenerator

    nowhere = tmp_path / "nowhere"

    def transforms(spec: str) -> Any:
        cls = {c().codec_family: c for c in CODEC_TRANSFORMS}[spec]
        return cls(checkpoint_path=nowhere / cls.model_name / "model.pt")

    def generators(family: str, cache: Path) -> Any:
        return InhouseVocoderGenerator(checkpoint_path=nowhere / "vocoder_mel" / "model.pt")

    recipe = parse_recipe({"name": "inhouse", "seed": 1, "bonafide": [{"source": "librispeech"}],
                           "copy_synthesis": [{"family": "inhouse-vocoder", "hours": 0.01}],
                           "neural_codec": [{"transforms": INHOUSE_CODECS, "bonafide_fraction": 0.5}]})
    shared = tmp_path / "shared"
    make_builder(tmp_path, "unused")  # writes the fake shared data
    options = BuildOptions(out_dir=tmp_path / "out", workers=1, shared_dir=shared, progress=False,
                           transform_factory=transforms, generator_factory=generators)
    with pytest.raises(BuildError) as err:
        CorpusBuilder(recipe, options).build()
    message = str(err.value)
    for name in ("codec_comp6k", "codec_istft", "codec_token1k", "vocoder_mel"):
        assert f"\n  spoofwatch resynth train --config configs/resynthesis/{name}.toml" in message
    assert "train the missing in-house resynthesis models first" in message
    assert not (tmp_path / "out").exists()


def test_inhouse_models_from_checkpoints_pass_the_check(tmp_path: Path) -> None:
    from streaming_models.resynthesis.plugins import CODEC_TRANSFORMS, InhouseVocoderGenerator

    torch.set_num_threads(1)
    paths = {name: make_tiny_checkpoint(name, tmp_path / "ckpt")
             for name in ("codec_comp6k", "codec_istft", "codec_token1k", "vocoder_mel")}
    make_builder(tmp_path, "unused")
    recipe = parse_recipe({"name": "inhouse", "seed": 1, "bonafide": [{"source": "librispeech", "max_items": 2}],
                           "copy_synthesis": [{"family": "inhouse-vocoder", "hours": 0.0003}],
                           "neural_codec": [{"transforms": ["inhouse-istft"], "bonafide_fraction": 1.0},
                                            {"transforms": ["inhouse-token1k"], "spoof_fraction": 1.0}]})
    codec_classes = {c().codec_family: c for c in CODEC_TRANSFORMS}

    def transforms(spec: str) -> Any:
        return codec_classes[spec](checkpoint_path=paths[codec_classes[spec].model_name])

    def generators(family: str, cache: Path) -> Any:
        return InhouseVocoderGenerator(checkpoint_path=paths["vocoder_mel"])

    options = BuildOptions(out_dir=tmp_path / "out", workers=1, shared_dir=tmp_path / "shared", progress=False,
                           transform_factory=transforms, generator_factory=generators)
    report = CorpusBuilder(recipe, options).build()
    assert report.complete, report.failures
    hours = report.summary["hours_by"]
    assert set(hours["neural_codec"]) == {"none", "inhouse-istft/compression", "inhouse-token1k/synthesis"}
    assert "inhouse-vocoder" in hours["generator"]
    items = list(read_manifest(report.manifest))  # type: ignore[arg-type]
    assert {i.source for i in items if i.codec_family == "inhouse-token1k"} == {"spoof"}


# ---- summary ----------------------------------------------------------------------------------------

def item(item_id: str, source: str, generator: str, codec: str, family: str, objective: str,
         seconds: float) -> CorpusItem:
    return CorpusItem(path=f"audio/{item_id}.flac", source=source, generator=generator, codec=codec,  # type: ignore[arg-type]
                      codec_family=family, codec_objective=objective, channel=(family,) if codec != "none" else (),  # type: ignore[arg-type]
                      speaker="s", language="en", split="train", parent=None, duration_s=seconds,
                      sample_rate_hz=16000, corpus="c", item_id=item_id)


def test_summary_shows_inhouse_codecs_with_objective_and_the_vocoder() -> None:
    items = [item("a", "bonafide", "human", "none", "none", "none", 3600),
             item("a~c", "bonafide", "human", "neural", "inhouse-comp6k", "compression", 1800),
             item("a~t", "bonafide", "human", "neural", "inhouse-token1k", "synthesis", 900),
             item("v", "spoof", "inhouse-vocoder", "none", "none", "none", 1800),
             item("v~l", "spoof", "inhouse-vocoder", "neural", "lyra", "compression", 360),
             item("p", "bonafide", "human", "telephony", "gsm", "compression", 360)]
    summary = summarize(items, ["inhouse-comp6k", "inhouse-token1k", "lyra"])
    assert summary["hours_by"]["neural_codec"] == {"inhouse-comp6k/compression": 0.5, "inhouse-token1k/synthesis": 0.25,
                                                   "lyra/compression": 0.1, "none": 1.6}
    assert summary["hours_by"]["codec_objective"] == {"compression": 0.7, "none": 1.5, "synthesis": 0.25}
    assert summary["hours_by"]["generator"]["inhouse-vocoder"] == 0.6
    assert summary["hours_by"]["channel"] == {"channel": 0.1, "clean": 2.35}
    markdown = to_markdown({**summary, "recipe": "t"})
    assert "| inhouse-token1k/synthesis | 0.250 | 1 |" in markdown
    assert json.loads(json.dumps(summary)) == summary


def test_a_build_of_another_recipe_seeds_a_new_folder_without_touching_the_seed(tmp_path: Path) -> None:
    seed = make_builder(tmp_path, "seed").build()
    assert seed.complete
    seed_files = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "seed").rglob("*") if p.is_file()}
    other_name = {**EXTENDED, "name": "extended"}
    seeded = make_builder(tmp_path, "seeded", other_name, seed_from=tmp_path / "seed").build()
    fresh = make_builder(tmp_path, "fresh", other_name).build()
    assert seeded.complete and not seeded.failures
    assert seeded.manifest.read_bytes() == fresh.manifest.read_bytes()  # type: ignore[union-attr]
    for item in read_manifest(seeded.manifest):  # type: ignore[arg-type]
        assert (tmp_path / "seeded" / item.path).read_bytes() == (tmp_path / "fresh" / item.path).read_bytes()
    assert seeded.skipped_jobs > 0 and seeded.rendered_jobs == fresh.rendered_jobs - seeded.skipped_jobs
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in seed_files} == seed_files
    with pytest.raises(BuildError, match="not empty"):
        make_builder(tmp_path, "seeded", other_name, seed_from=tmp_path / "seed").build()
    with pytest.raises(BuildError, match="names the --out folder itself"):
        make_builder(tmp_path, "seed", other_name, seed_from=tmp_path / "seed").build()
    with pytest.raises(BuildError, match="not a corpus build folder"):
        make_builder(tmp_path, "other", other_name, seed_from=tmp_path / "shared").build()
