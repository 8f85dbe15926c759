"""The streaming two-head detector: raw audio hop + explicit state -> (spoof, codec) logits + new state.

One call consumes one or more whole hops. Every piece of memory the network needs
across calls is an explicit state tensor with the batch as dim 0, so one exported
graph serves a batch of unrelated streams (model_format.py):

    audio_ctx  [B, window - frame_hop]      last raw samples, the STFT's left overlap
    cmn_ctx    [B, F, cmn_frames - 1]       last feature frames of the moving mean (when cmn_frames > 0)
    conv0_ctx  [B, F, k - 1]                feature frames the first causal conv still needs
    convN_ctx  [B, C, (k - 1) * dilation]   same for each residual causal conv (after pooling)
    gru_h      [B, layers, H]               GRU hidden state (batch first, unlike torch.nn.GRU)

A new stream starts from all-zero states. Because every layer is causal and its context
is carried exactly, one forward over a whole clip equals feeding its hops one by one
(tests/test_model_streaming.py checks it).

Per hop of 100 ms (1600 samples at 16 kHz): 10 STFT frames of 20 ms every 10 ms -> causal
conv -> average-pool x2 -> residual dilated causal convs -> GRU over 5 steps of 20 ms ->
two logits read at the hop's last step.

Optional auxiliary heads (`aux_classes`, e.g. the generator family) read the same hop-end
GRU output during training only: forward() never computes them, so the exported graph and
its cost are those of the two main heads.
"""

from __future__ import annotations

import pickle
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from streaming_models.features import SpectralFrontEnd, feature_dim


@dataclass
class ModelConfig:
    sample_rate_hz: int = 16000
    hop_samples: int = 1600  # 100 ms per call: latency of one decision update
    window_samples: int = 320  # 20 ms STFT window (50 Hz bins up to 8 kHz)
    frame_hop_samples: int = 160  # 10 ms between STFT frames
    features: str = "logpow"  # logpow | lfcc | logmel (features.py)
    n_filters: int = 60  # filterbank size for lfcc / logmel
    n_ceps: int = 40  # cepstra kept for lfcc
    top_hz: float | None = None  # highest frequency the features describe (None: Nyquist)
    conv_channels: int = 64
    conv_kernel: int = 3
    pool: int = 2  # time pooling after the first conv: GRU steps are pool * 10 ms
    dilations: tuple[int, ...] = (1, 2)  # residual causal convs after pooling
    gru_hidden: int = 80
    gru_layers: int = 1
    dropout: float = 0.1
    heads: tuple[str, ...] = ("spoof", "codec")
    # "linear": the spoof logit is a linear read-out like the other heads. "cosine": a one-class
    # read-out (OC-softmax, Zhang et al., IEEE SPL 2021): logit = cosine_scale * (cosine_mid - cos(h, w))
    # for a learnt direction w of bona fide speech; training (train.py) asks bona fide hops for
    # cos > 0.9 and spoofed ones only for cos < 0.2, a tight bona fide cluster and room for unseen attacks.
    # Measured on six paired seeds, worse on dev-eval's uncoded audio (docs/model-card.md): not the recipe.
    spoof_head: str = "linear"
    cosine_scale: float = 20.0
    cosine_mid: float = 0.55
    aux_classes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # training-only heads: classes
    # > 0: subtract from each feature frame the mean of the last cmn_frames frames (itself included):
    # causal cepstral mean normalization, which removes a stationary channel (microphone, equalizer,
    # band limit, noise floor) and keeps what changes from frame to frame. A new stream's context is
    # zeros, the training mean of the standardized features, so early frames subtract a mean pulled
    # towards it. 0: off.
    cmn_frames: int = 0

    def __post_init__(self) -> None:
        self.dilations = tuple(self.dilations)
        self.heads = tuple(self.heads)
        self.aux_classes = {name: tuple(classes) for name, classes in self.aux_classes.items()}
        for name, classes in self.aux_classes.items():
            if len(classes) < 2:
                raise ValueError(f"auxiliary head {name!r} needs at least two classes, got {classes}")
        frames, rem = divmod(self.hop_samples, self.frame_hop_samples)
        if rem or frames % self.pool:
            raise ValueError(f"hop_samples {self.hop_samples} must be a whole number of "
                             f"{self.pool} x {self.frame_hop_samples}-sample frames")
        if self.window_samples < self.frame_hop_samples:
            raise ValueError("window_samples must be >= frame_hop_samples")
        if self.spoof_head not in ("linear", "cosine"):
            raise ValueError(f"spoof_head must be 'linear' or 'cosine', got {self.spoof_head!r}")
        if self.spoof_head == "cosine" and "spoof" not in self.heads:
            raise ValueError("spoof_head = 'cosine' needs a 'spoof' head")
        if self.cmn_frames < 0 or self.cmn_frames == 1:
            raise ValueError(f"cmn_frames must be 0 (off) or >= 2 (1 would subtract each frame from itself), "
                             f"got {self.cmn_frames}")
        if self.cosine_scale <= 0:
            raise ValueError(f"cosine_scale must be > 0, got {self.cosine_scale}")
        # validates the feature kind and the band
        feature_dim(self.features, self.window_samples, self.n_filters, self.n_ceps, self.top_hz, self.sample_rate_hz)

    @property
    def steps_per_hop(self) -> int:
        return self.hop_samples // self.frame_hop_samples // self.pool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def with_audio_context(audio_ctx: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The STFT's input (the carried samples, then the new hops) [B, ctx + n*hop], and the new context [B, ctx]."""
    x = torch.cat([audio_ctx, audio], dim=1)
    return x, x[:, x.shape[1] - audio_ctx.shape[1]:]


