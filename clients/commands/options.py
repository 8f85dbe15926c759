"""Flags shared by the client subcommands, with the daemon's default endpoints."""

from __future__ import annotations

import argparse
import os

from clients.client import CurveCredentials
from daemon.wire.endpoints import DEFAULT_INGEST_ENDPOINT, DEFAULT_RESULTS_ENDPOINT


def add_results_endpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results-endpoint", default=DEFAULT_RESULTS_ENDPOINT, metavar="URL",
        help=f"the daemon's results PUB socket (default {DEFAULT_RESULTS_ENDPOINT})",
    )


def add_ingest_endpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint", default=DEFAULT_INGEST_ENDPOINT, metavar="URL",
        help=f"the daemon's ZeroMQ ingest (ROUTER) socket (default {DEFAULT_INGEST_ENDPOINT})",
    )


def add_curve_keys(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--client-key", default=os.environ.get("SPOOFWATCH_CLIENT_KEY"), metavar="FILE",
                        help="zmq: this client's NAME.key_secret when the daemon has CURVE on "
                             "(default $SPOOFWATCH_CLIENT_KEY; docs/security.md)")
    parser.add_argument("--server-key", default=os.environ.get("SPOOFWATCH_SERVER_KEY"), metavar="FILE",
                        help="zmq: the daemon's public server.key (default $SPOOFWATCH_SERVER_KEY)")


def curve_credentials(parser: argparse.ArgumentParser, args: argparse.Namespace) -> CurveCredentials | None:
    if not args.client_key and not args.server_key:
        return None
    if not (args.client_key and args.server_key):
        parser.error("--client-key and --server-key go together")
    try:
        return CurveCredentials.from_files(args.client_key, args.server_key)
    except (OSError, ValueError) as exc:
        parser.error(f"cannot read the CURVE keys: {exc}")


def parse_metadata(items: list[str]) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--meta takes KEY=VALUE, got {item!r}")
        metadata[key] = value
    return metadata
