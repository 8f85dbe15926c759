"""The source registry: one TOML file per public repository, with rules that label its files.

A file is read by the project's config loader (streaming_models/runtime/settings.py) into a frozen
`SourceEntry` holding its `[[rule]]` tables as `Rule`s: unknown keys and mistyped values are refused
there, what spans keys in each rule's and entry's `__post_init__`, what spans files in
`load_registry`. Every failure is a `ConfigError` naming the file, the rule (`rule[i]`, counted from
0 as the loader counts tables) and the key, so a bad entry fails before any audio is read.

A rule's globs are matched against the whole path inside the repository ('*' stays within a
folder, '**' crosses folders); the first matching rule labels the file.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from streaming_models.data.loaders.codecs import codec_objective as objective_of_codec
from streaming_models.data.manifest import Codec, CodecObjective
from streaming_models.runtime.settings import INTERNAL, ConfigError, build, read_toml, require

RuleSource = Literal["bonafide", "spoof", "skip"]
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a")
GeneratorFamily = Literal[
    "acoustic-tts", "vits", "diffusion-tts", "flow-matching-tts", "codec-lm-tts", "vc",
    "gan-vocoder", "diffusion-vocoder", "flow-vocoder", "autoregressive-vocoder",
    "source-filter-vocoder", "dsp-vocoder", "other-neural",
]
GENERATOR_FAMILIES: tuple[str, ...] = get_args(GeneratorFamily)
# Kept for independent evaluation (issue #21): never fetched, imported or scored here.
RESERVED_REPOSITORIES = frozenset(name.lower() for name in (
    "codecfake/codecfake.github.io", "styletts2/styletts2.github.io", "RUB-SysSec/WaveFake",
    "resemble-ai/Resemblyzer", "Jie-shiang/Codec_comparison", "MobileSpeech/MobileSpeech.github.io",
    "SpeechResearch/speechresearch.github.io", "Stability-AI/stable-codec-demo", "WavTokenizer/wavtokenizer.github.io",
    "exercise-book-yq/FreeCodec-Demo", "hubertsiuzdak/snac", "languagecodec/languagecodec.github.io",
    "neonbjb/tortoise-tts",
))
# dev-eval's own sources (the HiFi-GAN, NSF, Matcha-TTS, FreeVC and SemantiCodec pages) stay out of
# training: their owners' demo repositories, matched by owner/ or by owner/name prefix.
DEV_EVAL_SOURCES = ("jik876/", "nii-yamagishilab/project-nn-pytorch-scripts", "shivammehta25/",
                    "olawod/", "haoheliu/semanticodec")
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")


@dataclass(frozen=True)
class Label:
    """What a rule says of one file."""

    source: Literal["bonafide", "spoof"]
    generator: str
    family: str
    codec: Codec
    codec_family: str
    codec_objective: CodecObjective
    language: str
    speaker: str
    pair_key: str | None


def _require_text(key: str, value: str | None) -> None:
    require(key, value is not None and bool(value.strip()), "must be a non-empty string" + (" (missing)" if value is None else ""))


def _require_regex(key: str, value: str | None) -> None:
    if value is None:
        return
    require(key, bool(value), "must be a non-empty regex string")
    try:
        re.compile(value)
    except re.error as exc:
        raise ConfigError(key, f"{value!r} is not a valid regex: {exc}") from None


@dataclass(frozen=True)
class Rule:
    """One `[[rule]]` table, as written: a key the table leaves out is None (codec None is "none")."""

    glob: tuple[str, ...]  # a single glob in the file is read as a list of one
    source: RuleSource
    generator: str | None = None
    family: GeneratorFamily | None = None
    codec: Codec | None = None
    codec_family: str | None = None
    codec_objective: Literal["compression", "synthesis"] | None = None
    language: str | None = None
    speaker: str | None = None
    speaker_pattern: str | None = None
    pair: str | None = None
    reason: str | None = None
    index: int = field(default=0, metadata=INTERNAL)  # its place in the file, counted from 0

    def __post_init__(self) -> None:
        require("glob", bool(self.glob) and all(self.glob), "must be a path glob or a list of them")
        try:
            self.patterns  # noqa: B018 - compiled here so that a bad glob fails at load time
        except ValueError as exc:
            raise ConfigError("glob", str(exc)) from None
        if self.source == "skip":
            extra = [f.name for f in dataclasses.fields(self)
                     if f.name not in ("glob", "source", "reason", "index") and getattr(self, f.name) is not None]
            require("", not extra, f"a skip rule takes only glob and reason, not {extra}")
            _require_text("reason", self.reason)
            return
        require("reason", self.reason is None, "is for skip rules")
        if self.source == "spoof":
            _require_text("generator", self.generator)
            require("family", self.family is not None, f"is required in a spoof rule: one of {', '.join(GENERATOR_FAMILIES)}")
            require("generator", bool(_NAME_RE.match(str(self.generator))),
                    f"{self.generator!r} must be lowercase letters, digits, '-', '.', '+'")
        else:
            require("family" if self.family is not None else "generator",
                    self.family is None and self.generator in (None, "human"),
                    "a bonafide rule has no generator or family (a codec copy of a recording is bonafide with "
                    "codec = \"neural\" and its codec_family)")
        if self.codec in (None, "none"):
            require("codec_family" if self.codec_family is not None else "codec_objective",
                    self.codec_family is None and self.codec_objective is None,
                    "codec_family/codec_objective need codec = \"neural\" or \"telephony\"")
        else:
            _require_text("codec_family", self.codec_family)
            require("codec_family", bool(_NAME_RE.match(str(self.codec_family))),
                    f"{self.codec_family!r} must be lowercase letters, digits, '-'")
        require("language", self.language != "", "must be a non-empty string")
        require("speaker", self.speaker != "", "must be a non-empty string")
        require("speaker_pattern", self.speaker is None or self.speaker_pattern is None,
                "give speaker or speaker_pattern, not both")
        _require_regex("speaker_pattern", self.speaker_pattern)
        _require_regex("pair", self.pair)

    @functools.cached_property
    def patterns(self) -> tuple[re.Pattern[str], ...]:
        return tuple(glob_to_regex(g) for g in self.glob)

    @functools.cached_property
    def _speaker_regex(self) -> re.Pattern[str] | None:
        return re.compile(self.speaker_pattern) if self.speaker_pattern is not None else None

    @functools.cached_property
    def _pair_regex(self) -> re.Pattern[str] | None:
        return re.compile(self.pair) if self.pair is not None else None

    def matches(self, path: str) -> bool:
        return any(p.fullmatch(path) for p in self.patterns)

    def label(self, path: str, default_language: str) -> Label:
        if self.source == "skip":
            raise ValueError("a skip rule labels nothing")
        codec: Codec = self.codec or "none"
        codec_family = self.codec_family if codec != "none" and self.codec_family else "none"
        objective: CodecObjective = "none"
        if codec != "none":
            objective = self.codec_objective or (objective_of_codec(codec_family) if codec == "neural" else "compression")
        spoof = self.source == "spoof"
        return Label(source=self.source, generator=str(self.generator) if spoof else "human",
                     family=str(self.family) if spoof else "human", codec=codec, codec_family=codec_family,
                     codec_objective=objective, language=self.language or default_language,
                     speaker=self.speaker or _search(self._speaker_regex, path) or "unknown",
                     pair_key=_search(self._pair_regex, path))


@dataclass(frozen=True)
class SourceEntry:
    """One registry file: a repository at a commit and the rules that label its files."""

    repo: str
    commit: str
    ref: str
    licence: str
    language: str = "unknown"
    notes: str = ""
    rule: tuple[Rule, ...] = ()
    path: Path = field(default=Path(), metadata=INTERNAL)  # the file it was read from

    def __post_init__(self) -> None:
        require("repo", bool(_REPO_RE.match(self.repo)), f"must be owner/name, got {self.repo!r}")
        require("repo", self.repo.lower() not in RESERVED_REPOSITORIES,
                f"{self.repo} is reserved for independent evaluation and may not be imported")
        require("repo", not self.repo.lower().startswith(DEV_EVAL_SOURCES),
                f"{self.repo} is one of dev-eval's sources, which stay out of training")
        require("commit", bool(_COMMIT_RE.match(self.commit)), f"must be 40 lowercase hex digits, got {self.commit!r}")
        for key in ("ref", "licence", "language"):
            _require_text(key, getattr(self, key))
        require("rule", bool(self.rule), "at least one [[rule]] is required")
        # A table cannot know its place in the file; the importer reports rules by it.
        object.__setattr__(self, "rule", tuple(dataclasses.replace(r, index=i) if r.index != i else r
                                               for i, r in enumerate(self.rule)))

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The `[[rule]]` tables, in file order."""
        return self.rule

    @property
    def slug(self) -> str:
        return self.repo.replace("/", "+")

    def rule_for(self, path: str) -> Rule | None:
        for rule in self.rules:
            if rule.matches(path):
                return rule
        return None

