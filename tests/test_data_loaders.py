"""Public-corpus loaders on small synthetic fixtures written in each corpus's layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streaming_models.data.cli import main as data_main
from streaming_models.data.labels import codec_target, spoof_target
from streaming_models.data.loaders import LoaderError, check_files, load_corpus, probe
from streaming_models.data.loaders.cli import main_import
from streaming_models.data.loaders.codecs import codec_family, codec_objective
from streaming_models.data.manifest import read_manifest


def write_audio(path: Path, seconds: float = 0.25, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tone = 0.1 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * rate)) / rate)
    sf.write(path, tone.astype(np.float32), rate)


@pytest.fixture
def asvspoof5_root(tmp_path: Path) -> Path:
    protocols = tmp_path / "ASVspoof5_protocols"
    protocols.mkdir()
    (protocols / "ASVspoof5.train.tsv").write_text(
        "T_4850 T_0000000000 F - - - - bonafide bonafide -\n"
        "T_4850 T_0000000001 F C04 2 1 AC1 A05 spoof -\n"
        "T_1111 T_0000000002 M C08 1 3 AC2 A11 spoof -\n"
        "\n"
        "T_1111 T_0000000003 M C03 1 3 - bonafide bonafide -\n"
    )
    (protocols / "ASVspoof5.dev.track_1.tsv").write_text("D_0062 D_0000000001 F - - - - bonafide bonafide -\n")
    for name in ("T_0000000000", "T_0000000001", "T_0000000002", "T_0000000003"):
        write_audio(tmp_path / "flac_T" / f"{name}.flac")
    write_audio(tmp_path / "flac_D" / "D_0000000001.flac", seconds=0.5)
    return tmp_path


def test_asvspoof5_protocol_columns_become_labels(asvspoof5_root: Path) -> None:
    items = {item.item_id: item for item in load_corpus("asvspoof5", asvspoof5_root)}
    assert len(items) == 5
    bona = items["asvspoof5:T_0000000000"]
    assert (bona.source, bona.generator, bona.codec, bona.split, bona.speaker) == (
        "bonafide", "human", "none", "train", "T_4850")
    neural = items["asvspoof5:T_0000000001"]
    assert (neural.source, neural.generator, neural.codec, neural.codec_family, neural.codec_objective) == (
        "spoof", "A05", "neural", "encodec", "compression")
    assert neural.extra["attack_tag"] == "AC1" and neural.channel == ("asvspoof5-C04",)
    phone = items["asvspoof5:T_0000000002"]
    assert (phone.codec, phone.codec_family, phone.speaker) == ("telephony", "opus", "T_1111")
    assert items["asvspoof5:T_0000000003"].codec_family == "speex"
    dev = items["asvspoof5:D_0000000001"]
    assert dev.split == "dev" and Path(dev.path).is_absolute() and Path(dev.path).is_file()
    probed = {i.item_id: i for i in probe(items.values())}
    assert probed["asvspoof5:D_0000000001"].duration_s == pytest.approx(0.5)
    assert probed["asvspoof5:D_0000000001"].sample_rate_hz == 16000


def test_asvspoof5_errors_are_clear(asvspoof5_root: Path, tmp_path: Path) -> None:
    (asvspoof5_root / "flac_T" / "T_0000000002.flac").unlink()
    items = load_corpus("asvspoof5", asvspoof5_root)
    with pytest.raises(LoaderError, match="1 of 5 listed audio files are missing.*--allow-missing"):
        check_files(items, allow_missing=False)
    assert len(check_files(items, allow_missing=True)) == 4
    (asvspoof5_root / "ASVspoof5_protocols" / "ASVspoof5.dev.track_1.tsv").write_text("D_0062 D_01 F -\n")
    with pytest.raises(LoaderError, match=r"dev.track_1.tsv:1: expected 10 columns"):
        load_corpus("asvspoof5", asvspoof5_root)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LoaderError, match="no ASVspoof 5 protocol file"):
        load_corpus("asvspoof5", empty)


@pytest.fixture
def cdd_root(tmp_path: Path) -> Path:
    root = tmp_path / "CDD"
    write_audio(root / "asvspoof5" / "flac_T" / "T_0000000001.flac")
    write_audio(root / "asvspoof5" / "flac_E" / "E_0000000007.flac")
    write_audio(root / "CoRS_train" / "DescriptAudioCodec" / "T_0000000001.wav")
    write_audio(root / "CoRS_train" / "Mimi" / "T_0000000001.wav")
    write_audio(root / "CoRS_test" / "XCodec2" / "E_0000000007.wav")
    write_audio(root / "CoRS_dev" / "EnCodecVocos" / "D_0000000009.wav")
    write_audio(root / "CoSG" / "train" / "valle" / "a.wav")
    write_audio(root / "CoSG" / "maskgct" / "test" / "b.wav")
    (root / "ASVspoof5.train.tsv").write_text("T_4850 T_0000000001 F - - - - bonafide bonafide -\n")
    return root


def test_codecfake_layout_maps_cors_and_cosg(cdd_root: Path) -> None:
    items = {item.item_id: item for item in load_corpus("codecfake", cdd_root)}
    assert len(items) == 8
    genuine = items["cdd:asvspoof5:T_0000000001"]
    assert (genuine.source, genuine.codec, genuine.split, genuine.speaker) == ("bonafide", "none", "train", "T_4850")
    assert items["cdd:asvspoof5:E_0000000007"].split == "test"
    dac = items["cdd:cors:DescriptAudioCodec:T_0000000001"]
    assert (dac.source, dac.codec, dac.codec_family, dac.codec_objective) == (
        "bonafide", "neural", "dac", "compression")
    assert dac.parent == "cdd:asvspoof5:T_0000000001" and dac.speaker == "T_4850"
    mimi = items["cdd:cors:Mimi:T_0000000001"]
    assert (mimi.codec_family, mimi.codec_objective) == ("mimi", "synthesis")
    assert items["cdd:cors:XCodec2:E_0000000007"].split == "test"
    encodec = items["cdd:cors:EnCodecVocos:D_0000000009"]
    assert (encodec.codec_family, encodec.split, encodec.parent) == ("encodec", "dev", None)
    valle = items["cdd:cosg:valle:a"]
    assert (valle.source, valle.generator, valle.codec, valle.codec_objective, valle.split) == (
        "spoof", "valle", "neural", "synthesis", "train")
    assert items["cdd:cosg:maskgct:b"].split == "test"
    # the label policies read these fields: CoRS of a synthesis codec is spoof only under by_objective
    assert spoof_target(dac, "by_objective") == 0 and spoof_target(mimi, "by_objective") == 1
    assert spoof_target(mimi, "codec_as_bonafide") == 0 and spoof_target(dac, "codec_as_spoof") == 1
    assert all(codec_target(item) == (item.codec == "neural") for item in items.values())


def test_codecfake_rejects_unplaceable_files(cdd_root: Path, tmp_path: Path) -> None:
    write_audio(cdd_root / "CoSG" / "orphan" / "c.wav")
    with pytest.raises(LoaderError, match="no train/dev/test folder"):
        load_corpus("codecfake", cdd_root)
    with pytest.raises(LoaderError, match="no asvspoof5/flac_"):
        (tmp_path / "nothing").mkdir()
        load_corpus("codecfake", tmp_path / "nothing")


def test_labels_csv_rows_become_items(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text(
        "path,label,codec,system,corpus\n"
        "a/genuine.wav,bonafide,none,genuine,demo\n"
        "a/enc.wav,bonafide,neural,EnCodec-24k-6kbps,demo\n"
        "b/tts.wav,spoof,none,VITS,demo\n"
        "b/sem.wav,bonafide,neural,SemantiCodec-0.35kbps,demo\n"
    )
    items = {Path(item.path).name: item for item in load_corpus("labels-csv", tmp_path)}
    assert items["genuine.wav"].generator == "human" and items["genuine.wav"].split == "test"
    assert Path(items["genuine.wav"].path) == tmp_path / "a" / "genuine.wav"
    enc = items["enc.wav"]
    assert (enc.source, enc.codec, enc.codec_family, enc.codec_objective) == (
        "bonafide", "neural", "encodec", "compression")
    assert (items["tts.wav"].source, items["tts.wav"].generator) == ("spoof", "VITS")
    assert items["sem.wav"].codec_objective == "synthesis"


def test_labels_csv_errors_name_the_row(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("path,label\nx.wav,fake\n")
    with pytest.raises(LoaderError, match=r"labels.csv:2: label must be one of"):
        load_corpus("labels-csv", tmp_path)
    (tmp_path / "labels.csv").write_text("file,label\nx.wav,spoof\n")
    with pytest.raises(LoaderError, match="missing \\['path'\\]"):
        load_corpus("labels-csv", tmp_path)
    (tmp_path / "labels.csv").write_text("path,label,colour\nx.wav,spoof,red\n")
    with pytest.raises(LoaderError, match="unknown columns \\['colour'\\]"):
        load_corpus("labels-csv", tmp_path)
    with pytest.raises(LoaderError, match="unknown corpus format"):
        load_corpus("timit", tmp_path)


def test_import_cli_writes_a_readable_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_audio(tmp_path / "clips" / "one.wav", seconds=0.5)
    write_audio(tmp_path / "clips" / "two.wav", seconds=0.25, rate=8000)
    (tmp_path / "clips" / "labels.csv").write_text(
        "path,label,codec,system,split,speaker\none.wav,bonafide,none,,train,s1\ntwo.wav,spoof,none,espeak,train,s2\n")
    out = tmp_path / "manifests" / "clips.jsonl"
    assert main_import(["--format", "labels-csv", "--root", str(tmp_path / "clips"), "--out", str(out)]) == 0
    items = list(read_manifest(out))
    assert [(i.source, i.split, i.speaker, i.sample_rate_hz) for i in items] == [
        ("bonafide", "train", "s1", 16000), ("spoof", "train", "s2", 8000)]
    assert items[0].duration_s == pytest.approx(0.5)
    assert "2 items" in capsys.readouterr().out
    assert main_import(["--format", "labels-csv", "--root", str(tmp_path / "none"), "--out", str(out)]) == 1
    again = tmp_path / "again.jsonl"
    # what `spoofwatch data import` runs
    assert data_main(["import", "--format", "labels-csv", "--root", str(tmp_path / "clips"), "--out", str(again)]) == 0
    assert list(read_manifest(again)) == items


def test_codec_name_table() -> None:
    assert codec_family("DAC-0.47kbps(retrained)") == "dac"
    assert codec_family("HiFi-Codec-2kbps") == "hificodec"
    assert codec_family("XCodec2") == "xcodec2" and codec_family("xcodec_hubert") == "xcodec"
    assert codec_family("NewCodec-3k") == "newcodec"
    assert codec_objective("mimi") == "synthesis" and codec_objective("encodec") == "compression"
