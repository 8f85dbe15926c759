"""In-house resynthesis models: training learns, shapes and bitrate, checkpoints, resume, plug-ins."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from streaming_models.data.generators import CopySynthesis, GeneratorUnavailable
from streaming_models.data.transforms import AudioTransform, TransformUnavailable, get_transform
from streaming_models.resynthesis.checkpoint import load_model
from streaming_models.resynthesis.codec import Codec
from streaming_models.resynthesis.config import (
    ResynthConfig,
    config_from_dict,
    load_config,
    with_overrides,
)
from streaming_models.resynthesis.plugins import (
    CODEC_TRANSFORMS,
    InhouseCodecTransform,
    InhouseVocoderGenerator,
    ResynthesisUnavailable,
)
from streaming_models.resynthesis.train import TrainingError, build_trainer, train, train_step
from streaming_models.runtime.settings import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGS = REPO_ROOT / "configs" / "resynthesis"
SR = 16000

TINY_CODEC = {"channels": 4, "max_channels": 16, "latent_dim": 8, "codebook_size": 16, "strides": [2, 4, 5],
              "istft_dim": 16, "istft_layers": 1}
TINY_VOCODER = {"n_mels": 16, "channels": 16, "upsample_rates": [4, 4, 4], "hop_samples": 64, "n_fft": 256}
TINY_LOSS = {"stft_resolutions": [[256, 64], [128, 32]], "mel_n_fft": 256, "mel_hop": 64, "mel_bins": 16,
             "disc_resolutions": [128], "disc_channels": 4}
TINY_TRAIN = {"batch_size": 2, "crop_seconds": 0.2, "learning_rate": 3e-3, "log_every_steps": 1}


@pytest.fixture(autouse=True)
def one_torch_thread() -> Any:
    """These tiny models ran ~10x slower with 2 threads on the shared 2-core CI/dev machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_config(kind: str = "codec", name: str = "tiny", **sections: dict[str, Any]) -> ResynthConfig:
    raw: dict[str, Any] = {"name": name, "kind": kind, "family": f"inhouse-{name}",
                           "codec_objective": "compression" if kind == "codec" else "none",
                           "codec": {**TINY_CODEC, "num_quantizers": 3}, "vocoder": dict(TINY_VOCODER),
                           "loss": dict(TINY_LOSS), "train": dict(TINY_TRAIN)}
    for key, changes in sections.items():
        raw[key] = {**raw.get(key, {}), **changes}
    return config_from_dict(raw)


