"""Hours per source, generator, codec, channel and split: `summary.json` and `summary.md`."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from streaming_models.data.manifest import CorpusItem

_AXES: dict[str, Callable[[CorpusItem], str]] = {
    "source": lambda i: i.source,
    "generator": lambda i: i.generator,
    "codec": lambda i: i.codec,
    "codec_family": lambda i: i.codec_family,
    "codec_objective": lambda i: i.codec_objective,
    # every neural codec with its objective (e.g. "inhouse-token1k/synthesis"), the rest as "none"
    "neural_codec": lambda i: f"{i.codec_family}/{i.codec_objective}" if i.codec == "neural" else "none",
    "split": lambda i: i.split,
    "language": lambda i: i.language,
    "class": lambda i: f"{i.source}/{i.codec}",
}


def channel_kind(item: CorpusItem, neural_specs: set[str]) -> str:
    rest = [s for s in item.channel if s not in neural_specs]
    return "channel" if rest else "clean"


def summarize(items: Iterable[CorpusItem], neural_specs: Iterable[str] = (), extra: dict[str, Any] | None = None) -> dict[str, Any]:
    neural = set(neural_specs)
    axes = dict(_AXES)
    axes["channel"] = lambda i: channel_kind(i, neural)
    axes["class_channel"] = lambda i: f"{i.source}/{'neural' if i.codec == 'neural' else 'no-neural'}/{channel_kind(i, neural)}"
    hours: dict[str, dict[str, float]] = {axis: defaultdict(float) for axis in axes}
    counts: dict[str, dict[str, int]] = {axis: defaultdict(int) for axis in axes}
    speakers: dict[str, set[str]] = defaultdict(set)
    total_s, n = 0.0, 0
    for item in items:
        n += 1
        total_s += item.duration_s
        speakers[item.split].add(item.speaker)
        for axis, key in axes.items():
            hours[axis][key(item)] += item.duration_s / 3600
            counts[axis][key(item)] += 1
    return {
        "items": n,
        "hours": round(total_s / 3600, 3),
        "hours_by": {a: {k: round(v, 3) for k, v in sorted(d.items())} for a, d in hours.items()},
        "items_by": {a: dict(sorted(d.items())) for a, d in counts.items()},
        "speakers_by_split": {k: len(v) for k, v in sorted(speakers.items())},
        **(extra or {}),
    }


def to_markdown(summary: dict[str, Any]) -> str:
    lines = [f"# Corpus summary: {summary.get('recipe', '')}", "",
             f"{summary['items']} items, {summary['hours']} h of audio (16 kHz FLAC).", ""]
    for key in ("build_seconds", "workers", "fingerprint", "seed", "worker_seconds_per_audio_second"):
        if key in summary:
            lines.append(f"- {key}: {summary[key]}")
    lines.append(f"- speakers per split: {summary['speakers_by_split']}")
    for axis, table in summary["hours_by"].items():
        lines += ["", f"## hours by {axis}", "", f"| {axis} | hours | items |", "|---|---:|---:|"]
        for key, h in table.items():
            lines.append(f"| {key} | {h:.3f} | {summary['items_by'][axis][key]} |")
    return "\n".join(lines) + "\n"


def write_summary(out_dir: Path, summary: dict[str, Any]) -> None:
    for name, text in (("summary.json", json.dumps(summary, indent=2, sort_keys=True)),
                       ("summary.md", to_markdown(summary))):
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out_dir / name)
