from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from daemon.__main__ import build_parser, main
from daemon.config import DaemonConfig, load_config, section_fields, sections
from daemon.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_default_toml_lists_every_setting_with_its_default() -> None:
    import tomllib

    raw = tomllib.loads((REPO / "configs" / "default.toml").read_text())
    for name, cls in sections().items():
        assert set(raw[name]) == {f.name for f, _ in section_fields(cls)}, name
    assert load_config(REPO / "configs" / "default.toml", environ={}) == DaemonConfig()


def test_layers_file_env_flags(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[zmq]\npub_hwm = 5\ningest_endpoint = "tcp://127.0.0.1:7000"\n[batching]\nmax_batch = 4\n')
    env = {"SPOOFWATCH__ZMQ__PUB_HWM": "7", "SPOOFWATCH__MODEL__PROVIDERS": '["CPUExecutionProvider"]',
           "SPOOFWATCH__WEBRTC__ENABLED": "false", "SPOOFWATCH_SHARED_DATA": "/elsewhere"}
    config = load_config(path, env, {"batching.max_batch": "9", "decision.policy": "codec_as_spoof"})
    assert config.zmq.pub_hwm == 7  # env beats file
    assert config.zmq.ingest_endpoint == "tcp://127.0.0.1:7000"
    assert config.batching.max_batch == 9  # flag beats file
    assert config.model.providers == ("CPUExecutionProvider",)
    assert config.webrtc.enabled is False
    assert config.decision.policy == "codec_as_spoof"
    assert config.batching.max_wait_ms == 20.0  # untouched default


@pytest.mark.parametrize("file_text,env,key,needle", [
    ("[zmq]\npub_hwm = 0\n", {}, "zmq.pub_hwm", ">= 1"),
    ("[zmq]\npub_hwm = \"lots\"\n", {}, "zmq.pub_hwm", "integer"),
    ("[batching]\nmax_wait_ms = true\n", {}, "batching.max_wait_ms", "number"),
    ("[decision]\npolicy = \"by_mood\"\n", {}, "decision.policy", "codec_as_bonafide"),
    ("[decision]\nspoof_enter = 0.3\n", {}, "decision.spoof_exit", "spoof_enter"),
    ("[decision]\ncodec_enter = 1.5\n", {}, "decision.codec_enter", "0..1"),
    ("[zmq]\nturbo = true\n", {}, "zmq.turbo", "unknown setting"),
    ("[gpu]\nx = 1\n", {}, "gpu", "unknown section"),
    ("", {"SPOOFWATCH__STREAMS__IDLE_TIMEOUT_S": "-1"}, "streams.idle_timeout_s", "> 0"),
    ("", {"SPOOFWATCH__STREAMS__NOPE": "1"}, "streams.nope", "unknown setting"),
    ("", {"SPOOFWATCH__ZMQ": "1"}, "SPOOFWATCH__ZMQ", "SECTION__KEY"),
    ("", {"SPOOFWATCH__ZMQ__PUB_ENDPOINT": "localhost"}, "zmq.pub_endpoint", "tcp://"),
    ("[model]\nproviders = \"CPU\"\n", {}, "model.providers", "list of strings"),
])
def test_invalid_config_names_the_key(tmp_path: Path, file_text: str, env: dict[str, str], key: str,
                                      needle: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(file_text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env)
    assert info.value.key == key
    assert needle in info.value.reason
    assert key in str(info.value)


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.toml", {})
    (tmp_path / "bad.toml").write_text("[zmq\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml", {})


def test_cli_flags_are_derived_from_the_dataclasses() -> None:
    options = {a.dest for a in build_parser()._actions}
    expected = {f"{name}.{f.name}" for name, cls in sections().items() for f, _ in section_fields(cls)}
    assert expected <= options


def test_help_renders_every_settings_help_text(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse %-formats help strings: a help text with a literal % must not break --help."""
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "for 1 % false alarms on its dev split" in text


def test_serve_with_invalid_config_exits_2_naming_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--zmq.pub-hwm", "0"]) == 2
    assert "zmq.pub_hwm" in capsys.readouterr().err


@pytest.mark.parametrize("args", [
    ["--zmq.pub_hwm", "500"],  # the README's --section.key form used to exit 2 (issue 22, fix 8)
    ["--zmq.pub-hwm", "500"],
    ["--zmq.pub_hwm=500"],
    ["--zmq.pub-hwm=500"],
])
def test_flags_take_the_key_with_underscores_or_dashes(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*args, "--streams.idle_timeout_s", "3", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "pub_hwm=500" in out and "idle_timeout_s=3.0" in out


def test_flag_values_keep_their_underscores(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model.path", "my_model_v2.onnx", "--zmq.ingest_endpoint=ipc:///tmp/a_b", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "path='my_model_v2.onnx'" in out and "ingest_endpoint='ipc:///tmp/a_b'" in out


def test_serve_without_a_model_fails_clearly(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here.onnx"
    run = subprocess.run(
        [sys.executable, "-m", "clients.cli", "serve", "--model.path", str(missing), "--webrtc.enabled", "false"],
        check=False, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 3
    assert str(missing) in run.stderr
    assert "spoofwatch export" in run.stderr and "model.path" in run.stderr