def speechlike_batch(batch: int, samples: int, seed: int = 0) -> torch.Tensor:
    """Harmonic tones with a gliding pitch plus a little noise: structured, deterministic audio."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / SR
    rows = []
    for _ in range(batch):
        f0 = rng.uniform(100, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))
        phase = 2 * np.pi * np.cumsum(f0) / SR
        tone = sum(np.sin(k * phase) / k for k in range(1, 8))
        rows.append(0.3 * tone / np.abs(tone).max() + 0.01 * rng.standard_normal(samples))
    return torch.from_numpy(np.stack(rows).astype(np.float32))


ARCHITECTURES = {
    "conv-ema": {"codec": {"architecture": "conv", "quantizer": "ema"}},
    "conv-straight-through": {"codec": {"architecture": "conv", "quantizer": "straight_through"}},
    "istft-ema": {"codec": {"architecture": "istft", "quantizer": "ema", "strides": [2, 4, 4]}},
}


@pytest.mark.parametrize("arch", [*ARCHITECTURES, "vocoder"])
def test_training_reduces_loss_on_a_fixed_batch(arch: str) -> None:
    config = tiny_config("vocoder") if arch == "vocoder" else tiny_config(**ARCHITECTURES[arch])
    trainer = build_trainer(config)
    batch = speechlike_batch(2, config.crop_samples)
    losses = [train_step(trainer, batch)["loss"] for _ in range(20)]
    assert all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-3:]) < 0.85 * np.mean(losses[:3]), losses


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_codec_round_trip_shapes_and_bitrate(arch: str) -> None:
    config = tiny_config(**ARCHITECTURES[arch])
    model = Codec(config.codec)
    model.train()
    model(speechlike_batch(2, 4000).unsqueeze(1))  # seeds the EMA codebooks from data
    model.eval()
    samples = 3333  # not a multiple of the hop: padded inside, trimmed on output
    audio = speechlike_batch(2, samples, seed=1).unsqueeze(1)
    with torch.no_grad():
        out = model(audio)
        codes = model.encode(audio)
        decoded = model.decode(codes)
    hop = config.codec.hop_samples
    frames = math.ceil(samples / hop)
    assert out.audio.shape == (2, 1, samples)
    assert codes.shape == (config.codec.num_quantizers, 2, frames)
    assert int(codes.max()) < config.codec.codebook_size and int(codes.min()) >= 0
    assert decoded.shape == (2, 1, frames * hop)
    torch.testing.assert_close(decoded[..., :samples], out.audio)
    # bitrate from what the encoder actually emits: frames/s x stages x bits per code
    measured = codes.shape[-1] / (frames * hop / SR) * codes.shape[0] * math.log2(config.codec.codebook_size)
    assert model.bitrate_bps == pytest.approx(measured)
    with torch.no_grad():
        bypassed = model(audio, quantize=False)  # the trainer's optional warm-up: no codes, no VQ loss
    assert bypassed.audio.shape == (2, 1, samples) and bypassed.quantizer.codes.shape[0] == 0
    assert float(bypassed.quantizer.commitment_loss) == 0.0


def test_shipped_configs_have_the_promised_bitrates_and_objectives() -> None:
    comp = load_config(CONFIGS / "codec_comp6k.toml")
    istft = load_config(CONFIGS / "codec_istft.toml")
    token = load_config(CONFIGS / "codec_token1k.toml")
    vocoder = load_config(CONFIGS / "vocoder_mel.toml")
    assert 5000 <= comp.codec.bitrate_bps <= 7000 and comp.codec.num_quantizers >= 4
    assert comp.codec_objective == istft.codec_objective == "compression"
    for shipped in (comp, istft, token, vocoder):  # a step budget: every host trains the same model
        assert 1000 < shipped.train.max_steps < 100_000 and shipped.train.max_minutes >= 120
    assert (istft.codec.architecture, istft.codec.strides) != (comp.codec.architecture, comp.codec.strides)
    assert token.codec.bitrate_bps <= 1500 and token.codec.num_quantizers <= 2
    assert token.codec_objective == "synthesis"
    assert (vocoder.kind, vocoder.family, vocoder.codec_objective) == ("vocoder", "inhouse-vocoder", "none")


def test_discriminator_switch_adds_adversarial_terms() -> None:
    config = tiny_config(loss={"discriminator": True})
    trainer = build_trainer(config)
    assert trainer.discriminator is not None
    before = [p.detach().clone() for p in trainer.discriminator.parameters()]
    terms = train_step(trainer, speechlike_batch(2, config.crop_samples))
    assert {"adv", "fm", "disc"} <= set(terms)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.discriminator.parameters()))
    assert build_trainer(tiny_config()).discriminator is None


@pytest.mark.parametrize("raw,needle", [
    ({"codec": {"codebook_size": 1000}}, "power of two"),
    ({"codec": {"nonsense": 1}}, "unknown keys"),
    ({"codec_objective": "none"}, "codec_objective"),
    ({"data": {"sources": ["librispeech-test-other"]}}, "data.sources"),
    ({"codec": {"architecture": "transformer"}}, "architecture"),
])
def test_bad_configs_are_rejected_with_the_field_named(raw: dict[str, Any], needle: str) -> None:
    base: dict[str, Any] = {"name": "x", "kind": "codec", "family": "inhouse-x", "codec_objective": "compression"}
    with pytest.raises(ConfigError, match=needle):
        config_from_dict({**base, **raw})


@pytest.fixture(scope="module")
def fake_shared_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shared-data folder with two tiny training sources (never the real test speakers)."""
    root = tmp_path_factory.mktemp("shared")
    libri = root / "speech/librispeech-subset/train-clean-100"
    fsdd = root / "speech/fsdd"
    libri.mkdir(parents=True)
    fsdd.mkdir(parents=True)
    audio = speechlike_batch(3, SR, seed=7).numpy()
    for i, row in enumerate(audio[:2]):
        sf.write(libri / f"{i}-1-0000.flac", row, SR)
    for i in range(4):
        sf.write(fsdd / f"{i}_spk_{i}.wav", audio[2, i * 2000:(i + 1) * 2000 + 2000], 8000)
    return root


def _params(path: Path) -> dict[str, torch.Tensor]:
    _, model = load_model(path)
    return model.state_dict()


