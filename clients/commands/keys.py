"""`spoofwatch keys`: make the credentials the daemon checks (docs/security.md).

    spoofwatch keys token NAME [--role client|monitor] [--file tokens.txt]
        a new bearer token for the HTTP listener, appended to the tokens file as `NAME ROLE TOKEN`
        (created with mode 0600) and printed once for the client
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from daemon.auth import ROLES, new_token


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spoofwatch keys", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    token = commands.add_parser("token", help="add a bearer token to the tokens file (auth.tokens_file)")
    token.add_argument("name", help="who holds it (logged with every refusal; letters, digits, - _ .)")
    token.add_argument("--role", choices=ROLES, default="client",
                       help="client: send audio; monitor: also read every stream (console). Default client")
    token.add_argument("--file", type=Path, default=Path("tokens.txt"), help="tokens file (default tokens.txt)")
    return parser


def append_private(path: Path, line: str) -> None:
    """Append a line to a file only its owner can read (created 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write(line + "\n")


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "token":
        if not args.name or any(c.isspace() or c == "#" for c in args.name):
            parser.error("NAME must not contain spaces or #")
        value = new_token()
        append_private(args.file, f"{args.name} {args.role} {value}")
        print(f"added {args.role} token for {args.name} to {args.file}", file=sys.stderr)
        print(value)
    return 0
