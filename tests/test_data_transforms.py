"""Transforms: every spec on a tiny input, Lyra on the shipped clips, chains, errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from streaming_models.data.transforms import (
    AudioTransform,
    ChainConfig,
    ChannelChain,
    NeuralCodec,
    TransformUnavailable,
    get_transform,
    list_transforms,
)
from streaming_models.data.transforms.channel import active_power, room_impulse_response
from streaming_models.data.transforms.lyra import LyraCodec
from streaming_models.data.transforms.quality import estimate_lag, log_mel_correlation
from streaming_models.data.transforms.telephony import SoxAmrNb, g711, opus

RATE = 16000
NON_LYRA = [spec for spec in list_transforms() if not spec.startswith("lyra")]
# codecs that keep the waveform: their output must line up with the input to within 1 ms
WAVEFORM_CODECS = ["g711-mulaw", "g711-alaw", "gsm", "g722", "g726@16k", "g726@40k", "opus@12k",
                   "opus@24k", "mp3@16k", "mp3@64k", "amr-nb@12.2k", "bandlimit@8k"]


def require(transform: AudioTransform) -> None:
    """Skip when an engine is missing locally; in CI (CI=true) engines must be installed."""
    try:
        transform.check_available()
    except TransformUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"engine missing in CI: {exc}")
        pytest.skip(str(exc))


def tiny_speech(seconds: float = 0.8, seed: int = 0) -> np.ndarray:
    """A voiced, formant-shaped, syllable-modulated tone complex: speech-like enough for codecs."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 130.0 + 40.0 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    signal = np.zeros_like(t)
    for k in range(1, 40):
        harmonic = k * f0
        amplitude = sum(np.exp(-0.5 * ((harmonic - f) / b) ** 2)
                        for f, b in ((700, 130), (1200, 150), (2600, 250))) + 0.02
        signal += amplitude * (harmonic < 7500) * np.sin(k * phase)
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 3.0 * t)) ** 1.5
    signal = signal * envelope + 0.01 * rng.standard_normal(len(t)) * envelope
    return (0.3 * signal / np.abs(signal).max()).astype(np.float32)


@pytest.fixture(scope="module")
def tiny() -> np.ndarray:
    return tiny_speech()


def load_clip(shared_data: object, name: str) -> np.ndarray:
    audio, rate = sf.read(f"{shared_data}/codecs/lyra-v2/{name}", dtype="float32")
    assert rate == RATE
    return audio


@pytest.mark.parametrize("spec", NON_LYRA)
def test_every_transform_on_tiny_input(spec: str, tiny: np.ndarray) -> None:
    transform = get_transform(spec)
    assert isinstance(transform, AudioTransform)
    assert transform.name == spec
    require(transform)
    out = transform.apply(tiny, np.random.default_rng(1))
    assert out.dtype == np.float32 and out.ndim == 1
    assert len(out) == len(tiny)
    assert np.all(np.isfinite(out))
    assert float(np.sqrt(np.mean(out ** 2))) > 1e-4, "output is silent"
    assert float(np.abs(out - tiny).max()) > 1e-4, "transform left the audio unchanged"
    if transform.kind == "telephony":
        assert transform.codec_objective == "compression" and transform.codec_family != "none"
        assert log_mel_correlation(tiny, out) > 0.6
    else:
        assert transform.codec_family == "none" and transform.codec_objective == "none"


@pytest.mark.parametrize("spec", WAVEFORM_CODECS)
def test_waveform_codecs_are_delay_compensated(spec: str, tiny: np.ndarray) -> None:
    transform = get_transform(spec)
    require(transform)
    out = transform.apply(tiny, np.random.default_rng(0))
    assert abs(estimate_lag(tiny, out, max_lag=1600)) <= RATE // 1000


