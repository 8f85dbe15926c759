"""Registry + local git snapshots -> a labelled 16 kHz corpus (manifest.jsonl, summary).

Order of work, per repository in registry order: list the files at the commit, label each audio
file by its first matching rule, drop reserved files and their folders, decode, drop copies
(against dev-eval first, then across repositories), write FLAC and the manifest. Every drop is
counted per repository and reason in the summary.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import posixpath
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import structlog

from streaming_models.audio_io import load_audio
from streaming_models.data.loaders.labels_csv import load_labels_csv
from streaming_models.data.manifest import CorpusItem, read_manifest, write_manifest
from streaming_models.data.public.decode import TARGET_RATE_HZ, DecodeError, decode
from streaming_models.data.public.dedupe import DuplicateIndex
from streaming_models.data.public.mirror import (
    ABSENT,
    TreeFile,
    find_git_dir,
    iter_blobs,
    list_files,
)
from streaming_models.data.public.registry import Label, SourceEntry, is_audio
from streaming_models.data.summary import summarize, write_summary

log = structlog.get_logger(__name__)
WIDEBAND_RATE_HZ = 22050
KNOWN_PREFIX = "known:"  # index keys of an earlier corpus's items
_DECODE_BATCH = 64


class SnapshotMismatch(ValueError):
    """The registry does not fit the snapshots (a rule matching nothing, a missing commit)."""


@dataclass(frozen=True)
class ImportOptions:
    out: Path
    reserved_md5: frozenset[str] = frozenset()
    dev_eval_labels: Path | None = None  # dev-eval's labels.csv: copies of its files are dropped
    known_corpora: tuple[Path, ...] = ()  # earlier corpora (folders with manifest.jsonl): copies are dropped
    dev_fraction: float = 0.1
    workers: int = 2
    dry_run: bool = False


@dataclass
class RepoReport:
    """What happened to one repository's audio files."""

    repo: str
    commit: str
    audio_files: int = 0
    labelled: Counter[str] = field(default_factory=Counter)  # by rule ("rule 3: spoof/vits")
    skipped: Counter[str] = field(default_factory=Counter)  # by reason
    unmatched: list[str] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)  # reserved, reserved-folder, duplicate, ...
    kept: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "commit": self.commit, "audio_files": self.audio_files,
                "labelled": dict(self.labelled), "skipped": dict(self.skipped),
                "unmatched": len(self.unmatched), "unmatched_examples": self.unmatched[:10],
                "dropped": dict(self.dropped), "kept": self.kept}


@dataclass(frozen=True)
class _Planned:
    file: TreeFile
    label: Label


def read_reserved(path: Path | None) -> frozenset[str]:
    if path is None:
        return frozenset()
    return frozenset(line.split()[0].lower() for line in path.read_text().splitlines() if line.strip())


def plan_repository(entry: SourceEntry, files: list[TreeFile], report: RepoReport) -> list[_Planned]:
    """Label every audio file; a rule that matches no file is an error (its glob is wrong)."""
    used: Counter[int] = Counter()
    planned = []
    for file in files:
        if not is_audio(file.path):
            continue
        report.audio_files += 1
        rule = entry.rule_for(file.path)
        if rule is None:
            report.unmatched.append(file.path)
            continue
        used[rule.index] += 1
        if rule.source == "skip":
            report.skipped[rule.reason or ""] += 1
            continue
        label = rule.label(file.path, entry.language)
        report.labelled[f"rule {rule.index + 1}: {label.source}/{label.generator}"
                        + (f"/{label.codec_family}" if label.codec != "none" else "")] += 1
        planned.append(_Planned(file, label))
    idle = [r.index + 1 for r in entry.rules if used[r.index] == 0]
    if idle:
        raise SnapshotMismatch(f"{entry.path}: rule(s) {idle} match no audio file of {entry.repo} at {entry.commit[:12]}")
    return planned


def _reserved_folders(planned: list[_Planned], md5: dict[str, str], reserved: frozenset[str]) -> set[str]:
    return {posixpath.dirname(p.file.path) for p in planned if md5[p.file.blob] in reserved}