def glob_to_regex(glob: str) -> re.Pattern[str]:
    """'*' and '?' within one path segment, '**/' any number of folders, '**' anything."""
    out, i = [], 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[":
            end = glob.find("]", i + 1)
            if end < 0:
                raise ValueError(f"unclosed '[' in glob {glob!r}")
            body = glob[i + 1:end].replace("\\", "\\\\")
            out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
            i = end + 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out))


def _search(pattern: re.Pattern[str] | None, path: str) -> str | None:
    if pattern is None:
        return None
    found = pattern.search(path)
    if found is None:
        return None
    return found.group(1) if pattern.groups else found.group(0)


def _one_glob_as_list(raw: dict[str, Any]) -> dict[str, Any]:
    """A rule's `glob = "x"` read as `glob = ["x"]`: the loader gives each key one type."""
    rules = raw.get("rule")
    if not isinstance(rules, list):
        return raw
    return {**raw, "rule": [{**r, "glob": [r["glob"]]} if isinstance(r, dict) and isinstance(r.get("glob"), str)
                            else r for r in rules]}


def load_entry(path: Path) -> SourceEntry:
    """One registry file; a ConfigError names the file, the rule and the key."""
    entry = build(SourceEntry, _one_glob_as_list(read_toml(path)), source=str(path))
    return dataclasses.replace(entry, path=path)