class DelayingCodec(NeuralCodec):
    """A stand-in neural codec at 24 kHz whose 'decoder' is 120 samples late."""

    codec_family = "fake"
    native_rate_hz = 24000
    delay_samples = 120

    def check_available(self) -> None:
        """Nothing to install."""

    def resynthesize(self, audio: np.ndarray) -> np.ndarray:
        return np.concatenate([np.zeros(self.delay_samples, np.float32), audio, np.zeros(7, np.float32)])


def test_a_neural_codec_is_one_small_class(tiny: np.ndarray) -> None:
    codec = DelayingCodec("fake@24k")
    assert isinstance(codec, AudioTransform) and codec.kind == "neural"
    out = codec.apply(tiny, np.random.default_rng(0))
    assert len(out) == len(tiny)
    assert estimate_lag(tiny, out, max_lag=800) == 0  # resampled there and back, delay removed
    assert np.corrcoef(tiny, out)[0, 1] > 0.99


def test_odd_lengths_keep_their_length(tiny: np.ndarray) -> None:
    for spec in ("opus@8k", "amr-nb@7.4k", "codec2@700C", "mp3@32k"):
        transform = get_transform(spec)
        require(transform)
        for n in (1, 333, 4001):
            assert len(transform.apply(tiny[:n], np.random.default_rng(0))) == n


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
@pytest.mark.parametrize("colour", ["white", "pink", "brown", "babble"])
def test_noise_hits_the_requested_snr(colour: str, snr_db: float, tiny: np.ndarray) -> None:
    out = get_transform(f"noise-{colour}@{snr_db:g}dB").apply(tiny, np.random.default_rng(3))
    noise = out - tiny
    measured = 10 * np.log10(active_power(tiny) / np.mean(noise.astype(np.float64) ** 2))
    assert measured == pytest.approx(snr_db, abs=0.5)


def test_noise_colours_differ_in_spectral_tilt() -> None:
    from streaming_models.data.transforms.channel import generate_noise

    def low_to_high_ratio(noise: np.ndarray) -> float:
        power = np.abs(np.fft.rfft(noise)) ** 2
        freqs = np.fft.rfftfreq(len(noise), 1 / RATE)
        return float(power[(freqs > 50) & (freqs < 500)].sum() / power[(freqs > 4000)].sum())

    ratios = {c: low_to_high_ratio(generate_noise(c, RATE, np.random.default_rng(0)))
              for c in ("white", "pink", "brown")}
    assert ratios["white"] < ratios["pink"] < ratios["brown"]


