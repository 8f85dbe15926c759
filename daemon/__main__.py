"""`spoofwatch serve [--config FILE] [--section.key VALUE ...]`: run the detection daemon.

Flags are derived from the config dataclasses (one per setting, same help text), so
the CLI, the TOML file and the environment (`SPOOFWATCH__SECTION__KEY`) never drift.
A key is spelled with dashes (`--zmq.pub-hwm 500`, as `--help` lists it) or as in the
TOML file with underscores (`--zmq.pub_hwm 500`); both mean the same setting.
Exit status: 0 after a graceful shutdown, 1 forced by a second signal, 2 invalid config,
3 startup failed (no model, unreadable model, port in use).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import typing
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
import zmq

from daemon.config import INFERENCE_EXIT_WAIT_S, DaemonConfig, load_config, section_fields, sections
from daemon.errors import ConfigError, DaemonError, ModelNotFoundError
from daemon.logsetup import configure_logging
from streaming_models.runtime.errors import BackendError, ModelFormatError

if TYPE_CHECKING:
    from daemon.verifier import WindowScorer
    from streaming_models.runtime.backend import Backend

EXIT_CONFIG = 2
EXIT_STARTUP = 3


def _metavar(kind: object) -> str:
    if typing.get_origin(kind) is typing.Literal:
        return "{" + ",".join(map(str, typing.get_args(kind))) + "}"
    if typing.get_origin(kind) is tuple:
        return '["A","B"]'
    return getattr(kind, "__name__", "VALUE").upper()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spoofwatch serve",
        description="Run the detection daemon. Settings: defaults < --config FILE < environment "
                    "SPOOFWATCH__SECTION__KEY < flags --section.key VALUE (the key with dashes as listed "
                    "below, or with underscores as in the TOML file). See configs/default.toml for every setting.")
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML config file")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved configuration and exit")
    defaults = DaemonConfig()
    for section, cls in sections().items():
        group = parser.add_argument_group(f"[{section}]")
        for spec, kind in section_fields(cls):
            default = getattr(getattr(defaults, section), spec.name)
            group.add_argument(f"--{section}.{spec.name.replace('_', '-')}", dest=f"{section}.{spec.name}",
                               metavar=_metavar(kind), default=None,
                               # argparse %-formats help strings: a literal "1 %" must reach it as "1 %%"
                               help=f"{spec.metadata.get('help', '')} (default: {default!r})".replace("%", "%%"))
    return parser


def dashed_flag(arg: str) -> str:
    """`--zmq.pub_hwm[=V]` -> `--zmq.pub-hwm[=V]`: settings flags take the TOML spelling too."""
    name, eq, value = arg.partition("=")
    if not name.startswith("--") or "." not in name:
        return arg
    return name.replace("_", "-") + eq + value


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    # only option names are rewritten: a value (a path, an endpoint) is left as it is
    args = build_parser().parse_args([dashed_flag(a) if a.startswith("--") else a for a in raw])
    flags = {key: value for key, value in vars(args).items() if "." in key and value is not None}
    try:
        config = load_config(args.config, os.environ, flags)
    except ConfigError as exc:
        print(f"spoofwatch serve: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.print_config:
        print(config)
        return 0
    configure_logging(config.logging.level, config.logging.format)
    log = structlog.get_logger("daemon")
    # imported here so `--help` and config errors stay fast
    from daemon.app import build_backend, resolve_model_path
    from daemon.verifier import load_verifier

    try:
        # the triton backend reads the model from the server; a local file only for its fallback
        remote = config.model.backend == "triton" and not config.model.triton_fallback
        model_path = None if remote else resolve_model_path(config.model.path)
        backend = build_backend(config, model_path)
        verifier = load_verifier(config.verifier, backend.metadata) if config.verifier.enabled else None
    except ConfigError as exc:  # a setting the model cannot take (verifier.window_s)
        log.error("startup_failed", error=str(exc))
        print(f"spoofwatch serve: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (ModelNotFoundError, DaemonError, BackendError, ModelFormatError) as exc:
        log.error("startup_failed", error=str(exc))
        print(f"spoofwatch serve: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    return serve(config, backend, verifier)


def serve(config: DaemonConfig, backend: Backend, verifier: WindowScorer | None = None) -> int:
    """Run the daemon until a signal; the exit status (module docstring)."""
    from daemon.app import Daemon

    log = structlog.get_logger("daemon")
    daemon = Daemon(config, backend, verifier)
    try:
        status = asyncio.run(daemon.run_until_signal())
    except zmq.ZMQError as exc:
        log.error("startup_failed", error=str(exc))
        print(f"spoofwatch serve: cannot bind a ZeroMQ endpoint: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    except ConfigError as exc:  # found at start: an unreadable tokens file
        log.error("startup_failed", error=str(exc))
        print(f"spoofwatch serve: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:  # an HTTP/TCP listener could not start (port in use, bad host)
        log.error("startup_failed", error=str(exc))
        print(f"spoofwatch serve: cannot listen: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    exit_past_hung_inference(daemon.inference_threads(), status)
    return status


def exit_past_hung_inference(threads: list[threading.Thread], status: int) -> None:
    """A model call that never returned keeps its executor thread alive, and the interpreter joins
    that thread at exit: the drained daemon would wait for SIGKILL. Exit without it instead."""
    hung = list(threads)
    for thread in hung:
        thread.join(INFERENCE_EXIT_WAIT_S)
    if any(thread.is_alive() for thread in hung):
        structlog.get_logger("daemon").error("exiting_past_hung_inference", status=status,
                                             threads=sum(thread.is_alive() for thread in hung))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