def _audio_name(blob: str) -> str:
    return f"audio/{blob[:2]}/{blob}.flac"


def _decode_job(args: tuple[bytes, str, str]) -> dict[str, Any]:
    """Decode one stored file and write its 16 kHz FLAC (in a worker); a failure is returned, not raised."""
    data, suffix, out_path = args
    try:
        decoded = decode(data, suffix)
    except DecodeError as exc:
        return {"error": str(exc)}
    peak = float(np.max(np.abs(decoded.audio))) if decoded.audio.size else 0.0
    audio = decoded.audio / peak * 0.99 if peak > 1.0 else decoded.audio
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.flac")
    sf.write(tmp, audio, TARGET_RATE_HZ, subtype="PCM_16")
    tmp.replace(path)
    meta = {"native_rate_hz": decoded.native_rate_hz, "native_format": decoded.native_format,
            "lossy": decoded.lossy, "native_channels": decoded.native_channels,
            "duration_s": round(len(audio) / TARGET_RATE_HZ, 4)}
    path.with_suffix(".json").write_text(json.dumps(meta))
    return meta


def _cached(out: Path, blob: str) -> dict[str, Any] | None:
    meta = out / _audio_name(blob)
    if meta.is_file() and meta.with_suffix(".json").is_file():
        return json.loads(meta.with_suffix(".json").read_text())  # type: ignore[no-any-return]
    return None


def _split(repo: str, key: str, dev_fraction: float) -> str:
    digest = hashlib.sha1(f"public-split:{repo}:{key}".encode()).digest()
    return "dev" if int.from_bytes(digest[:4], "big") / 2**32 < dev_fraction else "train"


def _item(entry: SourceEntry, planned: _Planned, meta: dict[str, Any], dev_fraction: float) -> CorpusItem:
    label, path = planned.label, planned.file.path
    # one sentence's renderings share a split; without a pair key, one speaker's files do
    group = label.pair_key or (label.speaker if label.speaker != "unknown" else path)
    extra = {"family": label.family, "repo_path": path, "commit": entry.commit, "blob": planned.file.blob,
             "native_rate_hz": str(meta["native_rate_hz"]), "native_format": meta["native_format"],
             "lossy": meta["lossy"]}
    if label.pair_key:
        extra["pair"] = label.pair_key
    return CorpusItem(
        path=_audio_name(planned.file.blob), source=label.source, generator=label.generator, codec=label.codec,
        codec_family=label.codec_family, codec_objective=label.codec_objective, speaker=f"{entry.repo}:{label.speaker}",
        language=label.language, split=_split(entry.repo, group, dev_fraction), duration_s=meta["duration_s"],  # type: ignore[arg-type]
        corpus=entry.repo, item_id=f"{entry.repo}:{path}", extra=extra)


def _with_parents(items: list[CorpusItem]) -> list[CorpusItem]:
    """A rendering's parent is the uncoded genuine recording of the same sentence (same pair key)."""
    truth: dict[tuple[str, str], str] = {}
    for item in items:
        key = item.extra.get("pair")
        if key and item.source == "bonafide" and item.codec == "none":
            truth.setdefault((item.corpus, key), item.item_id)
    out = []
    for item in items:
        key = item.extra.get("pair")
        parent = truth.get((item.corpus, key)) if key else None
        out.append(replace(item, parent=parent) if parent and parent != item.item_id else item)
    return out


def _dev_eval_index(labels_csv: Path | None, index: DuplicateIndex) -> int:
    if labels_csv is None:
        return 0
    items = load_labels_csv(labels_csv)
    for item in items:
        index.add(load_audio(item.path, TARGET_RATE_HZ), f"dev-eval:{item.item_id}", "dev-eval")
    return len(items)


def _kind(source: str, codec: str, codec_family: str) -> str:
    return f"{source}/{codec}/{codec_family}"


