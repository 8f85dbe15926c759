"""`spoofwatch doctor [--config FILE]`: check this host for `spoofwatch serve`, and say how to fix each problem.

One line per check: OK, WARN (something only another command needs, or worth a look), FAIL
(the daemon would not start or not work), SKIP (depends on a check that failed). Exit status 1
when any check FAILs, else 0. It reads the config as `serve` does (file < environment
SPOOFWATCH__SECTION__KEY), loads the model (and the verifier, only when it is on), and binds
nothing for longer than a probe.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from clients.doctor import Finding
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
from clients.doctor.ports import check_ports
from streaming_models.paths import default_shared_data_dir


def run_checks(config_path: Path | None, environ: Mapping[str, str],
               shared_data_default: Path | None = None) -> list[Finding]:
    findings = [check_python(), check_ingest_path()]
    config, finding = check_config(config_path, environ)
    findings.append(finding)
    if config is None:
        findings += [Finding(name, "SKIP", "needs a valid config")
                     for name in ("model", "onnxruntime", "verifier", "port", "auth", "codecs")]
    else:
        model, streaming, model_findings = check_model(config)
        findings += model_findings
        findings += check_onnxruntime(config, model)
        findings += check_verifier(config, streaming)
        findings += check_ports(config)
        findings += check_auth(config)
        findings.append(check_webrtc_codecs(config))
    findings.append(check_corpus_codecs())
    findings += check_debian_packages()
    findings.append(check_shared_data(environ, shared_data_default or default_shared_data_dir()))
    return findings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spoofwatch doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, metavar="FILE", help="the TOML config `serve` runs with")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    # onnxruntime and the daemon's modules log while loading; keep the report readable
    from daemon.logsetup import configure_logging

    configure_logging("error", "console", sys.stderr)
    findings = run_checks(args.config, os.environ)
    width = max(len(f.check) for f in findings)
    for finding in findings:
        print(finding.line(width))
    failed = sum(f.status == "FAIL" for f in findings)
    warned = sum(f.status == "WARN" for f in findings)
    print(f"\n{failed} failed, {warned} warning(s)" + ("" if failed else ": spoofwatch serve can run here"))
    return 1 if failed else 0
