"""`spoofwatch keys`: make the credentials the daemon checks (docs/security.md).

    spoofwatch keys token NAME [--role client|monitor] [--file tokens.txt]
        a new bearer token for the HTTP listener, appended to the tokens file as `NAME ROLE TOKEN`
        (created with mode 0600) and printed once for the client
    spoofwatch keys generate NAME [--dir DIR]
        a ZeroMQ CURVE key pair: DIR/NAME.key (public, to share) and DIR/NAME.key_secret (0600);
        `server` in the daemon's auth.zmq_keys_dir is the daemon's own
    spoofwatch keys add PUBLIC.key --dir KEYS_DIR [--role client|monitor] [--name NAME]
        allow a client's public key: copied to KEYS_DIR/clients/ or KEYS_DIR/monitors/ (a running
        daemon picks it up on the key's first connection)
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
    generate = commands.add_parser("generate", help="make a ZeroMQ CURVE key pair")
    generate.add_argument("name", help="file name stem: `server` for the daemon, else the client's name")
    generate.add_argument("--dir", type=Path, default=Path("."), help="where to write (default .)")
    add = commands.add_parser("add", help="allow a client's public CURVE key")
    add.add_argument("public_key", type=Path, help="the client's NAME.key")
    add.add_argument("--dir", type=Path, required=True, help="the daemon's auth.zmq_keys_dir")
    add.add_argument("--role", choices=ROLES, default="client",
                     help="client: its own streams' results; monitor: every stream's (default client)")
    add.add_argument("--name", default=None, help="name in logs and topics (default: the file's stem)")
    return parser


def generate_keys(name: str, directory: Path) -> tuple[Path, Path]:
    import zmq.auth

    directory.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(directory, name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)


def add_key(public_key: Path, keys_dir: Path, role: str, name: str | None) -> Path:
    from zmq.auth.certs import load_certificate

    from daemon.zmq_auth import ROLE_DIRS

    _, secret = load_certificate(public_key)
    if secret is not None:
        raise ValueError(f"{public_key} holds a secret key: add the public NAME.key, keep the secret with its owner")
    stem = name or public_key.name.removesuffix(".key")
    if not stem or not all(c.isalnum() or c in "-_." for c in stem):
        raise ValueError(f"name {stem!r}: letters, digits, - _ . only (it becomes a topic namespace)")
    target_dir = keys_dir / ROLE_DIRS[role]
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{stem}.key"
    for other in ROLE_DIRS.values():  # one role per name
        if (keys_dir / other / f"{stem}.key").exists() and other != ROLE_DIRS[role]:
            raise ValueError(f"{stem} is already allowed as {other[:-1]}; remove {keys_dir / other / stem}.key first")
    target.write_bytes(public_key.read_bytes())
    return target


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
    elif args.command == "generate":
        public, secret = generate_keys(args.name, args.dir)
        print(f"public key {public} (share it: `spoofwatch keys add` on the daemon's side)\n"
              f"secret key {secret} (keep it private)")
    elif args.command == "add":
        try:
            target = add_key(args.public_key, args.dir, args.role, args.name)
        except (OSError, ValueError) as exc:
            print(f"spoofwatch keys add: {exc}", file=sys.stderr)
            return 1
        print(f"allowed {target} as {args.role}")
    return 0
