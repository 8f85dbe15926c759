"""The host checks of `spoofwatch doctor` (ports: `ports.py`). Each returns findings with their fix.

What the daemon needs is FAIL when missing (Python, config, model, onnxruntime, the verifier when
it is on, credentials when authentication is on, the WebRTC decoders when WHIP is on); what only
other commands need, or what only costs speed (the pure-Python ingest path), is WARN (the
microphone, the demo, the corpus builder's codecs, the shared data).
"""

from __future__ import annotations

import ctypes.util
import importlib.metadata
import shutil
import stat
import sys
import sysconfig
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from clients.doctor import Finding, Status
from daemon.config import DaemonConfig, load_config
from daemon.errors import ConfigError, ModelNotFoundError
from streaming_models.paths import SHARED_DATA_ENV
from streaming_models.runtime import fastpath
from streaming_models.runtime.errors import BackendError, ModelFormatError
from streaming_models.runtime.model_format import ModelMetadata

MIN_PYTHON = (3, 11)
ORT_CPU, ORT_GPU = "onnxruntime", "onnxruntime-gpu"
CUDA_PROVIDER = "CUDAExecutionProvider"
# what WHIP (aiortc, through PyAV) decodes: Opus and G.711; ZeroMQ and the telephony adapters
# decode linear PCM and G.711 themselves (daemon/wire/), with numpy only
WEBRTC_DECODERS = ("opus", "pcm_mulaw", "pcm_alaw")