def _known_index(corpora: tuple[Path, ...], index: DuplicateIndex) -> int:
    """Index an earlier corpus's items, so that an import adding to it keeps none of its clips twice."""
    count = 0
    for corpus in corpora:
        for item in read_manifest(corpus / "manifest.jsonl"):
            audio, _ = sf.read(corpus / item.path, dtype="float32")  # an absolute item path stays as it is
            kind = _kind(item.source, item.codec, item.codec_family)
            index.add(audio, f"{KNOWN_PREFIX}{item.item_id}", item.corpus, kind)
            count += 1
    return count


def _drop_reason(key: str, conflicting: bool) -> str:
    if key.startswith("dev-eval:"):
        return "dev-eval-copy"
    if conflicting:
        return "conflicting-copy"
    return "known-corpus-copy" if key.startswith(KNOWN_PREFIX) else "duplicate"


def _decoded_stream(entry: SourceEntry, git_dir: Path, todo: list[_Planned], options: ImportOptions,
                    pool: ProcessPoolExecutor | None) -> Iterator[tuple[_Planned, dict[str, Any]]]:
    """(planned file, decode result) in plan order; cached decodes are reused, the rest run in the pool."""
    unique = {p.file.blob: p.file for p in todo}  # a page may hold one file under two names: decode it once
    need = [file for blob, file in unique.items() if _cached(options.out, blob) is None]
    results: dict[str, dict[str, Any]] = {}
    for start in range(0, len(need), _DECODE_BATCH):  # bounded: a batch of stored files in memory at once
        jobs = [(data, posixpath.splitext(file.path)[1], str(options.out / _audio_name(file.blob)))
                for file, data in iter_blobs(git_dir, need[start:start + _DECODE_BATCH])]
        decoded = pool.map(_decode_job, jobs) if pool is not None else map(_decode_job, jobs)
        for file, result in zip(need[start:start + _DECODE_BATCH], decoded, strict=True):
            results[file.blob] = result
    for planned in todo:
        yield planned, results.get(planned.file.blob) or _cached(options.out, planned.file.blob) or {}


def import_public(entries: list[SourceEntry], mirror: Path, options: ImportOptions) -> tuple[list[CorpusItem], list[RepoReport]]:
    index = DuplicateIndex()
    dev_eval_files = 0 if options.dry_run else _dev_eval_index(options.dev_eval_labels, index)
    known_items = 0 if options.dry_run else _known_index(options.known_corpora, index)
    items: list[CorpusItem] = []
    reports: list[RepoReport] = []
    # spawned, not forked: a forked worker would hold the git reader's pipe open
    pool = (ProcessPoolExecutor(options.workers, mp_context=multiprocessing.get_context("spawn"))
            if options.workers > 1 and not options.dry_run else None)
    try:
        for entry in entries:
            git_dir = find_git_dir(mirror, entry.repo)
            report = RepoReport(entry.repo, entry.commit)
            reports.append(report)
            planned = plan_repository(entry, list_files(git_dir, entry.commit), report)
            report.dropped["absent-from-snapshot"] += sum(p.file.size == ABSENT for p in planned)
            planned = [p for p in planned if p.file.size != ABSENT]
            if not report.dropped["absent-from-snapshot"]:
                del report.dropped["absent-from-snapshot"]
            md5 = {file.blob: hashlib.md5(data).hexdigest() for file, data in iter_blobs(git_dir, [p.file for p in planned])}
            folders = _reserved_folders(planned, md5, options.reserved_md5)
            todo = []
            for p in planned:
                if md5[p.file.blob] in options.reserved_md5:
                    report.dropped["reserved"] += 1
                elif posixpath.dirname(p.file.path) in folders:
                    report.dropped["reserved-folder"] += 1
                else:
                    todo.append(p)
            log.info("repository_planned", repo=entry.repo, audio=report.audio_files, labelled=len(planned),
                     unmatched=len(report.unmatched), reserved=sum(report.dropped.values()))
            if options.dry_run:
                report.kept = len(todo)
                continue
            for p, result in _decoded_stream(entry, git_dir, todo, options, pool):
                if "error" in result or not result:
                    report.dropped["undecodable"] += 1
                    log.warning("undecodable", repo=entry.repo, path=p.file.path, error=result.get("error"))
                    continue
                audio, _ = sf.read(options.out / _audio_name(p.file.blob), dtype="float32")
                if len(audio) < TARGET_RATE_HZ // 2:
                    report.dropped["shorter-than-0.5s"] += 1
                    continue
                kind = _kind(p.label.source, p.label.codec, p.label.codec_family)
                copy = index.find(audio, entry.repo, kind)
                if copy is not None:
                    report.dropped[_drop_reason(copy.key, copy.conflicting)] += 1
                    if copy.conflicting:
                        log.warning("conflicting_copy", repo=entry.repo, path=p.file.path, kind=kind, copy_of=copy.key)
                    continue
                item = _item(entry, p, result, options.dev_fraction)
                index.add(audio, item.item_id, entry.repo, kind)
                items.append(item)
                report.kept += 1
    finally:
        if pool is not None:
            pool.shutdown()
    log.info("import_done", items=len(items), dev_eval_files_indexed=dev_eval_files,
             known_items_indexed=known_items)
    return _with_parents(items), reports


