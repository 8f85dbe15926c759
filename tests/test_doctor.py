"""`spoofwatch doctor`: each check's OK and FAIL (or WARN) path, with temp files and injected
lookups; no network. The port checks bind real sockets on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import onnxruntime as ort
import pytest
from running_daemon import REPO_ROOT, daemon_process, free_port

from clients.commands.doctor import run_checks
from clients.commands.keys import add_key, append_private, generate_keys
from clients.doctor import Finding
from clients.doctor import checks as doctor_checks
from clients.doctor.checks import (
    check_auth,
    check_config,
    check_corpus_codecs,
    check_debian_packages,
    check_ingest_path,
    check_model,
    check_onnxruntime,
    check_python,
    check_shared_data,
    check_verifier,
    check_webrtc_codecs,
)
from clients.doctor.ports import PortOwner, check_ports, looks_like_spoofwatch, port_owners
from daemon.auth import new_token
from daemon.config import DaemonConfig, build_config
from streaming_models.runtime import fastpath
from streaming_models.runtime.model_format import ModelMetadata, StateSpec

STREAMING = ModelMetadata("stream", 16000, 1600, (StateSpec("s_in", "s_out", (1,)),))  # 100 ms hops at 16 kHz
LOOPBACK_ZMQ = {"ingest_endpoint": "tcp://127.0.0.1:*", "pub_endpoint": "tcp://127.0.0.1:*"}


def config(**sections: dict[str, object]) -> DaemonConfig:
    return build_config(sections)


def statuses(findings: list[Finding]) -> list[str]:
    return [f.status for f in findings]


# ---------------------------------------------------------------- python, config


def test_python_version() -> None:
    assert check_python((3, 11, 7)).status == "OK"
    old = check_python((3, 10, 12))
    assert old.status == "FAIL" and "3.10.12" in old.detail and "3.11" in old.fix


def test_config_valid_with_environment_overrides(tmp_path: Path) -> None:
    path = tmp_path / "daemon.toml"
    path.write_text('[zmq]\npub_hwm = 500\n')
    loaded, finding = check_config(path, {"SPOOFWATCH__STREAMS__MAX_STREAMS": "20"})
    assert finding.status == "OK" and "SPOOFWATCH__STREAMS__MAX_STREAMS" in finding.detail
    assert loaded is not None and loaded.zmq.pub_hwm == 500 and loaded.streams.max_streams == 20


def test_config_invalid_names_the_key_and_later_checks_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "daemon.toml"
    path.write_text('[zmq]\npub_hwm = 0\n')
    loaded, finding = check_config(path, {})
    assert loaded is None and finding.status == "FAIL" and "zmq.pub_hwm" in finding.detail and finding.fix
    missing = check_config(tmp_path / "nope.toml", {})[1]
    assert missing.status == "FAIL" and "not found" in missing.detail
    report = run_checks(path, {}, shared_data_default=tmp_path)
    assert {f.check for f in report if f.status == "SKIP"} == {"model", "onnxruntime", "verifier", "port", "auth",
                                                               "codecs"}


# ---------------------------------------------------------------- model, onnxruntime


def test_model_loads_with_its_metadata() -> None:
    path, meta, findings = check_model(config(model={"providers": ["CPUExecutionProvider"]}))
    assert path is not None and path.name == "spoofwatch-default.onnx"
    assert meta is not None and meta.sample_rate_hz == 16000
    assert statuses(findings) == ["OK"] and "16000 Hz" in findings[0].detail


def test_model_missing_or_unreadable_fails(tmp_path: Path) -> None:
    path, meta, findings = check_model(config(model={"path": str(tmp_path / "absent.onnx")}))
    assert path is None and meta is None and statuses(findings) == ["FAIL"] and "spoofwatch export" in findings[0].fix
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model" * 100)
    path, meta, findings = check_model(config(model={"path": str(garbage)}))
    assert path == garbage and meta is None and statuses(findings) == ["FAIL"] and str(garbage) in findings[0].detail


def test_a_model_without_operating_thresholds_warns(tiny_model: tuple[Path, Path]) -> None:
    _, _, findings = check_model(config(model={"path": str(tiny_model[0])}))
    assert statuses(findings) == ["OK", "WARN"] and "threshold" in findings[1].detail
    _, _, explicit = check_model(config(model={"path": str(tiny_model[0])}, decision={"thresholds": "config"}))
    assert statuses(explicit) == ["OK"]


def test_onnxruntime_cpu_only_is_ok_and_says_so() -> None:
    [finding] = check_onnxruntime(DaemonConfig(), None, is_installed=lambda name: name == "onnxruntime")
    assert finding.status == "OK" and "CPUExecutionProvider" in finding.detail and "no CUDA" in finding.detail


def test_onnxruntime_both_packages_fail() -> None:
    [finding] = check_onnxruntime(DaemonConfig(), None, is_installed=lambda name: True)
    assert finding.status == "FAIL" and "onnxruntime-gpu" in finding.detail and "pip uninstall" in finding.fix


def test_onnxruntime_without_a_configured_provider_fails() -> None:
    cuda_only = config(model={"providers": ["CUDAExecutionProvider"]})
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    [finding] = check_onnxruntime(cuda_only, None, is_installed=lambda name: name == "onnxruntime")
    assert finding.status == "FAIL" and "model.providers" in finding.fix


def test_onnxruntime_listing_cuda_that_cannot_run_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime-gpu lists CUDA even without its libraries: the check opens the model on it."""
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime really has CUDA")
    model, _, _ = check_model(config(model={"providers": ["CPUExecutionProvider"]}))
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    [finding] = check_onnxruntime(DaemonConfig(), model, is_installed=lambda name: name == "onnxruntime-gpu")
    assert finding.status == "WARN" and "cannot run on CUDA" in finding.detail and "cuDNN" in finding.fix


