"""Fuse trained detectors into one ensemble checkpoint (mean of their logits), ready to export.

    spoofwatch ensemble --checkpoint runs/a/best.pt --checkpoint runs/b/best.pt --out runs/ab/best.pt
    spoofwatch ensemble --checkpoint runs/a/best.pt --checkpoint runs/b/best.pt --head spoof=0 --head codec=1 ...

Runs that differ only in seed disagree by several EER points on unseen systems
(docs/labeling-study.md); averaging them is the cheapest way to keep what each learned
and lose what each guessed. `--head NAME=I[,J...]` takes a head from the members listed
(0-based, in --checkpoint order) instead of all of them: a recipe that helps one head and hurts
the other (docs/model-card.md) then serves only the head it helps. `--head spoof=0,1|2` fuses that
head by "any of": the larger of group (0, 1)'s mean logit and member 2's, each group first calibrated
on the dev split so that its own operating threshold sits at probability 0.5 (a specialist for one
kind of synthesis beside a generalist; model.DetectorEnsemble). The members must share the
label policy and the corpus; they may leave different generator or codec families out of training
(only what every member left out stays out of the dev split the thresholds come from).
The operating thresholds are chosen again for the fused scores, on the whole dev split of
that corpus, the same way training chooses them (`operating_fpr` of the first member's
recipe); the dev EERs of every member and of the ensemble on that split are printed and stored.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import structlog
import torch

from streaming_models.data.manifest import ManifestError, read_manifest
from streaming_models.hashing import file_hash
from streaming_models.logs import log_to_stderr
from streaming_models.metrics import threshold_at_false_positive_rate
from streaming_models.model import DetectorEnsemble, StreamingDetector, load_checkpoint
from streaming_models.train import dev_scores, evaluate_dev, excluding, head_labels
from streaming_models.training_data import Clip, load_clips

log = structlog.get_logger(__name__)


def _agreed(ckpts: list[dict[str, Any]], paths: list[Path], what: str, value: Any) -> Any:
    values = [value(c) for c in ckpts]
    if any(v != values[0] for v in values[1:]):
        listing = ", ".join(f"{p}: {v!r}" for p, v in zip(paths, values, strict=True))
        raise ValueError(f"ensemble members must share the {what} ({listing})")
    return values[0]


def shared_exclusions(ckpts: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The codec families and generators every member left out of training. Members may differ (a
    recipe without some families fused with one that has them): what any member learned from is
    data the ensemble knows, so only what all of them left out stays out of the dev split."""
    families = [set(c["config"].get("exclude_codec_families", [])) for c in ckpts]
    generators = [set(c["config"].get("exclude_generators", [])) for c in ckpts]
    return sorted(set.intersection(*families)), sorted(set.intersection(*generators))


def parse_head_choices(texts: list[str]) -> dict[str, tuple[tuple[int, ...], ...]]:
    """['spoof=0,2|3', 'codec=1'] -> {'spoof': ((0, 2), (3,)), 'codec': ((1,),)}: each head's groups
    (one group: the mean of its members; several: "any of", see fuse); each head at most once."""
    chosen: dict[str, tuple[tuple[int, ...], ...]] = {}
    for text in texts:
        head, sep, indexes = text.partition("=")
        try:
            if not sep or not head.strip():
                raise ValueError
            groups = tuple(tuple(int(i) for i in group.split(",")) for group in indexes.split("|"))
        except ValueError:
            raise ValueError(f"--head wants NAME=INDEX[,INDEX...][|INDEX...] (members counted from 0), "
                             f"got {text!r}") from None
        if head.strip() in chosen:
            raise ValueError("each head may be given once with --head")
        chosen[head.strip()] = groups
    return chosen


def calibrate_or_offsets(ensemble: DetectorEnsemble, dev: list[Clip], dev_seconds: float, operating_fpr: float,
                         smooth_hops: int = 1, min_hops: int = 1) -> dict[str, tuple[float, ...]]:
    """Each "any of" group's offset: the logit of the score that flags `operating_fpr` of the head's
    dev negatives at any hop of their first `dev_seconds` when the group's members alone are the head
    (their mean logit). The peak, not the score at `dev_seconds`: the max passes on every spike of
    every group, and a specialist that spikes on the first hops of genuine speech would otherwise
    raise the fused head's false alarms at the start of every stream. `smooth_hops` and `min_hops` make it
    the peak of the daemon's decision window instead (its mean over that many hops, from that hop on)."""
    offsets: dict[str, tuple[float, ...]] = {}
    members = ensemble.detectors()
    for head, groups in ensemble.or_groups.items():
        column = ensemble.config.heads.index(head)
        negatives = head_labels(dev, head) == 0
        if not negatives.any():
            raise ValueError(f"the dev split has no negatives of head {head!r} to calibrate its groups on")
        head_offsets = []
        for group in groups:
            scorer = members[group[0]] if len(group) == 1 else DetectorEnsemble([members[i] for i in group])
            probs = dev_scores(scorer, dev, dev_seconds, peak=True, smooth_hops=smooth_hops, min_hops=min_hops)[:, column]
            threshold = min(max(threshold_at_false_positive_rate(probs[negatives], operating_fpr), 1e-6), 1 - 1e-6)
            head_offsets.append(math.log(threshold / (1.0 - threshold)))
        offsets[head] = tuple(head_offsets)
    return offsets


