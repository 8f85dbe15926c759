from __future__ import annotations

import json
from dataclasses import replace

import pytest

from streaming_models.data.labels import POLICIES, codec_target, spoof_target, targets
from streaming_models.data.manifest import CorpusItem, ManifestError, read_manifest, write_manifest
from streaming_models.runtime.errors import ModelFormatError
from streaming_models.runtime.model_format import METADATA_KEY, ModelMetadata, StateSpec


def _meta() -> ModelMetadata:
    return ModelMetadata(model_id="m", sample_rate_hz=16000, hop_samples=3200,
                         states=(StateSpec("state_in", "state_out", (2, 64)),))


def test_metadata_round_trip() -> None:
    meta = _meta()
    again = ModelMetadata.from_json(meta.to_json())
    assert again == meta
    assert again.hop_ms == 200.0


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d.update(format_version=99), "format_version"),
    (lambda d: d.pop("hop_samples"), "hop_samples"),
    (lambda d: d.update(sample_rate_hz=4000), "sample_rate_hz"),
    (lambda d: d.update(heads=["codec", "spoof"]), "heads"),
])
def test_metadata_rejects_bad_input(mutate, needle) -> None:  # type: ignore[no-untyped-def]
    raw = json.loads(_meta().to_json())
    mutate(raw)
    with pytest.raises(ModelFormatError, match=needle):
        ModelMetadata.from_json(json.dumps(raw))


def test_manifest_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    items = [CorpusItem(path="a.flac", source="bonafide", generator="human"),
             CorpusItem(path="b.flac", source="spoof", generator="kokoro", codec="neural",
                        codec_family="lyra", codec_objective="compression", channel=("lyra@6k",))]
    write_manifest(tmp_path / "m.jsonl", items)
    assert list(read_manifest(tmp_path / "m.jsonl")) == items


def test_manifest_names_bad_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "m.jsonl").write_text('{"path": "a", "source": "human", "generator": "x"}\n')
    with pytest.raises(ManifestError, match="m.jsonl:1: source"):
        list(read_manifest(tmp_path / "m.jsonl"))


@pytest.mark.parametrize("policy,objective,expected", [
    ("codec_as_bonafide", "compression", 0), ("codec_as_bonafide", "synthesis", 0),
    ("codec_as_spoof", "compression", 1), ("codec_as_spoof", "synthesis", 1),
    ("by_objective", "compression", 0), ("by_objective", "synthesis", 1),
])
def test_policies_on_resynthesized_genuine_speech(policy, objective, expected) -> None:  # type: ignore[no-untyped-def]
    item = CorpusItem(path="x", source="bonafide", generator="human", codec="neural",
                      codec_family="lyra", codec_objective=objective)
    assert spoof_target(item, policy) == expected
    assert codec_target(item) == 1


def test_spoof_is_spoof_and_plain_bonafide_is_bonafide_under_every_policy() -> None:
    spoof = CorpusItem(path="x", source="spoof", generator="espeak", codec="telephony", codec_family="gsm")
    real = CorpusItem(path="y", source="bonafide", generator="human", codec="telephony", codec_family="g711")
    for policy in POLICIES:
        assert targets(spoof, policy) == (1, 0)  # type: ignore[arg-type]
        assert targets(real, policy) == (0, 0)  # type: ignore[arg-type]


def test_thresholds_are_typed_fields_stored_in_extra_as_before() -> None:
    meta = replace(_meta(), operating_thresholds={"spoof": 0.9}, early_thresholds_by_s={"codec": ((0.5, 0.4), (1.0, 0.6))})
    raw = json.loads(meta.to_json())
    assert raw["extra"] == {"threshold_spoof": 0.9, "threshold_codec_by_s": [[0.5, 0.4], [1.0, 0.6]]}
    assert "operating_thresholds" not in raw and "early_thresholds_by_s" not in raw
    again = ModelMetadata.from_json(meta.to_json())
    assert again == meta and again.extra == {}


def test_a_stored_threshold_that_is_no_probability_is_none() -> None:
    raw = json.loads(_meta().to_json())
    raw["extra"] = {"threshold_spoof": "0.25", "threshold_codec": 1.5, "threshold_spoof_by_s": [[0.5, "x"]],
                    "threshold_codec_by_s": [[1.0, 0.5], [0.5, 0.25]], "train_step": 3}
    meta = ModelMetadata.from_json(json.dumps(raw))
    assert meta.operating_thresholds == {"spoof": 0.25}
    assert meta.early_thresholds_by_s == {"codec": ((0.5, 0.25), (1.0, 0.5))}  # in time order
    assert meta.extra == {"train_step": 3}  # one home: nothing about thresholds is left in extra


@pytest.mark.parametrize("change,needle", [
    ({"operating_thresholds": {"spoof": 1.5}}, "operating threshold"),
    ({"operating_thresholds": {"other": 0.5}}, "operating threshold"),
    ({"early_thresholds_by_s": {"spoof": ((1.0, 0.5), (0.5, 0.5))}}, "early thresholds"),
    ({"extra": {"threshold_spoof": 0.5}}, "typed fields"),
])
def test_validate_refuses_thresholds_out_of_place(change, needle) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelFormatError, match=needle):
        replace(_meta(), **change).validate()


def test_the_shipped_model_reads_and_writes_back_its_metadata_unchanged() -> None:
    import onnx

    from streaming_models.api import DEFAULT_MODEL_PATH

    proto = onnx.load(str(DEFAULT_MODEL_PATH), load_external_data=False)
    stored = next(p.value for p in proto.metadata_props if p.key == METADATA_KEY)
    meta = ModelMetadata.from_json(stored)
    assert set(meta.operating_thresholds) == {"spoof", "codec"}
    assert meta.to_json() == stored
