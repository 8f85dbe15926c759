"""The streaming two-head detector: raw audio hop + explicit state -> (spoof, codec) logits + new state.

One call consumes one or more whole hops. Every piece of memory the network needs
across calls is an explicit state tensor with the batch as dim 0, so one exported
graph serves a batch of unrelated streams (model_format.py):

    audio_ctx  [B, window - frame_hop]      last raw samples, the STFT's left overlap
    conv0_ctx  [B, F, k - 1]                feature frames the first causal conv still needs
    convN_ctx  [B, C, (k - 1) * dilation]   same for each residual causal conv (after pooling)
    gru_h      [B, layers, H]               GRU hidden state (batch first, unlike torch.nn.GRU)

A new stream starts from all-zero states. Because every layer is causal and its context
is carried exactly, one forward over a whole clip equals feeding its hops one by one
(tests/test_model_streaming.py checks it).

Per hop of 100 ms (1600 samples at 16 kHz): 10 STFT frames of 20 ms every 10 ms -> causal
conv -> average-pool x2 -> residual dilated causal convs -> GRU over 5 steps of 20 ms ->
two logits read at the hop's last step.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from streaming_models.features import SpectralFrontEnd, feature_dim
from streaming_models.runtime.settings import build

# Options removed in issue #24 (docs/model-card.md has their studies), with the value each had when
# off: checkpoints and exported models written before then store them, and load while they were off.
REMOVED_OPTIONS_OFF: dict[str, Any] = {"spoof_head": "linear", "cmn_frames": 0, "aux_classes": {}}
REMOVED_WITH_SPOOF_HEAD = ("cosine_scale", "cosine_mid")  # read only by spoof_head = "cosine"
LAST_COMMIT_WITH_THEM = "873a065"


@dataclass(frozen=True)
class ModelConfig:
    """The network: the [model] table of a training recipe, stored in every checkpoint."""

    sample_rate_hz: int = 16000  # the audio rate the model reads
    hop_samples: int = 1600  # samples per call (100 ms): the latency of one decision update
    window_samples: int = 320  # 20 ms STFT window (50 Hz bins up to 8 kHz)
    frame_hop_samples: int = 160  # 10 ms between STFT frames
    features: str = "logpow"  # logpow | lfcc | logmel (features.py)
    n_filters: int = 60  # filterbank size for lfcc / logmel
    n_ceps: int = 40  # cepstra kept for lfcc
    top_hz: float | None = None  # highest frequency the features describe (None: Nyquist)
    conv_channels: int = 64  # channels of every causal conv
    conv_kernel: int = 3  # kernel of every causal conv, in frames or steps
    pool: int = 2  # time pooling after the first conv: GRU steps are pool * 10 ms
    dilations: tuple[int, ...] = (1, 2)  # one residual causal conv per dilation, after pooling
    gru_hidden: int = 80  # GRU units
    gru_layers: int = 1  # stacked GRU layers
    dropout: float = 0.1  # on the GRU output the heads read (training only)
    heads: tuple[str, ...] = ("spoof", "codec")  # one logit each, in this order

    def __post_init__(self) -> None:
        object.__setattr__(self, "dilations", tuple(self.dilations))  # lists, from JSON metadata
        object.__setattr__(self, "heads", tuple(self.heads))
        frames, rem = divmod(self.hop_samples, self.frame_hop_samples)
        if rem or frames % self.pool:
            raise ValueError(f"hop_samples {self.hop_samples} must be a whole number of "
                             f"{self.pool} x {self.frame_hop_samples}-sample frames")
        if self.window_samples < self.frame_hop_samples:
            raise ValueError("window_samples must be >= frame_hop_samples")
        # validates the feature kind and the band
        feature_dim(self.features, self.window_samples, self.n_filters, self.n_ceps, self.top_hz, self.sample_rate_hz)

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> ModelConfig:
        """The config a checkpoint (`model_args`) or an exported model's metadata holds. The keys of
        options removed in issue #24 are accepted at their off value and refused otherwise."""
        args = dict(stored)
        for key, off in REMOVED_OPTIONS_OFF.items():
            if key in args and args.pop(key) != off:
                raise ValueError(f"this model uses {key} = {stored[key]!r}, an option removed in issue #24; "
                                 f"load it with the code of commit {LAST_COMMIT_WITH_THEM}")
        for key in REMOVED_WITH_SPOOF_HEAD:
            args.pop(key, None)
        return build(cls, args)

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

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-stream state shapes (without batch), in the order forward() takes them."""
        c = self.config
        shapes: dict[str, tuple[int, ...]] = {"audio_ctx": (c.window_samples - c.frame_hop_samples,)}
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
        audio_ctx, *net_states = states
        x, new_audio_ctx = with_audio_context(audio_ctx, audio)
        logits, new_net_states = self.forward_from_spectrum(self.frontend.spectrum(x), self.frontend.bins, net_states)
        return logits, [new_audio_ctx, *new_net_states]

    def forward_from_spectrum(self, spec: torch.Tensor, spec_bins: int, net_states: list[torch.Tensor]
                              ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """forward() from a spectrum another front end computed (features.raw_from_spectrum) and
        the states after audio_ctx, which the caller carries: logits [B, n, heads], new states."""
        c = self.config
        feats = self.frontend.from_spectrum(spec, spec_bins)  # [B, F, n*hop/frame_hop]
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
        return self.head(self.dropout(at_hop_end)), [new_conv0_ctx, *new_conv_ctxs, new_h.transpose(0, 1)]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


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

    `or_groups` fuses a head by "any of": {"spoof": ((0, 1), (2,))} gives that head the larger of
    group (0, 1)'s mean logit and member 2's, each less its `or_offsets` entry (the logit of the
    group's own operating threshold, so that every group is calibrated alike before the max). A
    specialist that knows one kind of synthesis then raises the score without being averaged away
    by members that never learned it. A head's `head_members` are then all of its groups' members.
    """

    head_weights: torch.Tensor
    or_weights: torch.Tensor
    or_offset_values: torch.Tensor
    or_mask: torch.Tensor
    or_heads: torch.Tensor

    def __init__(self, members: list[StreamingDetector],
                 head_members: dict[str, tuple[int, ...]] | None = None,
                 or_groups: dict[str, tuple[tuple[int, ...], ...]] | None = None,
                 or_offsets: dict[str, tuple[float, ...]] | None = None) -> None:
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
        self.or_groups, self.or_offsets = resolve_or_groups(or_groups or {}, or_offsets or {}, first.heads)
        chosen = dict(head_members or {})
        for head, groups in self.or_groups.items():
            union = tuple(i for group in groups for i in group)
            if head in chosen and tuple(chosen[head]) != union:
                raise ValueError(f"head {head!r}: head_members {list(chosen[head])} are not its or_groups' members "
                                 f"{list(union)}")
            chosen[head] = union
        self.head_members = resolve_head_members(chosen, first.heads, len(members))
        weights = torch.zeros(len(members), len(first.heads))  # [members, heads]
        for column, head in enumerate(first.heads):
            indexes = self.head_members[head]
            weights[list(indexes), column] = 1.0 / len(indexes)
        self.register_buffer("head_weights", weights, persistent=False)
        self._register_or_buffers(len(members))
        fronts = [m.frontend for m in members]
        self.shared_stft = all(f.shares_stft_with(fronts[0]) for f in fronts[1:])
        self.widest = max(range(len(members)), key=lambda i: fronts[i].bins)

    def _register_or_buffers(self, members: int) -> None:
        """or_weights [groups, members, heads] (1/len(group) at the group's head), or_offset_values [groups],
        or_mask [groups, heads] (0 where the group feeds the head, else far below any logit), or_heads [heads]."""
        heads = self.config.heads
        rows = [(heads.index(head), group, offset) for head, head_groups in self.or_groups.items()
                for group, offset in zip(head_groups, self.or_offsets[head], strict=True)]
        weights = torch.zeros(max(1, len(rows)), members, len(heads))
        offsets = torch.zeros(max(1, len(rows)))
        mask = torch.full((max(1, len(rows)), len(heads)), -1e6)
        for row, (column, group, offset) in enumerate(rows):
            weights[row, list(group), column] = 1.0 / len(group)
            offsets[row] = offset
            mask[row, column] = 0.0
        self.register_buffer("or_weights", weights, persistent=False)
        self.register_buffer("or_offset_values", offsets, persistent=False)
        self.register_buffer("or_mask", mask, persistent=False)
        self.register_buffer("or_heads", torch.tensor([float(h in self.or_groups) for h in heads]), persistent=False)

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
        fused = (stacked * self.head_weights[:, None, None, :]).sum(0)
        if not self.or_groups:
            return fused, new_states
        # Written with the named buffers only (no indexing constants), so that the exported graph's unnamed
        # initializers stay the members' weights (graft.members_from_onnx counts them).
        groups = torch.einsum("mbnh,gmh->bng", stacked, self.or_weights) - self.or_offset_values
        any_of = (groups[..., None] + self.or_mask).amax(-2)  # [B, n, heads]; -inf-like where no group
        return fused * (1.0 - self.or_heads) + any_of * self.or_heads, new_states

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


