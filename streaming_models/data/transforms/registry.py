"""The transform registry: spec text -> transform object. See the package docstring."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from streaming_models.data.transforms import channel, lyra, telephony
from streaming_models.data.transforms.base import AudioTransform


@dataclass(frozen=True)
class _Family:
    build: Callable[[str | None], AudioTransform]  # parameter text after '@' (None if absent)
    specs: tuple[str, ...]  # the concrete specs list_transforms() shows
    parameter_help: str = ""  # shown when a parameter is wrong


def _no_parameter(factory: Callable[[], AudioTransform]) -> Callable[[str | None], AudioTransform]:
    def build(parameter: str | None) -> AudioTransform:
        if parameter is not None:
            raise ValueError("takes no parameter")
        return factory()
    return build


def _with_unit(unit: str, convert: Callable[[str], object],
               factory: Callable[[object], AudioTransform]) -> Callable[[str | None], AudioTransform]:
    def build(parameter: str | None) -> AudioTransform:
        if parameter is None or not parameter.endswith(unit) or len(parameter) == len(unit):
            raise ValueError(f"needs a parameter ending in {unit!r}")
        try:
            value = convert(parameter[: -len(unit)])
        except ValueError as exc:
            raise ValueError(f"bad parameter {parameter!r}") from exc
        return factory(value)
    return build


def _inhouse_codec(model_name: str) -> Callable[[str | None], AudioTransform]:
    # Imported on use: the in-house codecs need torch, and their module imports this package.
    def factory() -> AudioTransform:
        from streaming_models.resynthesis.plugins import make_codec_transform
        return make_codec_transform(model_name)
    return _no_parameter(factory)


def _noise(colour: str) -> _Family:
    prefix = "noise" if colour == "any" else f"noise-{colour}"
    return _Family(_with_unit("dB", float, lambda snr: channel.AdditiveNoise(snr, colour)),  # type: ignore[arg-type]
                   tuple(f"{prefix}@{snr}dB" for snr in (5, 10, 20, 30)), "SNR in dB, -10..60, e.g. 20dB")


_FAMILIES: Mapping[str, _Family] = MappingProxyType({
    "lyra": _Family(_with_unit("k", str, lambda rate: lyra.LyraCodec(f"{rate}k")),
                    tuple(f"lyra@{rate}" for rate in lyra.BITRATES_BPS), f"one of {tuple(lyra.BITRATES_BPS)}"),
    "g711-mulaw": _Family(_no_parameter(lambda: telephony.g711("mulaw")), ("g711-mulaw",)),
    "g711-alaw": _Family(_no_parameter(lambda: telephony.g711("alaw")), ("g711-alaw",)),
    "gsm": _Family(_no_parameter(telephony.gsm), ("gsm",)),
    "g722": _Family(_no_parameter(telephony.g722), ("g722",)),
    "g726": _Family(_with_unit("k", int, telephony.g726),  # type: ignore[arg-type]
                    tuple(f"g726@{k}k" for k in telephony.G726_BITRATES_K), "kbit/s: 16k, 24k, 32k or 40k"),
    "amr-nb": _Family(_with_unit("k", str, telephony.amr_nb),  # type: ignore[arg-type]
                      tuple(f"amr-nb@{m}k" for m in telephony.AMR_NB_MODES_K),
                      f"kbit/s, one of {telephony.AMR_NB_MODES_K} with a trailing k"),
    "opus": _Family(_with_unit("k", int, telephony.opus),  # type: ignore[arg-type]
                    tuple(f"opus@{k}k" for k in (6, 8, 12, 16, 24)), "kbit/s, 6k..24k"),
    "mp3": _Family(_with_unit("k", int, telephony.mp3),  # type: ignore[arg-type]
                   tuple(f"mp3@{k}k" for k in (16, 32, 64)), f"kbit/s, one of {telephony.MP3_BITRATES_K}"),
    "codec2": _Family(lambda mode: telephony.codec2(mode or ""),
                      tuple(f"codec2@{m}" for m in telephony.CODEC2_DELAYS), f"one of {tuple(telephony.CODEC2_DELAYS)}"),
    "bandlimit": _Family(lambda rate: channel.BandLimit(rate or ""),
                         tuple(f"bandlimit@{r}" for r in channel.BANDLIMIT_RATES_HZ),
                         f"one of {tuple(channel.BANDLIMIT_RATES_HZ)}"),
    "gain": _Family(_with_unit("dB", float, channel.Gain),  # type: ignore[arg-type]
                    ("gain@-12dB", "gain@-6dB", "gain@6dB"), "dB, -40..30, e.g. -6dB"),
    "noise": _noise("any"),
    **{f"noise-{c}": _noise(c) for c in channel.NOISE_COLOURS},
    "reverb": _Family(_with_unit("s", float, channel.Reverb),  # type: ignore[arg-type]
                      ("reverb@0.3s", "reverb@0.6s"), "reverberation time in seconds, 0.05..2, e.g. 0.4s"),
    "rnnoise": _Family(_no_parameter(channel.RNNoiseDenoiser), ("rnnoise",)),
    # In-house codecs (streaming_models/resynthesis): trained build artefacts, so not in the default
    # listing; `spoofwatch resynth train --config configs/resynthesis/NAME.toml` makes each one.
    "inhouse-comp6k": _Family(_inhouse_codec("codec_comp6k"), ()),
    "inhouse-istft": _Family(_inhouse_codec("codec_istft"), ()),
    "inhouse-token1k": _Family(_inhouse_codec("codec_token1k"), ()),
})

_SPEC = re.compile(r"^(?P<family>[a-z0-9][a-z0-9-]*)(?:@(?P<parameter>[^@\s]+))?$")


def trained_transforms() -> list[str]:
    """The in-house codec specs: registered, but usable only once `spoofwatch resynth train` made them."""
    return [name for name in _FAMILIES if name.startswith("inhouse-")]


def list_transforms() -> list[str]:
    """Every concrete spec with a fixed parameter set, plus examples of the continuous ones."""
    return [spec for family in _FAMILIES.values() for spec in family.specs]


def get_transform(spec: str) -> AudioTransform:
    """Build a transform from its spec; ValueError (listing the known specs) for anything else."""
    match = _SPEC.match(spec.strip())
    family = _FAMILIES.get(match.group("family")) if match else None
    if match is None or family is None:
        raise ValueError(f"unknown transform {spec!r}; known: {', '.join(list_transforms())}")
    try:
        return family.build(match.group("parameter"))
    except ValueError as exc:
        hint = f" ({family.parameter_help})" if family.parameter_help else ""
        raise ValueError(f"transform {spec!r}: {exc}{hint}; known: {', '.join(family.specs)}") from exc
