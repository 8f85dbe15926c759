"""`spoofwatch tap [STREAM ...]`: watch the daemon's published results live.

A meter line per stream (smoothed p_spoof and p_codec bars and the decision),
redrawn in place on a terminal and printed as plain lines otherwise; `--json`
prints every message as one JSON line instead (for scripts and `jq`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from clients.client import ResultSubscription
from clients.commands.options import add_curve_keys, add_results_endpoint, curve_credentials
from clients.meter import Meter


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spoofwatch tap", description=__doc__.splitlines()[0])
    parser.add_argument("streams", nargs="*", metavar="STREAM", help="stream ids to watch (default: all)")
    parser.add_argument("--json", action="store_true", help="print each message as a JSON line")
    parser.add_argument("--until-closed", action="store_true",
                        help="exit once every named STREAM has closed (needs STREAM ids)")
    parser.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="exit with status 1 after S seconds without a message")
    parser.add_argument("--count", type=int, default=None, metavar="N", help="exit after N messages")
    add_results_endpoint(parser)
    add_curve_keys(parser)
    return parser


async def run_tap(args: argparse.Namespace) -> int:
    meter = None if args.json else Meter(sys.stdout)
    subscription = ResultSubscription(
        args.results_endpoint, args.streams or None, timeout_s=args.timeout, until_closed=args.until_closed,
        curve=args.curve,
    )
    seen = 0
    try:
        async for message in subscription:
            if meter is None:
                print(json.dumps(message, separators=(",", ":")), flush=True)
            else:
                meter.update(message)
            seen += 1
            if args.count is not None and seen >= args.count:
                break
    except TimeoutError:
        print(f"spoofwatch tap: no message from {args.results_endpoint} for {args.timeout} s", file=sys.stderr)
        return 1
    finally:
        subscription.close()
    return 0


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.curve = curve_credentials(parser, args)
    if args.until_closed and not args.streams:
        print("spoofwatch tap: --until-closed needs STREAM ids", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run_tap(args))
    except KeyboardInterrupt:
        return 0