def test_resumed_training_matches_uninterrupted(tmp_path: Path, fake_shared_data: Path) -> None:
    config = tiny_config(train={"max_steps": 4, "checkpoint_every_steps": 2})
    straight = train(config, tmp_path / "a", data_dir=fake_shared_data, progress=False)
    first_half = with_overrides(config, train={"max_steps": 2})
    train(first_half, tmp_path / "b", data_dir=fake_shared_data, progress=False)
    resumed = train(config, tmp_path / "b", data_dir=fake_shared_data, resume=True, progress=False)
    assert straight["step"] == resumed["step"] == 4
    assert straight["stopped_by"] == resumed["stopped_by"] == "max_steps"
    a, b = _params(tmp_path / "a/model.pt"), _params(tmp_path / "b/model.pt")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    with pytest.raises(TrainingError, match="--resume"):
        train(config, tmp_path / "a", data_dir=fake_shared_data, progress=False)
    changed = with_overrides(config, codec={"num_quantizers": 2})
    with pytest.raises(TrainingError, match="different config"):
        train(changed, tmp_path / "a", data_dir=fake_shared_data, resume=True, progress=False)


def test_a_run_cut_short_by_its_time_budget_says_so(tmp_path: Path, fake_shared_data: Path) -> None:
    config = tiny_config(train={"max_steps": 50, "max_minutes": 1e-6})
    summary = train(config, tmp_path / "short", data_dir=fake_shared_data, progress=False)
    assert summary["step"] < 50 and summary["stopped_by"] == "max_minutes" and summary["max_steps"] == 50


