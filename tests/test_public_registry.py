"""The committed registry (configs/data/public): every entry valid, none reserved, all in docs/data.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from streaming_models.data.public.registry import load_registry
from streaming_models.runtime.settings import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
REGISTRY = REPO_ROOT / "configs" / "data" / "public"


def test_every_registry_file_is_valid_and_names_one_repository() -> None:
    entries = load_registry(REGISTRY)
    assert len(entries) >= 40
    for entry in entries:
        assert entry.path.name == entry.repo.replace("/", "__") + ".toml"


def test_docs_list_every_source_with_its_commit_and_licence() -> None:
    docs = (REPO_ROOT / "docs" / "data.md").read_text()
    for entry in load_registry(REGISTRY):
        assert f"| {entry.repo} | {entry.ref} | `{entry.commit}` |" in docs, \
            f"docs/data.md lacks {entry.repo} at {entry.commit}: regenerate with --sources-table"


@pytest.mark.parametrize("repo", ["codecfake/codecfake.github.io", "Hubertsiuzdak/SNAC", "jik876/hifi-gan-demo",
                                  "OlaWod/FreeVC"])
def test_reserved_and_dev_eval_repositories_are_refused(tmp_path: Path, repo: str) -> None:
    (tmp_path / "x.toml").write_text(f'repo = "{repo}"\ncommit = "{"a" * 40}"\nref = "main"\nlicence = "l"\n'
                                     '[[rule]]\nglob = "*"\nsource = "bonafide"\n')
    with pytest.raises(ConfigError, match="x.toml: repo: .*(reserved|dev-eval)"):
        load_registry(tmp_path)


def test_one_spelling_per_system_across_repositories() -> None:
    """'e3tts' in one file and 'e3-tts' in another would split one system in the per-family figures."""
    spellings: dict[str, set[str]] = {}
    for entry in load_registry(REGISTRY):
        for rule in entry.rules:
            for name in (rule.generator, rule.codec_family):
                if name and name not in ("human", "none"):
                    spellings.setdefault(name.replace("-", "").replace(".", ""), set()).add(name)
    clashes = {key: names for key, names in spellings.items() if len(names) > 1}
    assert not clashes, f"names spelt two ways: {clashes}"
