"""Turn a recipe into a deterministic list of jobs, before any audio is made.

A job renders one base utterance (a bonafide recording, a TTS sentence or a
copy-synthesis of a bonafide recording) and writes one or more outputs: the item
itself, optionally through a channel chain, and optionally a neural-codec copy
(itself optionally through a channel chain). Every random choice is drawn here
from the recipe seed, so the same recipe always plans the same corpus.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

from streaming_models.data import texts
from streaming_models.data.generators import Voice
from streaming_models.data.manifest import Source, Split
from streaming_models.data.recipe import NeuralCodecSpec, Recipe
from streaming_models.data.sources import Utterance

JobKind = Literal["bonafide", "tts", "copy"]
_SPLIT_SALT = "spoofwatch-split-v1"  # fixed, so that every recipe puts a speaker in the same split
# Seconds of audio per character of text, to plan TTS hours before synthesis; measured with
# benchmarks/corpus_generators.py (4 sentences each, 2026-11-26). Unlisted engines get the default.
_SECONDS_PER_CHAR = {"espeak": 0.0685, "festival": 0.103, "flite": 0.081, "hibari": 0.093, "kokoro": 0.077,
                     "openjtalk": 0.213, "piper": 0.111}
_DEFAULT_SECONDS_PER_CHAR = 0.08
# A TTS family with fewer voices than this is split by item, not by voice: held out by voice, a
# one- or two-voice engine (hibari, Open JTalk, Piper, festival) would land whole in one split, so
# training would never see it or checkpoint selection never score it. Voices are not people:
# speaker-disjoint splits protect against learning human speakers, which stay disjoint.
MIN_VOICES_FOR_VOICE_SPLIT = 4
_MIN_CLIP_S = 0.05  # two fillets-ng-data-nl files decode to zero samples
_MIN_PARENT_S = 0.25  # a vocoder needs a few frames; this also leaves out Asterisk's 0.2 s beeps


@dataclass(frozen=True)
class OutputSpec:
    item_id: str
    transforms: tuple[str, ...]  # applied in order: optional neural codec first, then the channel chain


@dataclass(frozen=True)
class Job:
    job_id: str
    kind: JobKind
    source: Source
    generator: str  # "human" for bonafide, else the family
    speaker: str
    language: str
    split: Split
    corpus: str
    outputs: tuple[OutputSpec, ...]
    audio_path: str | None = None  # bonafide recording, or the parent of a copy-synthesis
    joined_paths: tuple[str, ...] = ()  # further clips of the same speaker appended to audio_path
    parent: str | None = None
    text: str | None = None
    voice: Voice | None = None
    planned_s: float = 0.0


def stable_hash(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def job_rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, stable_hash(key)])


def split_for_speaker(speaker: str, dev_fraction: float) -> Split:
    digest = hashlib.sha256(f"{_SPLIT_SALT}:{speaker}".encode()).digest()
    return "dev" if int.from_bytes(digest[:8], "big") / 2**64 < dev_fraction else "train"


def utterance_split(utt: Utterance, dev_fraction: float) -> Split:
    return utt.fixed_split or split_for_speaker(utt.speaker, dev_fraction)


def slug(spec: str) -> str:
    return spec.replace("@", "-").replace(".", "p").replace("/", "-")


class Planner:
    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe

    def _outputs(self, item_id: str, source: Source) -> tuple[OutputSpec, ...]:
        recipe = self.recipe
        chains = recipe.channel.chains

        def channel(rng: np.random.Generator) -> tuple[str, ...]:
            if chains and rng.random() < recipe.channel.fraction:
                return tuple(chains[int(rng.integers(len(chains)))])
            return ()

        def codec_copy(group: NeuralCodecSpec, rng: np.random.Generator) -> OutputSpec | None:
            fraction = group.bonafide_fraction if source == "bonafide" else group.spoof_fraction
            if group.transforms and rng.random() < fraction:
                codec = group.transforms[int(rng.integers(len(group.transforms)))]
                return OutputSpec(f"{item_id}~{slug(codec)}", (codec, *channel(rng)))
            return None

        rng = job_rng(recipe.seed, f"outputs:{item_id}")  # per item, so editing one section moves no other
        outputs = [OutputSpec(item_id, channel(rng))]
        # The first codec group shares the item's stream (as when it was the only one); every later
        # group has a stream of its own, so adding, editing or removing one moves nothing else.
        draws = [(recipe.neural_codec, rng)] + [
            (group, job_rng(recipe.seed, f"outputs:{group.stream_key()}:{item_id}"))
            for group in recipe.more_neural_codecs]
        for group, group_rng in draws:
            copy = codec_copy(group, group_rng)
            if copy is not None:
                outputs.append(copy)
        return tuple(outputs)

    def _segments(self, pool: list[Utterance], join_to_s: float) -> list[list[Utterance]]:
        """Consecutive clips of one speaker (in id order) joined until each segment lasts join_to_s."""
        if join_to_s <= 0:
            return [[u] for u in pool]
        segments: list[list[Utterance]] = []
        current: list[Utterance] = []
        for utt in sorted(pool, key=lambda u: (u.speaker, u.utt_id)):
            if current and (utt.speaker != current[0].speaker or utt.fixed_split != current[0].fixed_split
                            or sum(u.duration_s for u in current) + utt.duration_s > self.recipe.max_item_s):
                segments.append(current)
                current = []
            current.append(utt)
            if sum(u.duration_s for u in current) >= join_to_s:
                segments.append(current)
                current = []
        if current:
            segments.append(current)
        return segments

    def bonafide_jobs(self, pools: dict[str, list[Utterance]]) -> list[Job]:
        jobs: list[Job] = []
        for spec in self.recipe.bonafide:
            usable = [u for u in pools[spec.source] if u.duration_s >= _MIN_CLIP_S]
            segments = self._segments(usable, spec.join_to_s)
            order = np.random.default_rng([self.recipe.seed, stable_hash(f"bonafide:{spec.source}")]).permutation(
                len(segments))
            total_s = 0.0
            limit = len(order) if spec.max_items is None else min(spec.max_items, len(order))
            for index in order[:limit]:
                if spec.hours is not None and total_s >= spec.hours * 3600:
                    break
                segment = segments[int(index)]
                utt = segment[0]
                job_id = utt.utt_id if len(segment) == 1 else f"{utt.utt_id}+{len(segment) - 1}"
                dur = min(sum(u.duration_s for u in segment), self.recipe.max_item_s)
                total_s += dur
                jobs.append(Job(
                    job_id=job_id, kind="bonafide", source="bonafide", generator="human",
                    speaker=utt.speaker, language=utt.language, split=utterance_split(utt, self.recipe.dev_fraction),
                    corpus=utt.corpus, outputs=self._outputs(job_id, "bonafide"), audio_path=str(utt.path),
                    joined_paths=tuple(str(u.path) for u in segment[1:]), planned_s=dur,
                ))
        return jobs

    def tts_jobs(self, voices_by_family: dict[str, list[Voice]]) -> list[Job]:
        jobs: list[Job] = []
        for spec in self.recipe.tts:
            voices = [v for v in voices_by_family[spec.family]
                      if (not spec.voices or v.voice_id in spec.voices)
                      and (not spec.languages or v.language in spec.languages)
                      and v.language in texts.languages()]
            if not voices:
                raise ValueError(f"tts {spec.family}: no voice matches voices={spec.voices} languages={spec.languages}")
            rng = np.random.default_rng([self.recipe.seed, stable_hash(f"tts:{spec.family}")])
            split_by_item = len({v.voice_id for v in voices}) < MIN_VOICES_FOR_VOICE_SPLIT
            total_s, index = 0.0, 0
            while total_s < spec.hours * 3600:
                voice = voices[int(rng.integers(len(voices)))]
                pool = texts.sentences(voice.language)
                count = int(rng.integers(spec.sentences_per_item[0], spec.sentences_per_item[1] + 1))
                text = " ".join(pool[int(i)] for i in rng.choice(len(pool), size=min(count, len(pool)), replace=False))
                planned = len(text) * _SECONDS_PER_CHAR.get(spec.family, _DEFAULT_SECONDS_PER_CHAR)
                total_s += planned
                job_id = f"{spec.family}-{index:06d}"
                index += 1
                speaker = f"{spec.family}/{voice.voice_id}"
                split = split_for_speaker(job_id if split_by_item else speaker, self.recipe.dev_fraction)
                jobs.append(Job(
                    job_id=job_id, kind="tts", source="spoof", generator=spec.family, speaker=speaker,
                    language=voice.language, split=split,
                    corpus="spoofwatch-tts", outputs=self._outputs(job_id, "spoof"), text=text, voice=voice,
                    planned_s=planned,
                ))
        return jobs

    def copy_jobs(self, pools: dict[str, list[Utterance]]) -> list[Job]:
        jobs: list[Job] = []
        for spec in self.recipe.copy_synthesis:
            pool = [u for name in spec.parents for u in pools[name]]
            order = np.random.default_rng([self.recipe.seed, stable_hash(f"copy:{spec.family}")]).permutation(len(pool))
            total_s = 0.0
            for index in order:
                if total_s >= spec.hours * 3600:
                    break
                utt = pool[int(index)]
                if utt.duration_s < _MIN_PARENT_S:
                    continue
                dur = min(utt.duration_s, self.recipe.max_item_s)
                total_s += dur
                job_id = f"{spec.family}-{utt.utt_id}"
                jobs.append(Job(
                    job_id=job_id, kind="copy", source="spoof", generator=spec.family, speaker=utt.speaker,
                    language=utt.language, split=utterance_split(utt, self.recipe.dev_fraction),
                    corpus="spoofwatch-copysynth", outputs=self._outputs(job_id, "spoof"), audio_path=str(utt.path),
                    parent=utt.utt_id, planned_s=dur,
                ))
        return jobs
