from __future__ import annotations

import pytest
import torch

from streaming_models.model import ModelConfig, StreamingDetector


def _random_model(features: str, top_hz: float | None = None) -> StreamingDetector:
    torch.manual_seed(0)
    model = StreamingDetector(ModelConfig(features=features, top_hz=top_hz)).eval()
    with torch.no_grad():  # non-trivial standardization, as after training
        model.frontend.mean.uniform_(-8.0, -2.0)
        model.frontend.std.uniform_(0.5, 3.0)
    return model


@pytest.mark.parametrize("features,top_hz", [
    ("logpow", None), ("lfcc", None), ("logmel", None), ("logpow", 4000.0), ("lfcc", 4000.0)])
def test_whole_clip_equals_hop_by_hop(features: str, top_hz: float | None) -> None:
    model = _random_model(features, top_hz)
    hop, hops, batch = model.config.hop_samples, 15, 3
    audio = 0.1 * torch.randn(batch, hops * hop)
    audio[1, 3 * hop: 5 * hop] = 0.0  # digital silence mid-stream
    with torch.no_grad():
        whole, whole_states = model(audio, model.initial_states(batch))
        states, per_hop = model.initial_states(batch), []
        for i in range(hops):
            logits, states = model(audio[:, i * hop:(i + 1) * hop], states)
            per_hop.append(logits)
    assert whole.shape == (batch, hops, 2)
    assert (whole - torch.cat(per_hop, dim=1)).abs().max().item() <= 1e-4
    for a, b in zip(whole_states, states, strict=True):
        assert (a - b).abs().max().item() <= 1e-4


def test_output_depends_on_carried_state() -> None:
    # Guards against a model that ignores its state (the equality test above would still pass).
    model = _random_model("logpow")
    hop = model.config.hop_samples
    audio = 0.1 * torch.randn(1, 4 * hop)
    with torch.no_grad():
        _, states = model(audio[:, : 3 * hop], model.initial_states(1))
        carried, _ = model(audio[:, 3 * hop:], states)
        fresh, _ = model(audio[:, 3 * hop:], model.initial_states(1))
    assert (carried - fresh).abs().max().item() > 1e-3


def test_states_are_batch_first_and_match_declared_shapes() -> None:
    model = _random_model("logpow")
    states = model.initial_states(5)
    shapes = model.state_shapes()
    assert [tuple(s.shape) for s in states] == [(5, *shape) for shape in shapes.values()]
    _, new_states = model(torch.zeros(5, model.config.hop_samples), states)
    assert [tuple(s.shape) for s in new_states] == [tuple(s.shape) for s in states]
    assert shapes["gru_h"] == (model.config.gru_layers, model.config.gru_hidden)


def test_default_model_is_small() -> None:
    assert StreamingDetector(ModelConfig()).num_parameters() <= 1_000_000


@pytest.mark.parametrize("kwargs,needle", [
    ({"hop_samples": 1650}, "whole number"),
    ({"hop_samples": 1760}, "whole number"),  # 11 frames do not pool by 2
    ({"features": "mfcc"}, "feature kind"),
    ({"top_hz": 0.0}, "top_hz"),
    ({"top_hz": 8001.0}, "top_hz"),
])
def test_bad_config_is_rejected(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        ModelConfig(**kwargs)  # type: ignore[arg-type]


def test_a_stored_config_loads_with_the_removed_options_only_where_they_were_off() -> None:
    # model_args as checkpoints and exported metadata wrote them before issue #24 (JSON: lists)
    stored = {**ModelConfig(features="lfcc").to_dict(), "dilations": [1, 2], "heads": ["spoof", "codec"],
              "spoof_head": "linear", "cosine_scale": 20.0, "cosine_mid": 0.55, "aux_classes": {}, "cmn_frames": 0}
    assert ModelConfig.from_dict(stored) == ModelConfig(features="lfcc")
    for key, value in (("spoof_head", "cosine"), ("cmn_frames", 100), ("aux_classes", {"generator": ["a", "b"]})):
        with pytest.raises(ValueError, match=f"uses {key} = .*removed in issue #24.*873a065"):
            ModelConfig.from_dict({**stored, key: value})
    with pytest.raises(ValueError, match=r"unknown keys \['gru_size'\]"):
        ModelConfig.from_dict({"gru_size": 48})
    with pytest.raises(ValueError, match="conv_channels: must be an integer"):
        ModelConfig.from_dict({"conv_channels": "wide"})