class CausalConv(nn.Module):
    """Conv1d over time that sees only the past; its left context arrives as a state."""

    context: int

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.context = (kernel - 1) * dilation
        self.conv = nn.Conv1d(c_in, c_out, kernel, dilation=dilation)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        full = torch.cat([ctx, x], dim=2)  # [B, C_in, context + T]
        return self.conv(full), full[:, :, full.shape[2] - self.context:]  # [B, C_out, T], new ctx


def subtract_moving_mean(feats: torch.Tensor, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """feats [B, F, T] minus the mean of each frame's window of ctx.shape[2] + 1 frames (the carried
    frames, then the new ones), and the new context [B, F, ctx frames]."""
    full = torch.cat([ctx, feats], dim=2)
    mean = nn.functional.avg_pool1d(full, kernel_size=ctx.shape[2] + 1, stride=1)  # [B, F, T]
    return feats - mean, full[:, :, full.shape[2] - ctx.shape[2]:]


class StreamingDetector(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.frontend = SpectralFrontEnd(c.features, c.sample_rate_hz, c.window_samples,
                                         c.frame_hop_samples, c.n_filters, c.n_ceps, c.top_hz)
        feat = self.frontend.out_dim
        self.conv0 = CausalConv(feat, c.conv_channels, c.conv_kernel, 1)
        self.pool = nn.AvgPool1d(c.pool, c.pool)
        self.convs = nn.ModuleList(
            CausalConv(c.conv_channels, c.conv_channels, c.conv_kernel, d) for d in c.dilations)
        self.gru = nn.GRU(c.conv_channels, c.gru_hidden, c.gru_layers, batch_first=True)
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.gru_hidden, len(c.heads))
        if c.spoof_head == "cosine":  # the linear head's spoof row then goes unused: one layout for both kinds
            self.spoof_direction = nn.Parameter(torch.randn(c.gru_hidden) / c.gru_hidden ** 0.5)
        self.aux_heads = nn.ModuleDict(
            {name: nn.Linear(c.gru_hidden, len(classes)) for name, classes in c.aux_classes.items()})

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-stream state shapes (without batch), in the order forward() takes them."""
        c = self.config
        shapes: dict[str, tuple[int, ...]] = {"audio_ctx": (c.window_samples - c.frame_hop_samples,)}
        if c.cmn_frames:
            shapes["cmn_ctx"] = (self.frontend.out_dim, c.cmn_frames - 1)
        shapes["conv0_ctx"] = (self.frontend.out_dim, self.conv0.context)
        for i, conv in enumerate(self.convs, 1):
            assert isinstance(conv, CausalConv)
            shapes[f"conv{i}_ctx"] = (c.conv_channels, conv.context)
        shapes["gru_h"] = (c.gru_layers, c.gru_hidden)
        return shapes

    def initial_states(self, batch: int) -> list[torch.Tensor]:
        return [torch.zeros(batch, *shape) for shape in self.state_shapes().values()]

    def forward(self, audio: torch.Tensor, states: list[torch.Tensor]
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """audio [B, n * hop_samples], states as state_shapes() -> logits [B, n, heads], new states."""
        at_hop_end, new_states = self.hop_outputs(audio, states)
        return self.head_logits(at_hop_end), new_states

    def forward_with_aux(self, audio: torch.Tensor, states: list[torch.Tensor],
                         band_mask: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[torch.Tensor]]:
        """forward() plus each auxiliary head's logits [B, n, classes] (training); `band_mask`
        [B, frontend.bands] hides those spectral channels of each row (frequency masking)."""
        at_hop_end, new_states = self.hop_outputs(audio, states, band_mask)
        aux = {name: head(at_hop_end) for name, head in self.aux_heads.items()}
        return self.head_logits(at_hop_end), aux, new_states

    def head_logits(self, at_hop_end: torch.Tensor) -> torch.Tensor:
        """[B, n, H] hop outputs -> [B, n, heads] logits (the spoof column one-class when so configured)."""
        logits = self.head(at_hop_end)
        if self.config.spoof_head == "linear":
            return logits
        c = self.config
        cos = nn.functional.normalize(at_hop_end, dim=-1) @ nn.functional.normalize(self.spoof_direction, dim=0)
        column = c.heads.index("spoof")
        spoof = (c.cosine_scale * (c.cosine_mid - cos))[..., None]  # [B, n, 1]
        return torch.cat([logits[..., :column], spoof, logits[..., column + 1:]], dim=-1)

    def hop_outputs(self, audio: torch.Tensor, states: list[torch.Tensor],
                    band_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The (dropped-out) GRU output at each hop's end [B, n, H] that the heads read; new states."""
        audio_ctx, *net_states = states
        x, new_audio_ctx = with_audio_context(audio_ctx, audio)
        at_hop_end, new_net_states = self.outputs_from_spectrum(self.frontend.spectrum(x), self.frontend.bins,
                                                                net_states, band_mask)
        return at_hop_end, [new_audio_ctx, *new_net_states]

    def forward_from_spectrum(self, spec: torch.Tensor, spec_bins: int, net_states: list[torch.Tensor]
                              ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """forward() from a spectrum another front end computed (features.raw_from_spectrum) and
        the states after audio_ctx, which the caller carries: logits [B, n, heads], new states."""
        at_hop_end, new_states = self.outputs_from_spectrum(spec, spec_bins, net_states)
        return self.head_logits(at_hop_end), new_states

    def outputs_from_spectrum(self, spec: torch.Tensor, spec_bins: int, net_states: list[torch.Tensor],
                              band_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        c = self.config
        cmn_states: list[torch.Tensor] = []
        feats = self.frontend.from_spectrum(spec, spec_bins, band_mask)  # [B, F, n*hop/frame_hop]
        if c.cmn_frames:
            cmn_ctx, *net_states = net_states
            feats, new_cmn_ctx = subtract_moving_mean(feats, cmn_ctx)
            cmn_states = [new_cmn_ctx]
        conv0_ctx, *conv_ctxs, gru_h = net_states
        h, new_conv0_ctx = self.conv0(feats, conv0_ctx)  # [B, C, frames]
        h = self.pool(torch.relu(h))  # [B, C, frames/pool]
        new_conv_ctxs = []
        for conv, ctx in zip(self.convs, conv_ctxs, strict=True):
            y, new_ctx = conv(h, ctx)  # [B, C, steps]
            h = h + torch.relu(y)
            new_conv_ctxs.append(new_ctx)
        seq, new_h = self.gru(h.transpose(1, 2), gru_h.transpose(0, 1).contiguous())
        # seq: [B, steps, H]; new_h: [layers, B, H]
        at_hop_end = seq[:, c.steps_per_hop - 1:: c.steps_per_hop]  # [B, n, H]
        return self.dropout(at_hop_end), [*cmn_states, new_conv0_ctx, *new_conv_ctxs, new_h.transpose(0, 1)]

    def num_parameters(self) -> int:
        """Parameters that run at inference (the training-only auxiliary heads are not counted)."""
        aux = sum(p.numel() for p in self.aux_heads.parameters())
        return sum(p.numel() for p in self.parameters()) - aux


class DetectorEnsemble(nn.Module):
    """Several detectors fed the same hops; each head's logit is the mean of that head's logits
    over the members chosen for it (score-level fusion): by default every member, or
    `head_members` names them per head, e.g. {"spoof": (0,), "codec": (1,)} takes each head from
    the member trained for it (a specialist per head, as when one recipe helps one head and
    hurts the other).

    It has StreamingDetector's interface (config, state_shapes, initial_states, forward), so
    training's dev scoring, the exporter and the daemon treat it as one model whose states are
    the members' states side by side, each name prefixed with its member (`m0_gru_h`, ...).

    Members with the same STFT (window and frame hop; a low-band member's bins are the lowest
    rows of a full-band one's) share it: the widest member's spectrum is computed once and each
    member reads its bins from it, and one `audio_ctx` state serves all. The STFT is most of a
    member's cost, so a full-band + low-band pair then costs little more than one network.
    """

    head_weights: torch.Tensor

    def __init__(self, members: list[StreamingDetector],
                 head_members: dict[str, tuple[int, ...]] | None = None) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        first = members[0].config
        for member in members[1:]:
            c = member.config
            if (c.sample_rate_hz, c.hop_samples, c.heads) != (first.sample_rate_hz, first.hop_samples, first.heads):
                raise ValueError(f"ensemble members disagree on sample rate, hop or heads: "
                                 f"{(c.sample_rate_hz, c.hop_samples, c.heads)} vs "
                                 f"{(first.sample_rate_hz, first.hop_samples, first.heads)}")
        self.members = nn.ModuleList(members)
        self.config = first
        self.head_members = resolve_head_members(head_members or {}, first.heads, len(members))
        weights = torch.zeros(len(members), len(first.heads))  # [members, heads]
        for column, head in enumerate(first.heads):
            chosen = self.head_members[head]
            weights[list(chosen), column] = 1.0 / len(chosen)
        self.register_buffer("head_weights", weights, persistent=False)
        fronts = [m.frontend for m in members]
        self.shared_stft = all(f.shares_stft_with(fronts[0]) for f in fronts[1:])
        self.widest = max(range(len(members)), key=lambda i: fronts[i].bins)

    def detectors(self) -> list[StreamingDetector]:
        return [m for m in self.members if isinstance(m, StreamingDetector)]

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        members = self.detectors()
        if not self.shared_stft:
            return {f"m{i}_{name}": shape for i, member in enumerate(members)
                    for name, shape in member.state_shapes().items()}
        shapes = {"audio_ctx": members[0].state_shapes()["audio_ctx"]}
        shapes.update({f"m{i}_{name}": shape for i, member in enumerate(members)
                       for name, shape in member.state_shapes().items() if name != "audio_ctx"})
        return shapes

    def initial_states(self, batch: int) -> list[torch.Tensor]:
        return [torch.zeros(batch, *shape) for shape in self.state_shapes().values()]

    def forward(self, audio: torch.Tensor, states: list[torch.Tensor]
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        logits, new_states, start = [], [], 0
        if self.shared_stft:
            x, new_audio_ctx = with_audio_context(states[0], audio)
            states = states[1:]
            new_states.append(new_audio_ctx)
            widest = self.detectors()[self.widest].frontend
            spec = widest.spectrum(x)
        for member in self.detectors():
            if self.shared_stft:
                count = len(member.state_shapes()) - 1
                member_logits, member_states = member.forward_from_spectrum(spec, widest.bins, states[start:start + count])
            else:
                count = len(member.state_shapes())
                member_logits, member_states = member(audio, states[start:start + count])
            logits.append(member_logits)
            new_states.extend(member_states)
            start += count
        stacked = torch.stack(logits)  # [members, B, n, heads]
        return (stacked * self.head_weights[:, None, None, :]).sum(0), new_states

    def num_parameters(self) -> int:
        return sum(member.num_parameters() for member in self.detectors())


def resolve_head_members(chosen: dict[str, tuple[int, ...]], heads: tuple[str, ...], members: int
                         ) -> dict[str, tuple[int, ...]]:
    """Which members feed each head: those given, every member for the heads not given."""
    unknown = sorted(set(chosen) - set(heads))
    if unknown:
        raise ValueError(f"unknown head(s) {unknown}: the members' heads are {list(heads)}")
    resolved: dict[str, tuple[int, ...]] = {}
    for head in heads:
        indexes = tuple(chosen.get(head, range(members)))
        if not indexes or len(set(indexes)) != len(indexes) or not all(0 <= i < members for i in indexes):
            raise ValueError(f"head {head!r} needs distinct member indexes in 0..{members - 1}, got {list(indexes)}")
        resolved[head] = indexes
    idle = sorted(set(range(members)) - {i for indexes in resolved.values() for i in indexes})
    if idle:
        raise ValueError(f"member(s) {idle} feed no head: they would cost inference time for nothing")
    return resolved


Detector = StreamingDetector | DetectorEnsemble


def _detector_from(entry: dict[str, Any]) -> StreamingDetector:
    model = StreamingDetector(ModelConfig(**entry["model_args"]))
    model.load_state_dict(entry["model"], strict=True)
    return model


def load_checkpoint(path: str, map_location: str = "cpu") -> tuple[Detector, dict[str, Any]]:
    """Rebuild a model from a self-describing checkpoint (model_args + weights, or an ensemble's
    members); returns it in eval mode."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable checkpoint: {exc}") from exc
    if isinstance(ckpt, dict) and isinstance(ckpt.get("members"), list):
        head_members = {head: tuple(indexes) for head, indexes in ckpt.get("head_members", {}).items()}
        model: Detector = DetectorEnsemble([_detector_from(entry) for entry in ckpt["members"]], head_members)
    elif isinstance(ckpt, dict) and "model_args" in ckpt and "model" in ckpt:
        model = _detector_from(ckpt)
    else:
        raise ValueError(f"{path} is not a spoofwatch checkpoint (no model_args/model or members)")
    model.eval()
    return model, ckpt