# ---------------------------------------------------------------- verifier


def verifier_on(path: Path, **settings: object) -> DaemonConfig:
    return config(verifier={"enabled": True, "path": str(path), "providers": ["CPUExecutionProvider"],
                            "window_s": 1.0, **settings})


def test_the_verifier_off_is_ok_and_loads_neither_the_file_nor_onnxruntime() -> None:
    # its own process: this one has onnxruntime loaded already
    script = ("import sys\n"
              "from clients.doctor.checks import check_verifier\n"
              "from daemon.config import build_config\n"
              "from streaming_models.runtime.model_format import ModelMetadata, StateSpec\n"
              "streaming = ModelMetadata('stream', 16000, 1600, (StateSpec('s_in', 's_out', (1,)),))\n"
              "off = build_config({'verifier': {'path': '/nonexistent/verifier.onnx'}})\n"
              "[finding] = check_verifier(off, streaming)\n"
              "loaded = [m for m in ('onnxruntime', 'streaming_models.runtime.verifier_onnx') if m in sys.modules]\n"
              "print(finding.status, finding.detail, loaded)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "OK off (verifier.enabled = false): not checked []", done.stdout + done.stderr


def test_the_verifier_on_loads_and_reports_its_model_and_window(tiny_verifier: Path) -> None:
    [finding] = check_verifier(verifier_on(tiny_verifier), STREAMING)
    assert finding.status == "OK" and finding.detail.startswith(f"{tiny_verifier}: tiny-verifier, window 1 s")
    assert "up to 3 s" in finding.detail  # tiny_verifier.TINY_MAX_POSITIONS
    relative = check_verifier(verifier_on(Path(tiny_verifier.name)), STREAMING, cwd=tiny_verifier.parent)
    assert statuses(relative) == ["OK"] and str(tiny_verifier) in relative[0].detail


def test_a_verifier_window_other_than_the_trained_one_warns(tiny_verifier: Path) -> None:
    findings = check_verifier(verifier_on(tiny_verifier, window_s=2.0), STREAMING)
    assert statuses(findings) == ["OK", "WARN"] and "window 2 s" in findings[0].detail
    assert "trained on" in findings[1].detail and findings[1].fix.startswith("set verifier.window_s = 1")


def test_a_verifier_missing_a_streaming_model_in_its_place_or_a_window_too_long_fails(
        tmp_path: Path, tiny_verifier: Path, tiny_model: tuple[Path, Path]) -> None:
    [missing] = check_verifier(verifier_on(tmp_path / "absent.onnx"), STREAMING)
    assert missing.status == "FAIL" and "no such file" in missing.detail and "docs/verifier.md" in missing.fix
    assert "verifier.enabled = false" in missing.fix
    [streaming_model] = check_verifier(verifier_on(tiny_model[0]), STREAMING)
    assert streaming_model.status == "FAIL" and "a streaming detector" in streaming_model.detail
    assert "model.path" in streaming_model.fix
    [too_long] = check_verifier(verifier_on(tiny_verifier, window_s=3.5), STREAMING)
    assert too_long.status == "FAIL" and "verifier.window_s: 3.5 s is longer" in too_long.detail
    assert too_long.fix.startswith("set verifier.window_s")
    eight_khz = ModelMetadata("stream8k", 8000, 800, STREAMING.states)
    [other_rate] = check_verifier(verifier_on(tiny_verifier), eight_khz)
    assert other_rate.status == "FAIL" and "16000 Hz" in other_rate.detail
    [skipped] = check_verifier(verifier_on(tiny_verifier), None)  # the streaming model did not load
    assert skipped.status == "SKIP"


def test_the_report_checks_the_configured_verifier(tmp_path: Path, tiny_verifier: Path) -> None:
    path = tmp_path / "daemon.toml"
    path.write_text('[zmq]\ningest_endpoint = "tcp://127.0.0.1:*"\npub_endpoint = "tcp://127.0.0.1:*"\n'
                    '[webrtc]\nport = 0\n[model]\nproviders = ["CPUExecutionProvider"]\n'
                    f'[verifier]\nenabled = true\npath = "{tiny_verifier}"\nwindow_s = 1.0\n'
                    'providers = ["CPUExecutionProvider"]\n')
    [finding] = [f for f in run_checks(path, {}, shared_data_default=tmp_path) if f.check == "verifier"]
    assert finding.status == "OK" and "tiny-verifier" in finding.detail
    [broken] = [f for f in run_checks(path, {"SPOOFWATCH__VERIFIER__WINDOW_S": "5"}, shared_data_default=tmp_path)
                if f.check == "verifier"]
    assert broken.status == "FAIL" and "verifier.window_s" in broken.detail


# ---------------------------------------------------------------- ingest path


@pytest.fixture
def fresh_ingest_choice(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """`fastpath.ingest_path` chooses once per process: forget its choice before and after."""
    monkeypatch.delenv(fastpath.FORCE_PYTHON_ENV, raising=False)
    fastpath.ingest_path.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    fastpath.ingest_path.cache_clear()


@pytest.mark.skipif(fastpath.load_extension() is None, reason="the compiled extension is not built")
def test_the_compiled_ingest_path_is_ok(fresh_ingest_choice: pytest.MonkeyPatch) -> None:
    finding = check_ingest_path()
    assert finding.status == "OK" and finding.detail.startswith("compiled") and "FIR kernel" in finding.detail


def test_a_forced_python_ingest_path_warns_naming_the_variable(fresh_ingest_choice: pytest.MonkeyPatch) -> None:
    fresh_ingest_choice.setenv(fastpath.FORCE_PYTHON_ENV, "1")
    finding = check_ingest_path()
    assert finding.status == "WARN" and "pure Python" in finding.detail
    assert fastpath.FORCE_PYTHON_ENV in finding.detail and finding.fix.startswith(f"unset {fastpath.FORCE_PYTHON_ENV}")
    if fastpath.load_extension() is not None:
        assert "make setup" not in finding.fix  # built: the variable is the only reason


def test_an_unbuilt_extension_warns_with_why_and_the_reinstall(fresh_ingest_choice: pytest.MonkeyPatch) -> None:
    fresh_ingest_choice.setattr(fastpath, "load_extension", lambda: None)
    bare = check_ingest_path(c_compiler=lambda: None, python_headers=lambda: None)
    assert bare.status == "WARN" and "_fastpath is not built" in bare.detail
    assert "lacks a C compiler and Python's headers" in bare.detail
    assert "make setup" in bare.fix and "install-system-packages.sh build" in bare.fix and "python3-dev" in bare.fix
    assert fastpath.FORCE_PYTHON_ENV not in bare.fix
    no_headers = check_ingest_path(c_compiler=lambda: "/usr/bin/gcc", python_headers=lambda: None)
    assert "lacks Python's headers" in no_headers.detail and "C compiler" not in no_headers.detail
    equipped = check_ingest_path(c_compiler=lambda: "/usr/bin/gcc", python_headers=lambda: Path("Python.h"))
    assert "installed without them" in equipped.detail and "make setup" in equipped.fix


# ---------------------------------------------------------------- ports


def zmq_on(port: int) -> DaemonConfig:
    return config(zmq={"ingest_endpoint": f"tcp://127.0.0.1:{port}", "pub_endpoint": "tcp://127.0.0.1:*"},
                  webrtc={"port": 0})


def test_free_ports_and_any_port_are_ok() -> None:
    findings = check_ports(zmq_on(free_port()))
    assert statuses(findings) == ["OK", "OK", "OK"]
    assert "is free" in findings[0].detail and "any free port" in findings[1].detail


@pytest.fixture
def held_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_a_port_held_by_another_program_fails_and_names_it(held_port: int) -> None:
    [finding] = [f for f in check_ports(zmq_on(held_port)) if str(held_port) in f.detail]
    assert finding.status == "FAIL" and f"pid {os.getpid()}" in finding.detail  # this test process
    assert "zmq.ingest_endpoint" in finding.fix


def test_a_port_whose_owner_is_invisible_says_how_to_find_it(held_port: int) -> None:
    [finding] = [f for f in check_ports(zmq_on(held_port), owners_of=lambda port: [])
                 if str(held_port) in f.detail]
    assert finding.status == "FAIL" and f"ss -ltnp 'sport = :{held_port}'" in finding.fix


def test_a_port_held_by_a_running_spoofwatch_warns_and_names_it(tiny_model: tuple[Path, Path]) -> None:
    with daemon_process(tiny_model[0]) as running:
        port = int(running.ingest_endpoint.rsplit(":", 1)[1])
        assert running.process.pid in [owner.pid for owner in port_owners(port)]
        [finding] = [f for f in check_ports(zmq_on(port)) if str(port) in f.detail]
    assert finding.status == "WARN" and f"running spoofwatch (pid {running.process.pid}" in finding.detail


def test_spoofwatch_command_lines() -> None:
    assert looks_like_spoofwatch(["/opt/spoofwatch/venv/bin/python", "/opt/spoofwatch/venv/bin/spoofwatch", "serve"])
    assert looks_like_spoofwatch(["spoofwatch", "serve", "--config", "x"])
    assert looks_like_spoofwatch(["/usr/bin/python3", "-m", "daemon", "--model.path", "m.onnx"])
    assert not looks_like_spoofwatch(["spoofwatch", "tap"])
    assert not looks_like_spoofwatch(["nc", "-l", "5555"])
    assert PortOwner(1, "python\0-m\0daemon").is_spoofwatch


def test_an_address_not_on_this_host_fails() -> None:
    remote = config(zmq={"ingest_endpoint": "tcp://192.0.2.1:5555", "pub_endpoint": "tcp://127.0.0.1:*"},
                    webrtc={"port": 0}, auth={"mode": "off"})
    [finding] = [f for f in check_ports(remote) if "192.0.2.1" in f.detail]
    assert finding.status == "FAIL" and "cannot bind" in finding.detail


# ---------------------------------------------------------------- credentials


def test_auth_off_on_loopback_is_ok_and_off_on_the_network_warns() -> None:
    assert statuses(check_auth(DaemonConfig())) == ["OK"]
    exposed = config(webrtc={"host": "0.0.0.0"}, auth={"mode": "off"})
    [finding] = check_auth(exposed)
    assert finding.status == "WARN" and "reads every stream" in finding.detail


def http_auth(tokens: Path) -> DaemonConfig:
    return config(zmq=LOOPBACK_ZMQ, webrtc={"host": "0.0.0.0"}, auth={"tokens_file": str(tokens)})


def test_tokens_file_ok(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.txt"
    append_private(tokens, f"gateway client {new_token()}")
    [finding] = check_auth(http_auth(tokens))
    assert finding.status == "OK" and "1 in" in finding.detail and "0o600" in finding.detail


def test_tokens_file_missing_loose_or_broken_fails(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.txt"
    [missing] = check_auth(http_auth(tokens))
    assert missing.status == "FAIL" and "spoofwatch keys token" in missing.fix
    append_private(tokens, f"gateway client {new_token()}")
    tokens.chmod(0o644)
    [loose] = check_auth(http_auth(tokens))
    assert loose.status == "FAIL" and "others" in loose.detail and loose.fix.startswith(f"chmod 600 {tokens}")
    tokens.chmod(0o600)
    with tokens.open("a") as handle:
        handle.write("short client abc\n")
    [broken] = check_auth(http_auth(tokens))
    assert broken.status == "FAIL" and "shorter" in broken.detail


def curve_auth(keys: Path) -> DaemonConfig:
    return config(zmq={"ingest_endpoint": "tcp://0.0.0.0:5555", "pub_endpoint": "tcp://0.0.0.0:5556"},
                  webrtc={"enabled": False}, observability={"enabled": False},
                  auth={"zmq_keys_dir": str(keys)})


def test_curve_keys_ok(tmp_path: Path) -> None:
    keys = tmp_path / "zmq"
    generate_keys("server", keys)
    client_public, _ = generate_keys("alice", tmp_path / "alice")
    add_key(client_public, keys, "client", None)
    [finding] = check_auth(curve_auth(keys))
    assert finding.status == "OK" and "1 allowed key" in finding.detail


def test_curve_keys_missing_loose_or_without_clients(tmp_path: Path) -> None:
    keys = tmp_path / "zmq"
    [missing] = check_auth(curve_auth(keys))
    assert missing.status == "FAIL" and "spoofwatch keys generate server" in missing.fix
    keys.mkdir()
    [no_server] = check_auth(curve_auth(keys))
    assert no_server.status == "FAIL" and "server.key_secret" in no_server.detail
    _, secret = generate_keys("server", keys)
    [nobody] = check_auth(curve_auth(keys))
    assert nobody.status == "WARN" and "spoofwatch keys add" in nobody.fix
    secret.chmod(0o640)
    keys.chmod(0o777)
    loose = check_auth(curve_auth(keys))
    assert statuses(loose) == ["FAIL", "FAIL", "WARN"]
    assert "group" in loose[0].detail and "writable by group or others" in loose[1].detail


# ---------------------------------------------------------------- codecs, packages, shared data


def test_webrtc_decoders_present() -> None:
    finding = check_webrtc_codecs(DaemonConfig())
    assert finding.status == "OK" and "opus" in finding.detail


def test_a_missing_webrtc_decoder_fails_when_whip_is_on(monkeypatch: pytest.MonkeyPatch) -> None:
    import av

    real = av.codec.Codec

    def without_opus(name: str, mode: str = "r") -> object:
        if name == "opus":
            raise av.codec.codec.UnknownCodecError(name)
        return real(name, mode)

    monkeypatch.setattr(av.codec, "Codec", without_opus)
    finding = check_webrtc_codecs(DaemonConfig())
    assert finding.status == "FAIL" and "opus" in finding.detail and "pip install" in finding.fix
    assert check_webrtc_codecs(config(webrtc={"enabled": False})).status == "WARN"


def test_corpus_codecs_present() -> None:
    if not (doctor_checks.shutil.which("ffmpeg") and doctor_checks.shutil.which("sox")):
        pytest.skip("ffmpeg or sox is not installed (scripts/system-packages.txt, group data)")
    finding = check_corpus_codecs()
    assert finding.status == "OK" and "amr-nb" in finding.detail and "g711" in finding.detail


def test_corpus_codecs_without_ffmpeg_or_sox_warn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither binary to be found
    finding = check_corpus_codecs()
    assert finding.status == "WARN" and "ffmpeg" in finding.detail and "sox" in finding.detail
    assert "apt-get install ffmpeg sox" in finding.fix


def test_debian_packages_found_or_named_for_install() -> None:
    present = check_debian_packages(which=lambda name: f"/usr/bin/{name}",
                                    find_library=lambda name: f"lib{name}.so.2")
    assert statuses(present) == ["OK"] * 4
    absent = check_debian_packages(which=lambda name: None, find_library=lambda name: None)
    assert statuses(absent) == ["WARN"] * 4
    assert [f.check for f in absent] == ["libportaudio2", "espeak-ng", "ffmpeg", "sox"]
    assert absent[0].fix.startswith("apt-get install libportaudio2") and "--mic" in absent[0].detail


def test_shared_data(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("shared data\n")
    assert check_shared_data({"SPOOFWATCH_SHARED_DATA": str(tmp_path)}, Path("/nonexistent")).status == "OK"
    missing = check_shared_data({}, tmp_path / "absent")
    assert missing.status == "WARN" and "SPOOFWATCH_SHARED_DATA" in missing.fix


# ---------------------------------------------------------------- the command


def doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clients.cli", "doctor", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **(env or {})})


def test_the_command_exits_0_when_nothing_fails(tmp_path: Path) -> None:
    path = tmp_path / "daemon.toml"
    path.write_text('[zmq]\ningest_endpoint = "tcp://127.0.0.1:*"\npub_endpoint = "tcp://127.0.0.1:*"\n'
                    '[webrtc]\nport = 0\n[model]\nproviders = ["CPUExecutionProvider"]\n')
    done = doctor("--config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for check in ("python", "ingest path", "config", "model", "onnxruntime", "verifier", "port", "auth", "codecs",
                  "libportaudio2", "shared data"):
        assert any(line.split()[1:2] == check.split()[:1] for line in lines), check
    assert all(line.split()[0] in ("OK", "WARN") for line in lines if line and not line[0].isdigit())
    assert "0 failed" in done.stdout
    assert any(line.startswith("OK    verifier") and "verifier.enabled = false" in line for line in lines)


def test_the_command_exits_1_on_a_failure_and_says_how_to_fix_it(tmp_path: Path) -> None:
    path = tmp_path / "daemon.toml"
    path.write_text('[webrtc]\nhost = "0.0.0.0"\nport = 0\n[zmq]\ningest_endpoint = "tcp://127.0.0.1:*"\n'
                    'pub_endpoint = "tcp://127.0.0.1:*"\n[auth]\ntokens_file = "/nonexistent/tokens.txt"\n')
    done = doctor("--config", str(path), env={"SPOOFWATCH_PURE_PYTHON_INGEST": "1"})
    assert done.returncode == 1
    [ingest] = [line for line in done.stdout.splitlines() if line.split()[1:2] == ["ingest"]]
    assert ingest.startswith("WARN") and "Fix: unset SPOOFWATCH_PURE_PYTHON_INGEST" in ingest
    [line] = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert "auth" in line and "Fix: spoofwatch keys token" in line
    assert "1 failed" in done.stdout