def fuse(paths: list[Path], manifest: Path | None = None,
         head_groups: dict[str, tuple[tuple[int, ...], ...]] | None = None, smooth_hops: int = 1, min_hops: int = 1
         ) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Return (the ensemble checkpoint, dev metrics per member and for the ensemble)."""
    if len(paths) < 2:
        raise ValueError("give at least two --checkpoint files")
    loaded = [load_checkpoint(str(p)) for p in paths]
    members = [model for model, _ in loaded if isinstance(model, StreamingDetector)]
    if len(members) < len(loaded):
        raise ValueError("members must be single detectors, not ensembles")
    ckpts = [c for _, c in loaded]
    policy = _agreed(ckpts, paths, "label policy", lambda c: c.get("policy"))
    corpus_hash = _agreed(ckpts, paths, "training corpus (manifest hash)", lambda c: c.get("corpus_hash"))
    exclusions = shared_exclusions(ckpts)
    manifest = manifest or Path(ckpts[0]["manifest"])
    if not manifest.is_file():
        raise ValueError(f"the members' corpus manifest {manifest} is missing: pass --manifest")
    if file_hash(manifest) != corpus_hash:
        raise ValueError(f"{manifest} is not the corpus the members trained on (hash {file_hash(manifest)}, "
                         f"theirs {corpus_hash}): thresholds must come from that corpus's dev split")
    config = {**ckpts[0]["config"], "exclude_codec_families": exclusions[0], "exclude_generators": exclusions[1]}
    dev_seconds, operating_fpr = config["dev_seconds"], config["operating_fpr"]  # the first member's recipe
    items = excluding([i for i in read_manifest(manifest) if i.split == "dev"], *exclusions)
    head_groups = head_groups or {}
    head_members = {head: tuple(i for group in groups for i in group) for head, groups in head_groups.items()}
    or_groups = {head: groups for head, groups in head_groups.items() if len(groups) > 1}
    ensemble = DetectorEnsemble(members, head_members, or_groups).eval()
    dev = load_clips(manifest, items, policy, ensemble.config.sample_rate_hz, "loading dev")
    if or_groups:
        ensemble = DetectorEnsemble(members, head_members, or_groups,
                                    calibrate_or_offsets(ensemble, dev, dev_seconds, operating_fpr,
                                                         smooth_hops, min_hops)).eval()
    report: dict[str, dict[str, float]] = {}
    for path, (model, _) in zip(paths, loaded, strict=True):
        report[str(path)], _ = evaluate_dev(model, dev, dev_seconds, operating_fpr)
    report["ensemble"], thresholds = evaluate_dev(ensemble, dev, dev_seconds, operating_fpr)
    ensemble.eval()  # evaluate_dev leaves models in train mode
    checkpoint = {
        "members": [{"model_args": c["model_args"], "model": m.state_dict(), "step": int(c.get("step", 0)),
                     "source": str(p)} for p, (m, c) in zip(paths, loaded, strict=True)],
        "head_members": {head: list(indexes) for head, indexes in ensemble.head_members.items()},
        "or_groups": {head: [list(g) for g in groups] for head, groups in ensemble.or_groups.items()},
        "or_offsets": {head: list(offsets) for head, offsets in ensemble.or_offsets.items()},
        "policy": policy, "manifest": str(manifest), "corpus_hash": corpus_hash, "config": dict(config),
        "step": max(int(c.get("step", 0)) for c in ckpts), "thresholds": thresholds,
        "dev_metrics": report["ensemble"], "dev_items": len(dev),
    }
    return checkpoint, report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="spoofwatch ensemble", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, action="append", required=True,
                        help="a member's training checkpoint (.pt); give two or more")
    parser.add_argument("--out", required=True, type=Path, help="ensemble checkpoint to write (.pt)")
    parser.add_argument("--manifest", type=Path, help="the members' corpus manifest (default: as recorded)")
    parser.add_argument("--head", action="append", default=[], metavar="NAME=I[,J...][|K...]",
                        help="take head NAME from these members only (0-based, --checkpoint order); groups "
                             "split by | are fused by the larger calibrated logit ('any of'); "
                             "default: every head is the mean of all members")
    parser.add_argument("--smooth-hops", type=int, default=1, metavar="N",
                        help="calibrate 'any of' groups on the peak of an N-hop moving mean (the daemon's "
                             "decision.window_hops) instead of the raw per-hop peak (1, the default)")
    parser.add_argument("--min-hops", type=int, default=1, metavar="N",
                        help="calibrate 'any of' groups from hop N on (the daemon's decision.min_hops; default 1)")
    args = parser.parse_args(argv)
    if args.smooth_hops < 1 or args.min_hops < 1:
        parser.error("--smooth-hops and --min-hops must be >= 1")
    log_to_stderr()
    missing = [str(p) for p in args.checkpoint if not p.is_file()]
    if missing:
        parser.error(f"checkpoint(s) not found: {', '.join(missing)}")
    try:
        checkpoint, report = fuse(args.checkpoint, args.manifest, parse_head_choices(args.head),
                                  args.smooth_hops, args.min_hops)
    except (OSError, ValueError, ManifestError) as exc:
        print(f"spoofwatch ensemble: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, args.out.with_suffix(".tmp"))
    args.out.with_suffix(".tmp").replace(args.out)
    log.info("ensemble_written", out=str(args.out), members=len(checkpoint["members"]),
             dev_items=checkpoint["dev_items"], thresholds=checkpoint["thresholds"])
    print(json.dumps({"out": str(args.out), "dev_items": checkpoint["dev_items"],
                      "dev_metrics": {k: {m: round(v, 4) for m, v in r.items()} for k, r in report.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