def resolve_or_groups(groups: dict[str, tuple[tuple[int, ...], ...]], offsets: dict[str, tuple[float, ...]],
                      heads: tuple[str, ...]) -> tuple[dict[str, tuple[tuple[int, ...], ...]], dict[str, tuple[float, ...]]]:
    """Checked `or_groups` and their offsets (0 where none are given yet: before calibration)."""
    unknown = sorted((set(groups) | set(offsets)) - set(heads))
    if unknown:
        raise ValueError(f"or_groups name unknown head(s) {unknown}: the members' heads are {list(heads)}")
    if set(offsets) - set(groups):
        raise ValueError(f"or_offsets given for head(s) without or_groups: {sorted(set(offsets) - set(groups))}")
    resolved_groups, resolved_offsets = {}, {}
    for head, head_groups in groups.items():
        cleaned = tuple(tuple(int(i) for i in group) for group in head_groups)
        if len(cleaned) < 2 or any(not group for group in cleaned):
            raise ValueError(f"head {head!r}: an 'any of' fusion needs two or more non-empty groups, got "
                             f"{[list(g) for g in cleaned]}")
        flat = [i for group in cleaned for i in group]
        if len(set(flat)) != len(flat):
            raise ValueError(f"head {head!r}: a member may be in one group only, got {[list(g) for g in cleaned]}")
        head_offsets = tuple(float(o) for o in offsets.get(head, (0.0,) * len(cleaned)))
        if len(head_offsets) != len(cleaned):
            raise ValueError(f"head {head!r}: {len(cleaned)} groups but {len(head_offsets)} offsets")
        resolved_groups[head], resolved_offsets[head] = cleaned, head_offsets
    return resolved_groups, resolved_offsets


