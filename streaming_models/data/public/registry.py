"""The source registry: one TOML file per public repository, with rules that label its files.

A rule's globs are matched against the whole path inside the repository ('*' stays within a
folder, '**' crosses folders); the first matching rule labels the file. Validation happens at
load time and names the file and the rule, so a bad entry fails before any audio is read.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from streaming_models.data.loaders.codecs import codec_objective
from streaming_models.data.manifest import Codec, CodecObjective

RuleSource = Literal["bonafide", "spoof", "skip"]
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a")
GENERATOR_FAMILIES = (
    "acoustic-tts", "vits", "diffusion-tts", "flow-matching-tts", "codec-lm-tts", "vc",
    "gan-vocoder", "diffusion-vocoder", "flow-vocoder", "autoregressive-vocoder",
    "source-filter-vocoder", "dsp-vocoder", "other-neural",
)
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
_ENTRY_KEYS = {"repo", "commit", "ref", "licence", "language", "notes", "rule"}
_RULE_KEYS = {"glob", "source", "generator", "family", "codec", "codec_family", "codec_objective",
              "language", "speaker", "speaker_pattern", "pair", "reason"}


class RegistryError(ValueError):
    """A registry file is malformed; the message names the file and the rule."""


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


@dataclass(frozen=True)
class Rule:
    index: int
    globs: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]
    source: RuleSource
    generator: str
    family: str
    codec: Codec
    codec_family: str
    codec_objective: CodecObjective
    language: str | None
    speaker: str | None
    speaker_pattern: re.Pattern[str] | None
    pair: re.Pattern[str] | None
    reason: str

    def matches(self, path: str) -> bool:
        return any(p.fullmatch(path) for p in self.patterns)

    def label(self, path: str, default_language: str) -> Label:
        if self.source == "skip":
            raise ValueError("a skip rule labels nothing")
        speaker = self.speaker or _search(self.speaker_pattern, path) or "unknown"
        return Label(source=self.source, generator=self.generator, family=self.family, codec=self.codec,
                     codec_family=self.codec_family, codec_objective=self.codec_objective,
                     language=self.language or default_language, speaker=speaker,
                     pair_key=_search(self.pair, path))


@dataclass(frozen=True)
class SourceEntry:
    """One repository of the registry."""

    repo: str
    commit: str
    ref: str
    licence: str
    language: str
    notes: str
    rules: tuple[Rule, ...]
    path: Path

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


def _regex(value: Any, where: str, key: str) -> re.Pattern[str] | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise RegistryError(f"{where}: {key} must be a non-empty regex string")
    try:
        return re.compile(value)
    except re.error as exc:
        raise RegistryError(f"{where}: {key} {value!r} is not a valid regex: {exc}") from exc


def _text(raw: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise RegistryError(f"{where}: {key} must be a non-empty string" + ("" if key in raw else " (missing)"))
    return value.strip()


def _parse_rule(raw: Any, index: int, where_file: str, language: str) -> Rule:
    where = f"{where_file} rule {index + 1}"
    if not isinstance(raw, dict):
        raise RegistryError(f"{where}: a rule must be a table")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise RegistryError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(_RULE_KEYS)}")
    globs_raw = raw.get("glob")
    globs = (globs_raw,) if isinstance(globs_raw, str) else tuple(globs_raw or ())
    if not globs or not all(isinstance(g, str) and g for g in globs):
        raise RegistryError(f"{where}: glob must be a path glob or a list of them")
    try:
        patterns = tuple(glob_to_regex(g) for g in globs)
    except ValueError as exc:
        raise RegistryError(f"{where}: {exc}") from exc
    source = raw.get("source")
    if source not in get_args(RuleSource):
        raise RegistryError(f"{where}: source must be one of {get_args(RuleSource)}, got {source!r}")
    if source == "skip":
        extra = set(raw) - {"glob", "source", "reason"}
        if extra:
            raise RegistryError(f"{where}: a skip rule takes only glob and reason, not {sorted(extra)}")
        return Rule(index, globs, patterns, "skip", "", "", "none", "none", "none", None, None, None, None,
                    _text(raw, "reason", where))
    if "reason" in raw:
        raise RegistryError(f"{where}: reason is for skip rules")
    codec = raw.get("codec", "none")
    if codec not in get_args(Codec):
        raise RegistryError(f"{where}: codec must be one of {get_args(Codec)}, got {codec!r}")
    if source == "spoof":
        generator = _text(raw, "generator", where)
        family = raw.get("family")
        if family not in GENERATOR_FAMILIES:
            raise RegistryError(f"{where}: family must be one of {GENERATOR_FAMILIES}, got {family!r}")
    else:
        if "family" in raw or raw.get("generator", "human") != "human":
            raise RegistryError(f"{where}: a bonafide rule has no generator or family (a codec copy of a "
                                "recording is bonafide with codec = \"neural\" and its codec_family)")
        generator, family = "human", "human"
    if not _NAME_RE.match(generator):
        raise RegistryError(f"{where}: generator {generator!r} must be lowercase letters, digits, '-', '.', '+'")
    if codec == "none":
        if "codec_family" in raw or "codec_objective" in raw:
            raise RegistryError(f"{where}: codec_family/codec_objective need codec = \"neural\" or \"telephony\"")
        codec_family, objective = "none", "none"
    else:
        codec_family = _text(raw, "codec_family", where)
        if not _NAME_RE.match(codec_family):
            raise RegistryError(f"{where}: codec_family {codec_family!r} must be lowercase letters, digits, '-'")
        default_objective = codec_objective(codec_family) if codec == "neural" else "compression"
        objective = raw.get("codec_objective", default_objective)
        if objective not in ("compression", "synthesis"):
            raise RegistryError(f"{where}: codec_objective must be compression or synthesis, got {objective!r}")
    rule_language = raw.get("language")
    if rule_language is not None and (not isinstance(rule_language, str) or not rule_language):
        raise RegistryError(f"{where}: language must be a non-empty string")
    speaker = raw.get("speaker")
    if speaker is not None and (not isinstance(speaker, str) or not speaker):
        raise RegistryError(f"{where}: speaker must be a non-empty string")
    if speaker is not None and "speaker_pattern" in raw:
        raise RegistryError(f"{where}: give speaker or speaker_pattern, not both")
    return Rule(index, globs, patterns, source, generator, family, codec, codec_family, objective,  # type: ignore[arg-type]
                rule_language, speaker, _regex(raw.get("speaker_pattern"), where, "speaker_pattern"),
                _regex(raw.get("pair"), where, "pair"), "")


def parse_entry(raw: dict[str, Any], path: Path) -> SourceEntry:
    where = str(path)
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise RegistryError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(_ENTRY_KEYS)}")
    repo = _text(raw, "repo", where)
    if not _REPO_RE.match(repo):
        raise RegistryError(f"{where}: repo must be owner/name, got {repo!r}")
    if repo.lower() in RESERVED_REPOSITORIES:
        raise RegistryError(f"{where}: {repo} is reserved for independent evaluation and may not be imported")
    if repo.lower().startswith(DEV_EVAL_SOURCES):
        raise RegistryError(f"{where}: {repo} is one of dev-eval's sources, which stay out of training")
    commit = _text(raw, "commit", where)
    if not _COMMIT_RE.match(commit):
        raise RegistryError(f"{where}: commit must be 40 lowercase hex digits, got {commit!r}")
    language = _text(raw, "language", where, "unknown")
    rules_raw = raw.get("rule")
    if not isinstance(rules_raw, list) or not rules_raw:
        raise RegistryError(f"{where}: at least one [[rule]] is required")
    rules = tuple(_parse_rule(r, i, where, language) for i, r in enumerate(rules_raw))
    return SourceEntry(repo=repo, commit=commit, ref=_text(raw, "ref", where), licence=_text(raw, "licence", where),
                       language=language, notes=str(raw.get("notes", "")), rules=rules, path=path)


def load_registry(folder: Path, only: tuple[str, ...] = ()) -> list[SourceEntry]:
    """Every `*.toml` in `folder` (sorted), or only the repositories named in `only`."""
    files = sorted(Path(folder).glob("*.toml"))
    if not files:
        raise RegistryError(f"no registry files (*.toml) in {folder}")
    entries: list[SourceEntry] = []
    for file in files:
        try:
            raw = tomllib.loads(file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise RegistryError(f"{file}: not valid TOML: {exc}") from exc
        entries.append(parse_entry(raw, file))
    seen: dict[str, Path] = {}
    for entry in entries:
        if entry.repo in seen:
            raise RegistryError(f"{entry.path}: repository {entry.repo} is also in {seen[entry.repo]}")
        seen[entry.repo] = entry.path
    if only:
        missing = sorted(set(only) - set(seen))
        if missing:
            raise RegistryError(f"not in the registry {folder}: {missing}")
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
