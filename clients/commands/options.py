"""Flags shared by the client subcommands, with the daemon's default endpoints."""

from __future__ import annotations

import argparse

from clients.client import DEFAULT_INGEST_ENDPOINT, DEFAULT_RESULTS_ENDPOINT

DEFAULT_WHIP_URL = "http://127.0.0.1:8080/whip"


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


def parse_metadata(items: list[str]) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--meta takes KEY=VALUE, got {item!r}")
        metadata[key] = value
    return metadata