Network = StreamingDetector | DetectorEnsemble  # what training, export and ensembling handle


def _detector_from(entry: dict[str, Any], path: str) -> StreamingDetector:
    try:
        model = StreamingDetector(ModelConfig.from_dict(entry["model_args"]))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    model.load_state_dict(entry["model"], strict=True)
    return model


def load_checkpoint(path: str, map_location: str = "cpu") -> tuple[Network, dict[str, Any]]:
    """Rebuild a model from a self-describing checkpoint (model_args + weights, or an ensemble's
    members); returns it in eval mode."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable checkpoint: {exc}") from exc
    if isinstance(ckpt, dict) and isinstance(ckpt.get("members"), list):
        head_members = {head: tuple(indexes) for head, indexes in ckpt.get("head_members", {}).items()}
        or_groups = {head: tuple(tuple(g) for g in groups) for head, groups in ckpt.get("or_groups", {}).items()}
        or_offsets = {head: tuple(o) for head, o in ckpt.get("or_offsets", {}).items()}
        model: Network = DetectorEnsemble([_detector_from(entry, path) for entry in ckpt["members"]], head_members,
                                          or_groups, or_offsets)
    elif isinstance(ckpt, dict) and "model_args" in ckpt and "model" in ckpt:
        model = _detector_from(ckpt, path)
    else:
        raise ValueError(f"{path} is not a spoofwatch checkpoint (no model_args/model or members)")
    model.eval()
    return model, ckpt