def test_gain_and_band_limit_do_what_they_say(tiny: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(get_transform("gain@-6dB").apply(tiny, rng), tiny * 10 ** (-6 / 20), rtol=1e-5)
    assert np.abs(get_transform("gain@30dB").apply(tiny, rng)).max() <= 1.0  # clipped like a 16-bit path
    narrow = get_transform("bandlimit@8k").apply(tiny, rng)
    freqs = np.fft.rfftfreq(len(tiny), 1 / RATE)
    above = freqs > 4500  # soxr keeps a short transition band above 4 kHz
    window = np.hanning(len(tiny))  # the clip ends mid-syllable: no truncation leakage
    before = np.sum(np.abs(np.fft.rfft(tiny * window))[above] ** 2)
    after = np.sum(np.abs(np.fft.rfft(narrow * window))[above] ** 2)
    assert after < before * 1e-3


def _decay_db_per_s(response: np.ndarray, start_s: float, end_s: float) -> float:
    """Slope of the Schroeder backward-integrated energy between two times (dB per second)."""
    energy = np.cumsum(response[::-1] ** 2)[::-1]
    level = 10 * np.log10(energy / energy[0])
    return float((level[int(end_s * RATE)] - level[int(start_s * RATE)]) / (end_s - start_s))


@pytest.mark.parametrize("rt60_s", [0.3, 0.8])
def test_room_response_decays_by_60_db_in_its_reverberation_time(rt60_s: float) -> None:
    response = room_impulse_response(rt60_s, 5.0, np.random.default_rng(1))
    assert response[0] == 1.0  # the direct path first
    tail = response[1:]
    assert abs(10 * np.log10(np.sum(tail ** 2)) + 5.0) < 0.01  # direct / reverberant energy = 5 dB
    # Below 1.5 kHz the tail decays at 60 dB per rt60 (above it faster): measured on the late part,
    # where the slower low band dominates.
    slope = _decay_db_per_s(response, 0.4 * rt60_s, 0.8 * rt60_s)
    assert -60 / rt60_s * 1.25 < slope < -60 / rt60_s * 0.8


def test_reverb_keeps_level_and_smears_in_time(tiny: np.ndarray) -> None:
    wet = get_transform("reverb@0.6s").apply(tiny, np.random.default_rng(0))
    assert wet.shape == tiny.shape and wet.dtype == np.float32
    assert abs(10 * np.log10(active_power(wet) / active_power(tiny))) < 0.5
    # The pauses between syllables fill with the tail: energy where the dry envelope is lowest rises.
    quiet = slice(int(0.62 * RATE), int(0.70 * RATE))  # just after the second syllable's end
    assert np.mean(wet[quiet] ** 2) > 10 * np.mean(tiny[quiet] ** 2)
    with pytest.raises(ValueError, match="reverberation time"):
        get_transform("reverb@5s")


@pytest.mark.parametrize("bitrate", ["3.2k", "6k", "9.2k"])
def test_lyra_resynthesis_on_shipped_clip(bitrate: str, shared_data: object) -> None:
    codec = LyraCodec(bitrate)
    require(codec)
    clip = load_clip(shared_data, "sample1_16kHz.wav")
    out = codec.apply(clip, np.random.default_rng(0))
    assert (codec.kind, codec.codec_family, codec.codec_objective) == ("neural", "lyra", "compression")
    assert len(out) == len(clip) and out.dtype == np.float32
    assert float(np.abs(out - clip).max()) > 0.01
    assert abs(estimate_lag(clip, out, max_lag=1600)) <= 2  # codec delay is compensated
    assert log_mel_correlation(clip, out) > 0.8


def test_lyra_is_deterministic_and_history_free(shared_data: object) -> None:
    codec = get_transform("lyra@6k")
    require(codec)
    first = load_clip(shared_data, "sample1_16kHz.wav")
    second = load_clip(shared_data, "sample2_16kHz.wav")
    rng = np.random.default_rng(0)
    alone = codec.apply(second, rng)
    codec.apply(first, rng)  # must leave no state behind
    np.testing.assert_array_equal(codec.apply(second, rng), alone)
    for n in (1, 100, 321):  # shorter than / not a multiple of one 320-sample frame
        assert len(codec.apply(second[:n], rng)) == n


def test_lyra_numpy_quantizer_matches_tflite(shared_data: object) -> None:
    fast = LyraCodec("9.2k")
    require(fast)
    clip = load_clip(shared_data, "sample2_16kHz.wav")[: 2 * RATE]
    out = fast.apply(clip, np.random.default_rng(0))
    assert fast._codebooks is not None and fast._codebooks.shape == (46, 16, 64), "numpy RVQ path not taken"
    reference = LyraCodec("9.2k")
    reference._codebooks = np.empty(0, np.float32)  # force the per-frame TFLite quantizer
    np.testing.assert_array_equal(out, reference.apply(clip, np.random.default_rng(0)))


def test_rnnoise_keeps_speech_aligned(shared_data: object) -> None:
    denoiser = get_transform("rnnoise")
    require(denoiser)
    clip = load_clip(shared_data, "sample1_16kHz.wav")
    noisy = get_transform("noise-white@10dB").apply(clip, np.random.default_rng(0))
    out = denoiser.apply(noisy, np.random.default_rng(0))
    assert len(out) == len(clip)
    assert abs(estimate_lag(clip, out, max_lag=1600)) <= 16
    residual_before = np.mean((noisy - clip) ** 2)
    residual_after = np.mean((out - clip) ** 2)
    assert residual_after < residual_before  # it actually removed noise


def test_chain_sampling_is_deterministic(tiny: np.ndarray) -> None:
    chain = ChannelChain()
    draws = [chain.sample(np.random.default_rng(seed)) for seed in range(40)]
    assert draws == [chain.sample(np.random.default_rng(seed)) for seed in range(40)]
    assert len(set(draws)) > 20
    assert all(draws), "nonempty chains by default"
    for steps in draws:
        for spec in steps:
            assert get_transform(spec).name == spec
    cheap = ChannelChain(ChainConfig(codecs=("g711-mulaw", "gsm"), p_rnnoise=0.0))
    require(get_transform("gsm"))
    out_a, steps_a = cheap.apply(tiny, np.random.default_rng(7))
    out_b, steps_b = cheap.apply(tiny, np.random.default_rng(7))
    assert steps_a == steps_b
    np.testing.assert_array_equal(out_a, out_b)
    assert len(out_a) == len(tiny)


def test_chain_probabilities_are_respected() -> None:
    codec_only = ChannelChain(ChainConfig(p_noise=0, p_rnnoise=0, p_bandlimit=0, p_codec=1, p_gain=0,
                                          codecs=("gsm", "opus@6k", "opus@24k")))
    for seed in range(20):
        steps = codec_only.sample(np.random.default_rng(seed))
        assert len(steps) == 1 and steps[0] in ("gsm", "opus@6k", "opus@24k")
    everything = ChannelChain(ChainConfig(p_noise=1, p_rnnoise=1, p_bandlimit=1, p_codec=1, p_gain=1,
                                          gain_db_range=(3, 3)))
    steps = everything.sample(np.random.default_rng(0))
    assert steps[0].startswith("noise-") and steps[1:3] == ("rnnoise", "bandlimit@8k")
    assert steps[-1] == "gain@3dB"


def test_chain_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="p_noise"):
        ChainConfig(p_noise=1.5)
    with pytest.raises(ValueError, match="unknown transform"):
        ChainConfig(codecs=("g729",))