def test_cli_trains_with_overrides_and_refuses_bad_input(tmp_path: Path, fake_shared_data: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from streaming_models.resynthesis.cli import main

    monkeypatch.setenv("SPOOFWATCH_SHARED_DATA", str(fake_shared_data))
    config_path = tmp_path / "tiny.toml"
    config_path.write_text('name = "tiny"\nkind = "vocoder"\nfamily = "inhouse-tiny"\n', encoding="utf-8")
    sets = [f"vocoder.{k}={v}" for k, v in TINY_VOCODER.items()] + [
        "train.max_steps=2", "train.batch_size=2", "train.crop_seconds=0.2", "loss.mel_n_fft=256",
        "loss.stft_resolutions=[[256, 64]]"]
    argv = ["train", "--config", str(config_path), "--out", str(tmp_path / "out"), "--no-progress"]
    assert main([*argv, *(a for s in sets for a in ("--set", s))]) == 0
    config, _ = load_model(tmp_path / "out" / "model.pt")
    assert config.train.max_steps == 2 and config.vocoder.hop_samples == 64
    assert main([*argv, "--set", "train.nonsense=1"]) == 2
    assert main([*argv, "--set", "oops"]) == 2
    assert main(argv) == 1  # the checkpoint exists and --resume was not given
    err = capsys.readouterr().err
    assert "unknown keys ['nonsense']" in err and "SECTION.KEY=VALUE" in err and "--resume" in err


def test_codec_plugins_load_a_trained_checkpoint(tmp_path: Path, fake_shared_data: Path) -> None:
    rng = np.random.default_rng(0)
    audio = speechlike_batch(1, 5000, seed=3).numpy()[0]
    for cls in CODEC_TRANSFORMS:
        shipped = load_config(CONFIGS / f"{cls.model_name}.toml")
        # The shipped architecture at test size: same name/family/objective, tiny widths.
        config = with_overrides(shipped, codec={**TINY_CODEC, "strides": shipped.codec.strides},
                                loss=TINY_LOSS, train={**TINY_TRAIN, "max_steps": 2},
                                data={"max_files_per_source": 2})
        train(config, tmp_path / cls.model_name, data_dir=fake_shared_data, progress=False)
        transform: InhouseCodecTransform = cls(checkpoint_path=tmp_path / cls.model_name / "model.pt")
        assert (transform.kind, transform.codec_family, transform.codec_objective) == (
            "neural", shipped.family, shipped.codec_objective)
        transform.check_available()
        out = transform.apply(audio, rng)
        assert out.dtype == np.float32 and out.shape == audio.shape and np.all(np.abs(out) <= 1.0)
        assert not np.allclose(out, audio)
        with pytest.raises(ValueError, match="mono"):
            transform.apply(np.zeros((2, 100), dtype=np.float32), rng)


def test_vocoder_generator_resynthesizes_at_16k(tmp_path: Path, fake_shared_data: Path) -> None:
    shipped = load_config(CONFIGS / "vocoder_mel.toml")
    config = with_overrides(shipped, vocoder=TINY_VOCODER, loss=TINY_LOSS, train={**TINY_TRAIN, "max_steps": 2})
    train(config, tmp_path / "voc", data_dir=fake_shared_data, progress=False)
    generator = InhouseVocoderGenerator(checkpoint_path=tmp_path / "voc" / "model.pt")
    assert generator.family == "inhouse-vocoder" and isinstance(generator, CopySynthesis)
    generator.check_available()
    audio_8k = speechlike_batch(1, 4000, seed=4).numpy()[0]
    out, sr = generator.resynthesize(audio_8k, sample_rate_hz=8000, rng=np.random.default_rng(0))
    assert sr == SR and out.dtype == np.float32 and abs(out.size - 8000) <= 16


def test_transform_registry_builds_the_inhouse_codecs() -> None:
    for cls in CODEC_TRANSFORMS:
        transform = get_transform(cls().codec_family)
        assert isinstance(transform, cls) and transform.name == transform.codec_family
        assert isinstance(transform, AudioTransform) and transform.kind == "neural"


def test_missing_checkpoint_names_the_training_command(tmp_path: Path) -> None:
    transform = CODEC_TRANSFORMS[0](checkpoint_path=tmp_path / "nowhere" / "model.pt")
    with pytest.raises(ResynthesisUnavailable, match="spoofwatch resynth train --config configs/resynthesis/codec_comp6k.toml"):
        transform.check_available()
    with pytest.raises(GeneratorUnavailable, match="vocoder_mel.toml"):
        InhouseVocoderGenerator(checkpoint_path=tmp_path / "x.pt").check_available()
    with pytest.raises(TransformUnavailable):
        transform.check_available()


def test_corpus_builder_labels_items_from_the_inhouse_models(tmp_path: Path, fake_shared_data: Path) -> None:
    """The plug-ins inside a real (tiny) corpus build: codec items and vocoder spoofs, labelled."""
    from streaming_models.data.builder import BuildOptions, CorpusBuilder
    from streaming_models.data.manifest import read_manifest
    from streaming_models.data.recipe import parse_recipe

    token = load_config(CONFIGS / "codec_token1k.toml")
    train(with_overrides(token, codec={**TINY_CODEC, "strides": token.codec.strides}, loss=TINY_LOSS,
                         train={**TINY_TRAIN, "max_steps": 1}), tmp_path / "token", data_dir=fake_shared_data,
          progress=False)
    vocoder = load_config(CONFIGS / "vocoder_mel.toml")
    train(with_overrides(vocoder, vocoder=TINY_VOCODER, loss=TINY_LOSS, train={**TINY_TRAIN, "max_steps": 1}),
          tmp_path / "voc", data_dir=fake_shared_data, progress=False)

    def transform_factory(spec: str) -> AudioTransform:
        if spec != "inhouse-token1k":
            raise ValueError(f"unknown transform {spec}")
        return CODEC_TRANSFORMS[2](checkpoint_path=tmp_path / "token" / "model.pt")

    def generator_factory(family: str, cache_dir: Path) -> InhouseVocoderGenerator:
        if family != "inhouse-vocoder":
            raise ValueError(f"unknown generator family {family}")
        return InhouseVocoderGenerator(checkpoint_path=tmp_path / "voc" / "model.pt")

    recipe = parse_recipe({
        "name": "inhouse", "seed": 1, "dev_fraction": 0.0,
        "bonafide": [{"source": "librispeech"}],
        "copy_synthesis": [{"family": "inhouse-vocoder", "hours": 0.0005, "parents": ["librispeech"]}],
        "neural_codec": {"transforms": ["inhouse-token1k"], "bonafide_fraction": 1.0, "spoof_fraction": 1.0},
    })
    options = BuildOptions(out_dir=tmp_path / "corpus", workers=1, shared_dir=fake_shared_data, progress=False,
                           cache_dir=tmp_path / "engines", transform_factory=transform_factory,
                           generator_factory=generator_factory)  # type: ignore[arg-type]
    report = CorpusBuilder(recipe, options).build()
    assert report.complete and not report.failures, report.failures
    items = list(read_manifest(report.manifest))  # type: ignore[arg-type]
    codec_items = [i for i in items if i.codec == "neural"]
    assert codec_items and all((i.codec_family, i.codec_objective) == ("inhouse-token1k", "synthesis")
                               and i.channel[0] == "inhouse-token1k" for i in codec_items)
    assert any(i.source == "spoof" and i.generator == "inhouse-vocoder" for i in items)
