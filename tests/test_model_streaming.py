from __future__ import annotations

import pytest
import torch

from streaming_models.model import ModelConfig, StreamingDetector


def _random_model(features: str, top_hz: float | None = None, spoof_head: str = "linear",
                  cmn_frames: int = 0) -> StreamingDetector:
    torch.manual_seed(0)
    model = StreamingDetector(ModelConfig(features=features, top_hz=top_hz, spoof_head=spoof_head,
                                          cmn_frames=cmn_frames)).eval()
    with torch.no_grad():  # non-trivial standardization, as after training
        model.frontend.mean.uniform_(-8.0, -2.0)
        model.frontend.std.uniform_(0.5, 3.0)
    return model


@pytest.mark.parametrize("features,top_hz,spoof_head,cmn_frames", [
    ("logpow", None, "linear", 0), ("lfcc", None, "linear", 0), ("logmel", None, "linear", 0),
    ("logpow", 4000.0, "linear", 0), ("lfcc", 4000.0, "linear", 0), ("lfcc", None, "cosine", 0),
    ("lfcc", None, "linear", 35)])  # a moving mean longer than three hops: its context crosses calls
def test_whole_clip_equals_hop_by_hop(features: str, top_hz: float | None, spoof_head: str,
                                      cmn_frames: int) -> None:
    model = _random_model(features, top_hz, spoof_head, cmn_frames)
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
    ({"spoof_head": "arcface"}, "spoof_head"),
    ({"spoof_head": "cosine", "heads": ("fake", "codec")}, "needs a 'spoof' head"),
    ({"spoof_head": "cosine", "cosine_scale": 0.0}, "cosine_scale"),
    ({"cmn_frames": 1}, "cmn_frames"),
    ({"cmn_frames": -3}, "cmn_frames"),
])
def test_bad_config_is_rejected(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        ModelConfig(**kwargs)  # type: ignore[arg-type]


def test_auxiliary_heads_leave_the_main_output_and_the_parameter_count_alone() -> None:
    torch.manual_seed(0)
    plain = StreamingDetector(ModelConfig()).eval()
    torch.manual_seed(0)
    aux = StreamingDetector(ModelConfig(aux_classes={"generator": ("human", "kokoro", "world")})).eval()
    audio = 0.1 * torch.randn(2, 4 * plain.config.hop_samples)
    with torch.no_grad():
        expected, _ = plain(audio, plain.initial_states(2))
        logits, _ = aux(audio, aux.initial_states(2))
        with_aux, aux_logits, _ = aux.forward_with_aux(audio, aux.initial_states(2))
    assert torch.equal(logits, expected) and torch.equal(with_aux, expected)
    assert aux_logits["generator"].shape == (2, 4, 3)
    assert aux.num_parameters() == plain.num_parameters()
    assert sum(p.numel() for p in aux.parameters()) == plain.num_parameters() + 3 * (plain.config.gru_hidden + 1)


def test_an_auxiliary_head_needs_two_classes() -> None:
    with pytest.raises(ValueError, match="at least two classes"):
        ModelConfig(aux_classes={"generator": ("human",)})


def test_a_one_class_spoof_logit_is_the_scaled_cosine_to_its_direction_and_codec_stays_linear() -> None:
    model = _random_model("lfcc", spoof_head="cosine")
    hop_outputs = torch.randn(2, 3, model.config.gru_hidden)
    with torch.no_grad():
        logits = model.head_logits(hop_outputs)
        cos = torch.nn.functional.cosine_similarity(hop_outputs, model.spoof_direction.expand_as(hop_outputs), dim=-1)
        assert torch.allclose(logits[..., 0], 20.0 * (0.55 - cos), atol=1e-5)
        assert torch.allclose(logits[..., 1], model.head(hop_outputs)[..., 1])
        assert torch.allclose(logits[..., 0], model.head_logits(3.0 * hop_outputs)[..., 0], atol=1e-5)  # scale-free


def test_moving_mean_removes_a_fixed_channel_once_its_window_has_filled() -> None:
    # A fixed equalizer is a constant offset of every log-band energy (and of every LFCC); after
    # cmn_frames frames the moving mean has absorbed it, so the network sees the same features.
    model = _random_model("logmel", cmn_frames=20)
    hop, hops = model.config.hop_samples, 6
    audio = 0.1 * torch.randn(1, hops * hop)
    with torch.no_grad():
        _, states = model(audio, model.initial_states(1))
        mean_len = model.state_shapes()["cmn_ctx"][1]
        offset = torch.linspace(-2.0, 3.0, model.frontend.out_dim)[None, :, None]
        shifted = [s.clone() for s in states]
        names = list(model.state_shapes())
        shifted[names.index("cmn_ctx")] += offset  # the same past, heard through the channel
        spec = model.frontend.spectrum(torch.zeros(1, hop + 160))
        plain, _ = model.outputs_from_spectrum(spec, model.frontend.bins, states[1:])
        model.frontend.mean -= offset[0, :, 0] * model.frontend.std  # standardized features rise by offset
        through, _ = model.outputs_from_spectrum(spec, model.frontend.bins, shifted[1:])
    assert mean_len == 19
    assert (plain - through).abs().max().item() <= 1e-4
    assert (plain - model.outputs_from_spectrum(spec, model.frontend.bins, states[1:])[0]).abs().max().item() > 1e-3