def public_summary(items: list[CorpusItem], reports: list[RepoReport]) -> dict[str, Any]:
    summary = summarize(items, extra={"recipe": "public sources (configs/data/public)"})
    hours: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    # the breadth targets are always reported, also at zero (an import of one 16 kHz page has none)
    hours["targets"].update(dict.fromkeys(
        ("genuine_uncoded_at_22khz_or_more", "synthetic", "neural_codec_resynthesis"), 0.0))
    for item in items:
        h = item.duration_s / 3600
        hours["family"][item.extra.get("family", "human")] += h
        hours["repository"][item.corpus] += h
        hours["native_rate_hz"][item.extra.get("native_rate_hz", "?")] += h
        hours["lossy"][item.extra.get("lossy", "?")] += h
        if item.source == "bonafide" and item.codec == "none" and int(item.extra.get("native_rate_hz", 0)) >= WIDEBAND_RATE_HZ:
            hours["targets"]["genuine_uncoded_at_22khz_or_more"] += h
        if item.source == "spoof":
            hours["targets"]["synthetic"] += h
        if item.codec == "neural":
            hours["targets"]["neural_codec_resynthesis"] += h
    systems = sorted({i.generator for i in items if i.source == "spoof"} |
                     {f"codec:{i.codec_family}" for i in items if i.codec == "neural"})
    summary["public"] = {
        "repositories": len({i.corpus for i in items}),
        "systems": len(systems), "system_names": systems,
        "hours_by": {axis: {k: round(v, 3) for k, v in sorted(d.items())} for axis, d in hours.items()},
        "reports": [r.as_dict() for r in reports],
    }
    return summary


def write_outputs(out: Path, items: list[CorpusItem], reports: list[RepoReport]) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out / "manifest.jsonl", items)
    summary = public_summary(items, reports)
    write_summary(out, summary)
    (out / "summary.md").write_text((out / "summary.md").read_text() + "\n" + public_markdown(summary))
    return summary


def public_markdown(summary: dict[str, Any]) -> str:
    public = summary["public"]
    lines = ["## Public sources", "", f"{public['repositories']} repositories, {public['systems']} systems.", ""]
    for axis, values in public["hours_by"].items():
        lines.append(f"### Hours by {axis}")
        lines += [f"- {k}: {v:.3f}" for k, v in sorted(values.items(), key=lambda kv: -kv[1])]
        lines.append("")
    lines += ["### Per repository", "", "| repository | audio | kept | skipped | unmatched | dropped |", "|---|---|---|---|---|---|"]
    for r in public["reports"]:
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(r["dropped"].items())) or "-"
        lines.append(f"| {r['repo']} | {r['audio_files']} | {r['kept']} | {sum(r['skipped'].values())} | "
                     f"{r['unmatched']} | {dropped} |")
    return "\n".join(lines) + "\n"
