"""Build a corpus from a recipe: check every input, plan, render in a process pool, write the manifest.

Resumable: each finished job leaves a record (`records/JOB.json`, written after its
audio, atomically), and a rerun skips jobs whose record and files exist. The
manifest and summary are rewritten atomically from the records at the end, in plan
order, so an interrupted-then-resumed build gives the same manifest as one run.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog
from tqdm import tqdm

from streaming_models.data.generators import (
    GeneratorUnavailable,
    Voice,
    is_text_to_speech,
    make_generator,
)
from streaming_models.data.manifest import CorpusItem, write_manifest
from streaming_models.data.plan import Job, OutputSpec, Planner, stable_hash
from streaming_models.data.recipe import Recipe
from streaming_models.data.render import (
    GeneratorFactory,
    RenderConfig,
    Renderer,
    TransformFactory,
    registry_transform,
)
from streaming_models.data.sources import (
    SourceUnavailable,
    Utterance,
    load_source,
)
from streaming_models.data.summary import summarize, write_summary
from streaming_models.paths import debian_speech_cache_dir, engine_cache_dir

log = structlog.get_logger(__name__)


def job_key(job: Job) -> str:
    """A digest of everything planned for a job: a record is reused only for the very same job."""
    return hashlib.sha256(repr(job).encode("utf-8")).hexdigest()[:16]


class BuildError(RuntimeError):
    """The build cannot start or finish; the message lists every problem found."""


_TRAIN_COMMAND = re.compile(r"`(spoofwatch resynth train [^`]+)`")


def _train_hint(problems: list[str]) -> str:
    """The in-house models a recipe names are build artefacts: say once which commands make them."""
    commands = list(dict.fromkeys(m.group(1) for p in problems for m in _TRAIN_COMMAND.finditer(p)))
    if not commands:
        return ""
    return "\ntrain the missing in-house resynthesis models first (or `make resynthesis`):\n  " + "\n  ".join(commands)


@dataclass(frozen=True)
class RenderTask:
    """A job to render, all of it or only the outputs its earlier record lacks (`done`: those it has)."""

    job: Job
    outputs: tuple[OutputSpec, ...]
    done: tuple[list[CorpusItem], float] | None = None

    def render_job(self) -> Job:
        return self.job if self.done is None else replace(self.job, outputs=self.outputs)


@dataclass(frozen=True)
class BuildOptions:
    out_dir: Path
    workers: int = 2
    cache_dir: Path = field(default_factory=engine_cache_dir)  # in the working directory
    debian_cache_dir: Path = field(default_factory=debian_speech_cache_dir)
    shared_dir: Path | None = None
    progress: bool = True
    stop_after_jobs: int | None = None  # render at most this many new jobs, then stop (an interruption)
    # Build into a folder made by an earlier version of the recipe: jobs planned the same are reused,
    # jobs that only gained outputs (a new codec group) render just those, the rest render anew.
    update_recipe: bool = False
    # Start a new --out from another build's audio and records (of any recipe): every job planned
    # the same is reused, so a recipe that adds to another costs only what it adds.
    seed_from: Path | None = None
    transform_factory: TransformFactory = registry_transform
    generator_factory: GeneratorFactory = make_generator


@dataclass
class BuildReport:
    planned_jobs: int
    skipped_jobs: int  # already complete from an earlier run
    rendered_jobs: int
    failures: dict[str, str] = field(default_factory=dict)
    complete: bool = False
    seconds: float = 0.0
    manifest: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)


# One renderer per worker process (its engines stay loaded between jobs); set by the pool initializer.
_WORKER_RENDERER: Renderer | None = None


def _init_worker(config: RenderConfig) -> None:
    global _WORKER_RENDERER
    # One core per worker: engines must not each spin up threads for every core.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    _WORKER_RENDERER = Renderer(config)


RenderResult = tuple[str, list[dict[str, Any]] | None, str | None, float]  # job id, items, error, seconds


def _render_in_worker(job: Job) -> RenderResult:
    assert _WORKER_RENDERER is not None
    return _render_safely(_WORKER_RENDERER, job)


def _render_safely(renderer: Renderer, job: Job) -> RenderResult:
    started = time.perf_counter()
    try:
        items = renderer.run(job)
    except Exception as exc:  # noqa: BLE001 - one bad item is reported with its id, the build goes on
        return job.job_id, None, f"{type(exc).__name__}: {exc}", time.perf_counter() - started
    return job.job_id, [json.loads(item.to_json()) for item in items], None, time.perf_counter() - started


class CorpusBuilder:
    def __init__(self, recipe: Recipe, options: BuildOptions) -> None:
        self.recipe = recipe
        self.options = options
        self.out_dir = Path(options.out_dir)

    # ---- before any audio ------------------------------------------------------------------
    def preflight(self) -> tuple[dict[str, list[Utterance]], dict[str, list[Voice]]]:
        """Load every source and check every engine and transform; list all problems at once."""
        problems: list[str] = []
        pools: dict[str, list[Utterance]] = {}
        wanted_sources = {b.source for b in self.recipe.bonafide}
        wanted_sources |= {p for c in self.recipe.copy_synthesis for p in c.parents}
        for name in sorted(wanted_sources):
            try:
                pools[name] = load_source(name, self.options.shared_dir, self.options.debian_cache_dir)
            except (SourceUnavailable, ValueError) as exc:
                problems.append(f"source {name}: {exc}")
        voices: dict[str, list[Voice]] = {}
        for family in self.recipe.families():
            try:
                generator = self.options.generator_factory(family, self.options.cache_dir)
                generator.check_available()
            except (GeneratorUnavailable, ValueError) as exc:
                problems.append(f"generator {family}: {exc}")
                continue
            if is_text_to_speech(generator):
                voices[family] = generator.voices()  # type: ignore[union-attr]
        for spec in self.recipe.transform_specs():
            try:
                self.options.transform_factory(spec).check_available()
            except Exception as exc:  # noqa: BLE001 - the transform package defines its own error types
                problems.append(f"transform {spec}: {type(exc).__name__}: {exc}")
        for spec in self.recipe.neural_specs():
            if not any(p.startswith(f"transform {spec}:") for p in problems):
                kind = self.options.transform_factory(spec).kind
                if kind != "neural":
                    problems.append(f"neural_codec.transforms has {spec!r} of kind {kind!r}, not 'neural'")
        if problems:
            raise BuildError("cannot build the corpus:\n  - " + "\n  - ".join(problems) + _train_hint(problems))
        return pools, voices

    def voices_only(self) -> tuple[dict[str, list[Utterance]], dict[str, list[Voice]]]:
        """Sources and voice lists without checking engines: enough to re-plan an existing build."""
        pools = {name: load_source(name, self.options.shared_dir, self.options.debian_cache_dir)
                 for name in sorted({b.source for b in self.recipe.bonafide}
                                    | {p for c in self.recipe.copy_synthesis for p in c.parents})}
        voices: dict[str, list[Voice]] = {}
        for family in self.recipe.families():
            generator = self.options.generator_factory(family, self.options.cache_dir)
            if is_text_to_speech(generator):
                voices[family] = generator.voices()  # type: ignore[union-attr]
        return pools, voices

    def status(self) -> tuple[int, int, Path]:
        """(jobs done, jobs planned, manifest path): writes the manifest of what is done so far.

        Safe while a build of the same folder runs: it only reads records and replaces
        `manifest.partial.jsonl` (or, once every job is done, writes the full manifest).
        """
        jobs = self.plan(*self.voices_only())
        items: list[CorpusItem] = []
        done = 0
        for job in jobs:
            record = self._load_record(job)
            if record is not None:
                done += 1
                items.extend(record[0])
        name = "manifest.jsonl" if done == len(jobs) else "manifest.partial.jsonl"
        write_manifest(self.out_dir / name, items)
        summary = summarize(items, self.recipe.neural_specs(),
                            {"recipe": self.recipe.name, "jobs_done": done, "jobs_planned": len(jobs)})
        (self.out_dir / "summary.partial.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
        return done, len(jobs), self.out_dir / name

    def plan(self, pools: dict[str, list[Utterance]], voices: dict[str, list[Voice]]) -> list[Job]:
        planner = Planner(self.recipe)
        jobs = planner.bonafide_jobs(pools) + planner.tts_jobs(voices) + planner.copy_jobs(pools)
        ids = [o.item_id for j in jobs for o in j.outputs]
        if len(set(ids)) != len(ids):
            raise BuildError("the plan has duplicate item ids (a source listed twice?)")
        return jobs

    # ---- records ---------------------------------------------------------------------------
    def _record_path(self, job_id: str) -> Path:
        return self.out_dir / "records" / f"{job_id}.json"

    def _load_record(self, job: Job) -> tuple[list[CorpusItem], float] | None:
        path = self._record_path(job.job_id)
        if not path.is_file():
            return None
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("job_key") != job_key(job):
            return None  # planned differently (e.g. by an older version of the builder): redo it
        items = [CorpusItem.from_dict(d) for d in raw["items"]]
        if all((self.out_dir / i.path).is_file() for i in items):
            return items, float(raw.get("seconds", 0.0))
        return None

    def _render_task(self, job: Job) -> RenderTask | None:
        """None when the job is done; else what to render. A record of the same job with fewer outputs
        (the recipe gained a codec group since) keeps its items: only the new outputs are rendered,
        which gives the same files as a full render (each output has its own seeded stream)."""
        if self._load_record(job) is not None:
            return None
        path = self._record_path(job.job_id)
        if path.is_file():
            raw = json.loads(path.read_text(encoding="utf-8"))
            count = len(raw.get("items", []))
            if 0 < count < len(job.outputs) and raw.get("job_key") == job_key(replace(job, outputs=job.outputs[:count])):
                items = [CorpusItem.from_dict(d) for d in raw["items"]]
                if all((self.out_dir / i.path).is_file() for i in items):
                    return RenderTask(job, job.outputs[count:], (items, float(raw.get("seconds", 0.0))))
        return RenderTask(job, job.outputs)

    def _write_record(self, job: Job, items: list[dict[str, Any]], seconds: float) -> None:
        path = self._record_path(job.job_id)
        tmp = path.with_name(f".{path.name}.tmp")
        record = {"items": items, "seconds": round(seconds, 3), "job_key": job_key(job)}
        tmp.write_text(json.dumps(record, sort_keys=True, ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)

    def _seed_out_dir(self, seed: Path) -> None:
        """Fill a new out_dir with `seed`'s audio and records, hard-linked where the file system
        allows (safe: every file is written to a temporary name and renamed, never rewritten in
        place, so a rendering here cannot change the seed's files), else copied."""
        if not (seed / "records").is_dir() or not (seed / "audio").is_dir():
            raise BuildError(f"--seed-from {seed}: not a corpus build folder (no records/ and audio/ there)")
        if self.out_dir.resolve() == seed.resolve():
            raise BuildError("--seed-from names the --out folder itself")
        if self.out_dir.exists() and any(self.out_dir.iterdir()):
            raise BuildError(f"--seed-from fills a new folder, and {self.out_dir} is not empty; choose another --out")

        def link_or_copy(src: str, dst: str) -> object:
            try:
                os.link(src, dst)
                return dst
            except OSError:
                return shutil.copy2(src, dst)

        for part in ("audio", "records"):
            shutil.copytree(seed / part, self.out_dir / part, copy_function=link_or_copy, dirs_exist_ok=True)
        log.info("corpus_seeded", seed=str(seed), records=sum(1 for _ in (self.out_dir / "records").iterdir()))

    def _check_out_dir(self) -> None:
        if self.options.seed_from is not None:
            self._seed_out_dir(Path(self.options.seed_from))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "records").mkdir(exist_ok=True)
        stamp = self.out_dir / "recipe.json"
        fingerprint = self.recipe.fingerprint()
        if stamp.is_file():
            previous = json.loads(stamp.read_text(encoding="utf-8"))
            if previous.get("fingerprint") == fingerprint:
                return
            if not self.options.update_recipe:
                raise BuildError(
                    f"{self.out_dir} holds a build of another recipe (fingerprint {previous.get('fingerprint')}, "
                    f"this one {fingerprint}); choose another --out, delete that folder, or (for a newer "
                    f"version of the same recipe) pass --update-recipe to reuse every job planned the same"
                )
            if previous.get("name") != self.recipe.name:
                raise BuildError(f"{self.out_dir} holds recipe {previous.get('name')!r}, not {self.recipe.name!r}: "
                                 f"--update-recipe only updates a build of the same recipe")
            log.info("corpus_recipe_updated", out=str(self.out_dir), previous=previous.get("fingerprint"),
                     now=fingerprint)
        stamp.write_text(json.dumps({"name": self.recipe.name, "fingerprint": fingerprint}) + "\n")

    # ---- the build ---------------------------------------------------------------------------
    def build(self) -> BuildReport:
        started = time.monotonic()
        pools, voices = self.preflight()
        jobs = self.plan(pools, voices)
        self._check_out_dir()
        # Render in a fixed shuffled order: costly engines spread over the whole run, and an
        # interrupted build's partial manifest has a bit of every family.
        tasks = [t for t in map(self._render_task, jobs) if t is not None]
        todo = sorted(tasks, key=lambda t: stable_hash(t.job.job_id))
        report = BuildReport(planned_jobs=len(jobs), skipped_jobs=len(jobs) - len(todo), rendered_jobs=0)
        if self.options.stop_after_jobs is not None:
            todo = todo[: self.options.stop_after_jobs]
        planned_h = sum(j.planned_s for j in jobs) / 3600
        log.info("corpus_plan", recipe=self.recipe.name, jobs=len(jobs), to_render=len(todo),
                 extending=sum(t.done is not None for t in todo),
                 planned_base_hours=round(planned_h, 2), workers=self.options.workers)
        config = RenderConfig(
            out_dir=self.out_dir, seed=self.recipe.seed, cache_dir=Path(self.options.cache_dir),
            max_item_s=self.recipe.max_item_s, level_dbfs=self.recipe.level_dbfs,
            transform_factory=self.options.transform_factory, generator_factory=self.options.generator_factory,
        )
        bar = tqdm(total=len(todo), desc=f"corpus {self.recipe.name}", unit="job", disable=not self.options.progress)
        by_id = {t.job.job_id: t for t in todo}
        for job_id, items, error, seconds in self._render_all([t.render_job() for t in todo], config):
            if error is not None:
                report.failures[job_id] = error
                log.warning("corpus_job_failed", job=job_id, error=error)
            else:
                assert items is not None
                task = by_id[job_id]
                if task.done is not None:
                    items = [json.loads(i.to_json()) for i in task.done[0]] + items
                    seconds += task.done[1]
                self._write_record(task.job, items, seconds)
                report.rendered_jobs += 1
            bar.update(1)
        bar.close()
        report.seconds = round(time.monotonic() - started, 1)
        return self._finish(jobs, report)

    def _render_all(self, todo: list[Job], config: RenderConfig) -> Any:
        if self.options.workers <= 1 or len(todo) <= 1:
            renderer = Renderer(config)
            for job in todo:
                yield _render_safely(renderer, job)
            return
        context = multiprocessing.get_context("spawn")
        with context.Pool(self.options.workers, initializer=_init_worker, initargs=(config,)) as pool:
            yield from pool.imap_unordered(_render_in_worker, todo, chunksize=1)

    def _finish(self, jobs: list[Job], report: BuildReport) -> BuildReport:
        items: list[CorpusItem] = []
        missing = 0
        # Worker seconds per generator over seconds of base audio: a real-time factor that includes
        # the codec and channel transforms of the job's outputs and any engine loading.
        work_s: dict[str, float] = {}
        audio_s: dict[str, float] = {}
        for job in jobs:
            record = self._load_record(job)
            if record is None:
                missing += 1
                continue
            items.extend(record[0])
            work_s[job.generator] = work_s.get(job.generator, 0.0) + record[1]
            audio_s[job.generator] = audio_s.get(job.generator, 0.0) + record[0][0].duration_s
        report.complete = missing == 0
        if not report.complete:
            # What is done so far stays usable (e.g. for a quick training run) while the build goes on.
            write_manifest(self.out_dir / "manifest.partial.jsonl", items)
            log.warning("corpus_incomplete", missing_jobs=missing, failures=len(report.failures),
                        partial_manifest=str(self.out_dir / "manifest.partial.jsonl"), partial_items=len(items))
            return report
        (self.out_dir / "manifest.partial.jsonl").unlink(missing_ok=True)
        report.manifest = self.out_dir / "manifest.jsonl"
        write_manifest(report.manifest, items)
        report.summary = summarize(items, self.recipe.neural_specs(), {
            "recipe": self.recipe.name, "seed": self.recipe.seed, "fingerprint": self.recipe.fingerprint(),
            "build_seconds": report.seconds, "workers": self.options.workers,
            "worker_seconds_per_audio_second": {g: round(work_s[g] / max(audio_s[g], 1e-9), 4) for g in sorted(work_s)},
        })
        write_summary(self.out_dir, report.summary)
        log.info("corpus_written", manifest=str(report.manifest), items=len(items), hours=report.summary["hours"])
        return report