def test_unknown_spec_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown transform 'g729'.*lyra@6k.*g711-mulaw.*rnnoise"):
        get_transform("g729")
    with pytest.raises(ValueError, match="opus@99k.*6k..24k"):
        get_transform("opus@99k")
    with pytest.raises(ValueError, match="lyra@5k"):
        get_transform("lyra@5k")
    with pytest.raises(ValueError, match="takes no parameter"):
        get_transform("gsm@13k")
    with pytest.raises(ValueError, match="unknown transform"):
        get_transform("")


def test_missing_engine_names_the_package(tmp_path: object, tiny: np.ndarray) -> None:
    missing_ffmpeg = g711("mulaw", ffmpeg="/nonexistent/ffmpeg")
    with pytest.raises(TransformUnavailable, match="Debian package 'ffmpeg'"):
        missing_ffmpeg.check_available()
    with pytest.raises(TransformUnavailable, match="ffmpeg"):
        opus(12, ffmpeg="/nonexistent/ffmpeg").apply(tiny, np.random.default_rng(0))
    with pytest.raises(TransformUnavailable, match="'sox'"):
        SoxAmrNb("12.2", sox="/nonexistent/sox").check_available()
    with pytest.raises(TransformUnavailable, match="SPOOFWATCH_SHARED_DATA"):
        LyraCodec("6k", model_dir=tmp_path).check_available()  # type: ignore[arg-type]


def test_bad_audio_is_rejected() -> None:
    transform = get_transform("gain@-6dB")
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="mono"):
        transform.apply(np.zeros((2, 100), np.float32), rng)
    with pytest.raises(ValueError, match="empty"):
        transform.apply(np.zeros(0, np.float32), rng)
    with pytest.raises(ValueError, match="NaN"):
        transform.apply(np.full(10, np.nan, np.float32), rng)
