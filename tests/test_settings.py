"""The shared loader of frozen dataclasses from TOML (streaming_models/runtime/settings.py)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from streaming_models.runtime.settings import INTERNAL, ConfigError, build, load, require


@dataclass(frozen=True)
class Inner:
    width: int = 4
    scale: float = 1.0

    def __post_init__(self) -> None:
        require("width", self.width >= 1, f"must be >= 1, got {self.width}")


@dataclass(frozen=True)
class Item:
    name: str
    hours: float | None = None


@dataclass(frozen=True)
class Outer:
    kind: Literal["codec", "vocoder"] = "codec"
    steps: int = 10
    low: float = 0.0
    high: float = 1.0
    tags: tuple[str, ...] = ()
    span: tuple[int, int] = (1, 2)
    weights: dict[str, float] = field(default_factory=dict)
    inner: Inner = field(default_factory=Inner)
    items: tuple[Item, ...] = ()
    digest: str = field(default="", metadata=INTERNAL)

    def __post_init__(self) -> None:
        require("low", self.low <= self.high, f"must not exceed high, got {self.low} > {self.high}")


def test_a_table_becomes_its_dataclass_with_lists_as_tuples_and_integers_as_floats() -> None:
    built = build(Outer, {"kind": "vocoder", "low": 0, "tags": ["a", "b"], "span": [2, 3],
                          "weights": {"x": 2}, "inner": {"width": 8}, "items": [{"name": "a", "hours": 1}]})
    assert built == Outer(kind="vocoder", low=0.0, tags=("a", "b"), span=(2, 3), weights={"x": 2.0},
                          inner=Inner(width=8), items=(Item("a", 1.0),))
    assert isinstance(built.low, float) and isinstance(built.weights["x"], float)
    assert build(Outer, {}) == Outer()


@pytest.mark.parametrize("table,key,needle", [
    ({"stpes": 3}, "", "unknown keys ['stpes']"),
    ({"inner": {"depth": 2}}, "inner", "unknown keys ['depth']"),
    ({"digest": "abc"}, "", "unknown keys ['digest']"),  # set by code, never by a file
    ({"kind": "gan"}, "kind", "must be one of codec, vocoder; got 'gan'"),
    ({"steps": 2.5}, "steps", "must be an integer"),
    ({"steps": True}, "steps", "must be an integer"),
    ({"low": "0"}, "low", "must be a number"),
    ({"tags": "a"}, "tags", "must be a list of strings"),
    ({"tags": ["a", 1]}, "tags", "must be a list of strings"),
    ({"span": [1, 2, 3]}, "span", "must be a list of 2 values"),
    ({"weights": {"x": "heavy"}}, "weights.x", "must be a number"),
    ({"inner": 3}, "inner", "must be a table"),
    ({"inner": {"width": 0}}, "inner.width", "must be >= 1, got 0"),  # __post_init__, placed in its table
    ({"items": [{"name": "a"}, {"hours": 1.0}]}, "items[1].name", "is required"),
    ({"items": [{"name": "a", "hours": "1"}]}, "items[0].hours", "must be a number"),
    ({"low": 2.0}, "low", "must not exceed high"),
])
def test_every_bad_value_is_refused_naming_its_key(table: dict[str, object], key: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(Outer, table, source="recipe.toml")
    assert info.value.key == key
    assert needle in info.value.reason
    assert str(info.value).startswith(f"recipe.toml: {key}: " if key else "recipe.toml: ")


def test_files_merge_left_to_right_and_tables_key_by_key(tmp_path: Path) -> None:
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    first.write_text('steps = 3\ntags = ["a"]\n[weights]\nx = 0.5\ny = 0.5\n[inner]\nwidth = 2\n')
    second.write_text('tags = ["b"]\n[weights]\ny = 2.0\n[inner]\nscale = 3.0\n')
    loaded = load(Outer, [first, second])
    assert loaded.steps == 3 and loaded.tags == ("b",)  # a list is replaced, not appended to
    assert loaded.weights == {"x": 0.5, "y": 2.0}
    assert loaded.inner == Inner(width=2, scale=3.0)
    assert load(Outer, []) == Outer()


def test_load_names_the_file_that_holds_the_bad_key(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text("high = 0.5\n")
    bad.write_text("[inner]\nwidht = 3\n")
    with pytest.raises(ConfigError) as info:
        load(Outer, [good, bad])
    assert (info.value.source, info.value.key) == (str(bad), "inner")
    assert f"{bad}: inner: unknown keys ['widht']" in str(info.value)
    bad.write_text("low = 0.7\n")  # fine alone; too high once merged over good.toml's high
    with pytest.raises(ConfigError) as info:
        load(Outer, [good, bad])
    assert (info.value.source, info.value.key) == (str(bad), "low")
    bad.write_text("[inner]\nwidth = -1\n")  # checked after the merge, still named by its file
    with pytest.raises(ConfigError, match=f"{bad}: inner.width: must be >= 1"):
        load(Outer, [good, bad])


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing.toml: file not found"):
        load(Outer, [tmp_path / "missing.toml"])
    (tmp_path / "broken.toml").write_text("[inner\n")
    with pytest.raises(ConfigError, match="broken.toml: not valid TOML"):
        load(Outer, [tmp_path / "broken.toml"])


def test_a_config_error_without_a_file_reads_as_before_and_survives_pickling() -> None:
    error = ConfigError("zmq.pub_hwm", "must be >= 1")
    assert str(error) == "invalid config zmq.pub_hwm: must be >= 1"
    again = pickle.loads(pickle.dumps(error))
    assert (again.key, again.reason, str(again)) == (error.key, error.reason, str(error))
    assert isinstance(error, ValueError)
