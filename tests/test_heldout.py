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


def test_inhouse_variants_for_leave_one_codec_out(shared_data: Path, tmp_path: Path) -> None:
    import torch
    from test_data_inhouse import make_tiny_checkpoint

    torch.set_num_threads(1)
    for name in ("codec_comp6k", "codec_istft", "codec_token1k", "vocoder_mel"):
        make_tiny_checkpoint(name, tmp_path / "ckpt")
    variants = ["clean", "inhouse-comp6k", "inhouse-istft", "inhouse-token1k", "inhouse-vocoder"]
    out = tmp_path / "set"
    assert heldout.main(["--out", str(out), "--limit", "2", "--variants", ",".join(variants),
                         "--checkpoints", str(tmp_path / "ckpt")]) == 0
    rows = list(csv.DictReader((out / "labels.csv").open()))
    assert len(rows) == 2 * len(variants)
    expected = {"clean": ("bonafide", "none", "human"), "inhouse-vocoder": ("spoof", "none", "inhouse-vocoder"),
                **{c: ("bonafide", "neural", c) for c in variants[1:4]}}
    for row in rows:
        variant = row["corpus"].removeprefix("test-other-")
        assert (row["label"], row["codec"], row["system"]) == expected[variant]
        assert row["path"].startswith(f"{variant}/")
        info = sf.info(str(out / row["path"]))
        clean = sf.info(str(out / "clean" / Path(row["path"]).name))
        assert info.samplerate == 16000 and abs(info.frames - clean.frames) <= 16000 // 10
    # each utterance exists once per variant: the same speakers in every condition
    assert len({Path(r["path"]).name for r in rows}) == 2


def test_inhouse_variants_need_their_checkpoints(shared_data: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--out", str(tmp_path / "out"), "--limit", "1", "--checkpoints", str(tmp_path / "none")]
    assert heldout.main([*argv, "--variants", "clean,inhouse-token1k"]) == 2
    assert "spoofwatch resynth train --config configs/resynthesis/codec_token1k.toml" in capsys.readouterr().err
    assert not (tmp_path / "out" / "labels.csv").exists()
    with pytest.raises(SystemExit):
        heldout.main([*argv, "--variants", "clean,opus"])
    assert "inhouse-vocoder" in capsys.readouterr().err