def check_python(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> Finding:
    text = ".".join(map(str, version))
    if version[:2] >= MIN_PYTHON:
        return Finding("python", "OK", f"Python {text} ({sys.executable})")
    return Finding("python", "FAIL", f"Python {text} is older than {'.'.join(map(str, MIN_PYTHON))}",
                   "install Python 3.11 or newer (Debian bookworm: python3) and reinstall spoofwatch in it")


def check_config(path: Path | None, environ: Mapping[str, str]) -> tuple[DaemonConfig | None, Finding]:
    """The config as `spoofwatch serve --config PATH` would resolve it (file < environment)."""
    overrides = sorted(k for k in environ if k.startswith("SPOOFWATCH__"))
    source = str(path) if path is not None else "the defaults (no --config)"
    try:
        config = load_config(path, environ)
    except ConfigError as exc:
        fix = ("give the path of a TOML file (deploy/daemon.toml is an example for a deployment)"
               if path is not None and not path.is_file()
               else "correct that setting; every setting, with its default, is in configs/default.toml")
        return None, Finding("config", "FAIL", f"{source}: {exc}", fix)
    extra = f", with {len(overrides)} environment override(s): {', '.join(overrides)}" if overrides else ""
    return config, Finding("config", "OK", f"{source}: valid{extra}")


def check_model(config: DaemonConfig) -> tuple[Path | None, ModelMetadata | None, list[Finding]]:
    """Loads the model the way `serve` does (the same backend and metadata checks); its metadata is
    what the verifier is checked against."""
    from daemon.app import build_backend, resolve_model_path
    from daemon.policy import resolve_thresholds

    try:
        path = resolve_model_path(config.model.path)
    except ModelNotFoundError as exc:
        return None, None, [Finding("model", "FAIL", f"model not found: {exc}",
                                    "set model.path to an exported .onnx (`spoofwatch export`), or reinstall "
                                    "spoofwatch: its default model ships in the package")]
    try:
        backend = build_backend(config, path)
    except ImportError as exc:  # the torch backend without the train extra
        return path, None, [Finding("model", "FAIL", f"backend {config.model.backend!r} cannot load: {exc}",
                                    "use model.backend = \"onnx\" with an exported .onnx model")]
    except (BackendError, ModelFormatError) as exc:
        return path, None, [Finding("model", "FAIL", f"{path}: {exc}",
                                    "re-export the model (`spoofwatch export`) or point model.path at a good one")]
    meta = backend.metadata
    findings = [Finding("model", "OK", f"{path}: {meta.model_id}, {meta.sample_rate_hz} Hz, hop {meta.hop_ms} ms, "
                        f"{len(meta.states)} state tensor(s)")]
    _, without = resolve_thresholds(config.decision, meta)
    if without:
        findings.append(Finding("model", "WARN", f"no operating threshold in the model for {', '.join(without)}: "
                                "the configured decision.*_enter/_exit values are used",
                                "export with thresholds (`spoofwatch export` after training), or set "
                                "decision.thresholds = \"config\" to make the choice explicit"))
    return path, meta, findings


def installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def check_onnxruntime(config: DaemonConfig, model: Path | None,
                      is_installed: Callable[[str], bool] = installed) -> list[Finding]:
    if config.model.backend != "onnx":
        return [Finding("onnxruntime", "OK", f"not used (model.backend = {config.model.backend!r})")]
    cpu, gpu = is_installed(ORT_CPU), is_installed(ORT_GPU)
    if cpu and gpu:
        return [Finding("onnxruntime", "FAIL", "both onnxruntime and onnxruntime-gpu are installed: one "
                        "shadows the other", "pip uninstall -y onnxruntime onnxruntime-gpu, then "
                        "pip install 'spoofwatch[gpu]' on a CUDA host or 'spoofwatch[cpu]'")]
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return [Finding("onnxruntime", "FAIL", f"onnxruntime is not importable ({exc})",
                        "pip install 'spoofwatch[cpu]' (or 'spoofwatch[gpu]' on a CUDA host)")]
    available = list(ort.get_available_providers())
    usable = [p for p in config.model.providers if p in available]
    package = f"{ORT_GPU if gpu else ORT_CPU} {ort.__version__}"
    if not usable:
        return [Finding("onnxruntime", "FAIL", f"{package} has none of model.providers "
                        f"{list(config.model.providers)} (it has {available})",
                        "list one of its providers in model.providers, e.g. [\"CPUExecutionProvider\"]")]
    detail = f"{package}: providers {available}; the daemon uses {usable}"
    if CUDA_PROVIDER not in available:
        cuda = ("no CUDA: inference on the CPU" if CUDA_PROVIDER in config.model.providers
                else "CUDA not asked for in model.providers")
        return [Finding("onnxruntime", "OK", f"{detail} ({cuda})")]
    if CUDA_PROVIDER in usable and model is not None:
        return [_cuda_session(ort, model, detail)]
    return [Finding("onnxruntime", "OK", detail)]


def _cuda_session(ort: Any, model: Path, detail: str) -> Finding:
    """onnxruntime-gpu lists CUDA even where its libraries or the driver are missing: open a session."""
    options = ort.SessionOptions()
    options.log_severity_level = 4  # its fallback warning would interleave with the report
    try:
        session = ort.InferenceSession(str(model), sess_options=options, providers=[CUDA_PROVIDER])
        running = session.get_providers()
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped exceptions
        running, detail = [], f"{detail}; opening the model on CUDA failed: {exc}"
    if CUDA_PROVIDER in running:
        return Finding("onnxruntime", "OK", f"{detail}; the model runs on CUDA")
    return Finding("onnxruntime", "WARN", f"{detail}; but the model cannot run on CUDA here (it falls back "
                   "to the CPU)", "install the CUDA and cuDNN libraries onnxruntime-gpu was built for and "
                   "the NVIDIA driver (the GPU image has them: Dockerfile.gpu), or drop CUDA from model.providers")


def check_verifier(config: DaemonConfig, streaming: ModelMetadata | None, cwd: Path | None = None) -> list[Finding]:
    """Loads the second-tier verifier as `serve` does (`daemon.verifier.load_verifier`: the file, its
    format, its rate and window against the streaming model, one silent window scored); onnxruntime
    and the file are touched only when verifier.enabled."""
    settings = config.verifier
    if not settings.enabled:
        return [Finding("verifier", "OK", "off (verifier.enabled = false): not checked")]
    if streaming is None:
        return [Finding("verifier", "SKIP", "needs the streaming model (the verifier reuses its rate and hops)")]
    from daemon.verifier import VerifierError, load_verifier

    path = Path(settings.path).expanduser()
    path = path if path.is_absolute() else (cwd or Path.cwd()) / path
    try:
        verifier = load_verifier(settings, streaming, cwd)
    except ConfigError as exc:  # the window: longer than the file takes, or shorter than one hop
        return [Finding("verifier", "FAIL", str(exc), "set verifier.window_s within what the message says "
                        "(the window the verifier was trained on is the usual choice)")]
    except VerifierError as exc:
        fix = ("set verifier.path to the exported verifier (docs/verifier.md); a relative path is taken from the "
               f"directory serve starts in (doctor ran in {Path.cwd()}); or set verifier.enabled = false"
               if not path.is_file() else
               "point verifier.path at an exported verifier (not the streaming model: that is model.path) "
               "whose sample rate is the streaming model's; re-export it if it does not load")
        return [Finding("verifier", "FAIL", str(exc), fix)]
    meta = verifier.metadata
    findings = [Finding("verifier", "OK", f"{path}: {meta.model_id}, window {settings.window_s:g} s (the file "
                        f"takes up to {meta.max_window_s:g} s), {meta.sample_rate_hz} Hz; a silent window scores")]
    if abs(settings.window_s - meta.window_s) > 1e-6:
        findings.append(Finding("verifier", "WARN", f"verifier.window_s = {settings.window_s:g} s differs from the "
                                f"{meta.window_s:g} s {meta.model_id} was trained on: its scores may shift",
                                f"set verifier.window_s = {meta.window_s:g}, unless you measured the other window"))
    return findings


def check_ingest_path(c_compiler: Callable[[], str | None] | None = None,
                      python_headers: Callable[[], Path | None] | None = None) -> Finding:
    """Which per-message audio path the daemon's StreamBuffer runs here (`fastpath.ingest_path`, with
    this process's environment, as `serve` reads it), and when it is the pure-Python one, why."""
    chosen = fastpath.ingest_path()
    if chosen.compiled:
        return Finding("ingest path", "OK", f"compiled ({chosen.reason})")
    whys, fixes = [], []
    if fastpath.forced_python():
        whys.append(f"{fastpath.FORCE_PYTHON_ENV} is set (it forces the slower path, to compare the two)")
        fixes.append(f"unset {fastpath.FORCE_PYTHON_ENV} (or set it to 0)")
    if fastpath.load_extension() is None:
        compiler, headers = (c_compiler or _c_compiler)(), (python_headers or _python_headers)()
        missing = [what for what, found in (("a C compiler", compiler), ("Python's headers (Python.h)", headers))
                   if found is None]
        lacks = (f"this host lacks {' and '.join(missing)}" if missing
                 else f"the compiler {compiler} and Python.h are here now, so it was installed without them")
        whys.append(f"the C extension streaming_models.runtime._fastpath is not built ({lacks})")
        fixes.append("install the `build` group of scripts/system-packages.txt (gcc, python3-dev: sudo bash "
                     "scripts/install-system-packages.sh build), then reinstall spoofwatch from its source: "
                     "`make setup` in a checkout (after rm -f .venv/.installed, whose stamp skips an unchanged "
                     "install), or pip install --force-reinstall --no-deps . in the source tree")
    return Finding("ingest path", "WARN", f"pure Python, more CPU per message: {'; '.join(whys) or chosen.reason}",
                   "; ".join(fixes))


def _c_compiler() -> str | None:
    """The compiler setuptools would call (sysconfig's CC, else cc), if it is on PATH."""
    configured = (sysconfig.get_config_var("CC") or "cc").split()
    return shutil.which(configured[0]) if configured else None


def _python_headers() -> Path | None:
    header = Path(sysconfig.get_paths()["include"]) / "Python.h"
    return header if header.is_file() else None


def _loose_permissions(path: Path) -> str:
    """Which of group/other may touch a secret ('' when none)."""
    mode = path.stat().st_mode
    who = [name for name, bits in (("group", stat.S_IRWXG), ("others", stat.S_IRWXO)) if mode & bits]
    return " and ".join(who)


def check_auth(config: DaemonConfig) -> list[Finding]:
    if not config.auth_enabled_anywhere:
        if config.auth.mode == "off" and _off_loopback(config):
            return [Finding("auth", "WARN", "auth.mode = \"off\" with listeners off loopback: anyone who reaches "
                            "them reads every stream", "keep it only behind an authenticating proxy or on a "
                            "trusted network; else auth.mode = \"auto\" (docs/security.md)")]
        return [Finding("auth", "OK", "off: every listener is on loopback (auth.mode = "
                        f"\"{config.auth.mode}\")")]
    findings = []
    if config.http_auth_required:
        findings += _tokens_findings(Path(config.auth.tokens_file))
    if config.zmq_auth_required:
        findings += _curve_findings(Path(config.auth.zmq_keys_dir))
    if config.audiosocket.enabled and config.audiosocket.allowed_peers:
        findings.append(Finding("auth", "OK", f"audiosocket admits {len(config.audiosocket.allowed_peers)} "
                                "peer address(es)"))
    return findings or [Finding("auth", "OK", "on; no listener needs credentials files")]


def _off_loopback(config: DaemonConfig) -> bool:
    from daemon.auth import is_loopback_endpoint, is_loopback_host

    hosts = [is_loopback_host(config.webrtc.host)] if config.http_enabled else []
    if config.zmq.enabled:
        hosts += [is_loopback_endpoint(config.zmq.ingest_endpoint), is_loopback_endpoint(config.zmq.pub_endpoint)]
    if config.audiosocket.enabled:
        hosts.append(is_loopback_host(config.audiosocket.host))
    return not all(hosts)


def _tokens_findings(path: Path) -> list[Finding]:
    from daemon.auth import TokenStore

    make = f"spoofwatch keys token NAME --file {path}"
    if not path.is_file():
        return [Finding("auth", "FAIL", f"HTTP needs tokens: {path} does not exist", make)]
    try:
        tokens = TokenStore.from_file(path)
    except ConfigError as exc:
        return [Finding("auth", "FAIL", f"{path}: {exc}", f"fix the line, or make tokens with `{make}`")]
    loose = _loose_permissions(path)
    if loose:
        return [Finding("auth", "FAIL", f"{path} is readable or writable by {loose}: anyone with it reads "
                        "every stream", f"chmod 600 {path} (owned by the daemon's user)")]
    if len(tokens) == 0:
        return [Finding("auth", "WARN", f"{path} holds no token: every HTTP request is refused", make)]
    return [Finding("auth", "OK", f"HTTP tokens: {len(tokens)} in {path} (mode {oct(path.stat().st_mode & 0o777)})")]


def _curve_findings(keys_dir: Path) -> list[Finding]:
    from daemon.zmq_auth import ROLE_DIRS, SERVER_KEY, load_allow_list, load_server_keys

    make = f"spoofwatch keys generate server --dir {keys_dir}"
    if not keys_dir.is_dir():
        return [Finding("auth", "FAIL", f"ZeroMQ needs CURVE keys: {keys_dir} does not exist", make)]
    try:
        load_server_keys(keys_dir)
    except ConfigError as exc:
        return [Finding("auth", "FAIL", str(exc), make)]
    findings = []
    secret = keys_dir / SERVER_KEY
    if loose := _loose_permissions(secret):
        findings.append(Finding("auth", "FAIL", f"{secret} is readable or writable by {loose}: anyone with it "
                                "can pose as the daemon", f"chmod 600 {secret}"))
    for directory in [keys_dir, *(keys_dir / sub for sub in ROLE_DIRS.values())]:
        if directory.is_dir() and directory.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            findings.append(Finding("auth", "FAIL", f"{directory} is writable by group or others: they can "
                                    "allow their own keys", f"chmod go-w {directory}"))
    allowed = load_allow_list(keys_dir)
    if not allowed:
        findings.append(Finding("auth", "WARN", f"no client or monitor keys in {keys_dir}: no one can connect "
                                "over ZeroMQ", f"spoofwatch keys add CLIENT.key --dir {keys_dir}"))
    if not findings:
        findings.append(Finding("auth", "OK", f"ZeroMQ CURVE: server key and {len(allowed)} allowed key(s) "
                                f"in {keys_dir}"))
    return findings


def check_webrtc_codecs(config: DaemonConfig) -> Finding:
    """Decoders WHIP needs (PyAV's bundled FFmpeg); the other ingests decode in daemon/wire/."""
    built_in = "G.711 and linear PCM built in"
    try:
        import av

        missing = []
        for name in WEBRTC_DECODERS:
            try:
                av.codec.Codec(name, "r")
            except ValueError:  # PyAV's UnknownCodecError
                missing.append(name)
        problem = f"PyAV {av.__version__} lacks the {', '.join(missing)} decoder(s)" if missing else ""
    except ImportError as exc:
        problem = f"PyAV is not importable ({exc})"
    if not problem:
        return Finding("codecs", "OK", f"{built_in}; WebRTC: {', '.join(WEBRTC_DECODERS)} (PyAV)")
    status: Status = "FAIL" if config.webrtc.enabled else "WARN"
    return Finding("codecs", status, f"{built_in}; WebRTC: {problem}",
                   "reinstall aiortc and av from their wheels (pip install --force-reinstall av aiortc), "
                   "which bundle FFmpeg with Opus")


def check_corpus_codecs() -> Finding:
    """The corpus builder's telephone channels run ffmpeg and sox (not the daemon): one codec per family."""
    try:
        from streaming_models.data.transforms import get_transform, list_transforms
        from streaming_models.data.transforms.base import TransformUnavailable
    except ImportError as exc:
        return Finding("corpus codecs", "WARN", f"not checked ({exc})", "only `spoofwatch data build` needs them")
    families: dict[str, Any] = {}
    for spec in list_transforms():
        transform = get_transform(spec)
        if transform.kind == "telephony":
            families.setdefault(getattr(transform, "codec_family", spec), transform)
    problems = []
    for family, transform in families.items():
        try:
            transform.check_available()
        except TransformUnavailable as exc:
            problems.append(f"{family}: {exc}")
    if not problems:
        return Finding("corpus codecs", "OK", f"{len(families)} telephone codec families: {', '.join(families)}")
    return Finding("corpus codecs", "WARN", "; ".join(problems),
                   "only `spoofwatch data build` needs them: apt-get install ffmpeg sox libsox-fmt-all")


def check_debian_packages(which: Callable[[str], str | None] = shutil.which,
                          find_library: Callable[[str], str | None] = ctypes.util.find_library) -> list[Finding]:
    """What other commands need from Debian, found by the file each package provides."""
    wanted = [("libportaudio2", find_library("portaudio"), "`spoofwatch send --mic`"),
              ("espeak-ng", which("espeak-ng"), "`spoofwatch demo`, for its synthetic clip"),
              ("ffmpeg", which("ffmpeg"), "the corpus builder's telephone codecs"),
              ("sox", which("sox"), "the corpus builder's AMR-NB codec")]
    findings = []
    for package, found, needed_by in wanted:
        if found:
            findings.append(Finding(package, "OK", f"{found}, used by {needed_by}"))
        else:
            findings.append(Finding(package, "WARN", f"not installed; only {needed_by} needs it",
                                    f"apt-get install {package} (scripts/install-system-packages.sh installs them all)"))
    return findings


def check_shared_data(environ: Mapping[str, str], default: Path) -> Finding:
    path = Path(environ.get(SHARED_DATA_ENV, default))
    if (path / "README.md").is_file():
        return Finding("shared data", "OK", str(path))
    return Finding("shared data", "WARN", f"{path} not found; training, evaluation and the demo's genuine clip "
                   "read it (the daemon does not)", "set SPOOFWATCH_SHARED_DATA to the shared data folder")
