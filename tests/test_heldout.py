from __future__ import annotations

import csv
from pathlib import Path

import pytest
import soundfile as sf

from streaming_models import heldout


def test_builds_clean_lyra_and_telephone_variants(shared_data: Path, tmp_path: Path) -> None:
    # Engines (ffmpeg, ai-edge-litert for Lyra) are installed by `make setup`: a missing one fails here.
    assert heldout.main(["--out", str(tmp_path), "--limit", "2"]) == 0
    rows = list(csv.DictReader((tmp_path / "labels.csv").open()))
    assert [r["corpus"] for r in rows[:3]] == ["test-other-clean", "test-other-lyra", "test-other-telephone"]
    assert {r["label"] for r in rows} == {"bonafide"}
    assert [r["codec"] for r in rows[:3]] == ["none", "neural", "telephony"]
    clean, lyra = sf.info(str(tmp_path / rows[0]["path"])), sf.info(str(tmp_path / rows[1]["path"]))
    assert clean.samplerate == lyra.samplerate == 16000
    assert abs(clean.frames - lyra.frames) <= 16000 // 10


def test_missing_shared_data_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SPOOFWATCH_SHARED_DATA", str(tmp_path / "nowhere"))
    assert heldout.main(["--out", str(tmp_path / "out")]) == 2
    assert "test-other" in capsys.readouterr().err