def load_registry(folder: Path, only: tuple[str, ...] = ()) -> list[SourceEntry]:
    """Every `*.toml` in `folder` (sorted), or only the repositories named in `only`."""
    files = sorted(Path(folder).glob("*.toml"))
    if not files:
        raise ConfigError("", "no registry files (*.toml)", str(folder))
    entries = [load_entry(file) for file in files]
    seen: dict[str, Path] = {}
    for entry in entries:
        if entry.repo in seen:
            raise ConfigError("repo", f"repository {entry.repo} is also in {seen[entry.repo]}", str(entry.path))
        seen[entry.repo] = entry.path
    if only:
        missing = sorted(set(only) - set(seen))
        if missing:
            raise ConfigError("", f"not in the registry: {missing}", str(folder))
        entries = [e for e in entries if e.repo in only]
    return entries


def is_audio(path: str) -> bool:
    return path.lower().endswith(AUDIO_SUFFIXES)


def sources_table(entries: list[SourceEntry]) -> str:
    """The registry as a markdown table (docs/data.md): repository, ref, commit, languages, licence."""
    lines = ["| repository | ref | commit | languages | licence note |", "|---|---|---|---|---|"]
    for entry in entries:
        languages = sorted({entry.language} | {r.language for r in entry.rules if r.language})
        licence = entry.licence.replace("|", "/").replace("\n", " ")
        lines.append(f"| {entry.repo} | {entry.ref} | `{entry.commit}` | {', '.join(languages)} | {licence} |")
    return "\n".join(lines) + "\n"
