"""`spoofwatch proxy`: one results endpoint for several daemon replicas (ZeroMQ XSUB/XPUB, clients/proxy.py)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from clients.proxy import ResultsProxy


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spoofwatch proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--xsub", metavar="ENDPOINT",
                        help="bind here for daemons whose zmq.pub_connect names it, e.g. tcp://0.0.0.0:5557")
    parser.add_argument("--connect", action="append", default=[], metavar="ENDPOINT",
                        help="also connect to this daemon's results endpoint (zmq.pub_endpoint); repeatable")
    parser.add_argument("--xpub", required=True, metavar="ENDPOINT",
                        help="bind here for subscribers (spoofwatch tap --results-endpoint), e.g. tcp://0.0.0.0:5558")
    parser.add_argument("--hwm", type=int, default=10000, help="messages queued per connection on each side")
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.xsub is None and not args.connect:
        parser.error("give --xsub (daemons connect) and/or --connect (the proxy connects to daemons)")
    from daemon.logsetup import configure_logging

    configure_logging("info", "auto")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with ResultsProxy(args.xsub, args.xpub, args.connect, hwm=args.hwm) as proxy:
        print(f"spoofwatch proxy: {proxy.xsub_endpoint or ', '.join(args.connect)} -> {proxy.xpub_endpoint}",
              file=sys.stderr, flush=True)
        stop.wait()
    return 0
