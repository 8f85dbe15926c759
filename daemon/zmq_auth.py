"""ZeroMQ CURVE authentication and per-client result topics (docs/security.md).

With CURVE on, the ingest ROUTER and the results socket are CURVE servers: traffic is encrypted,
and pyzmq's ZAP authenticator (`zmq.auth.asyncio.AsyncioAuthenticator`) admits only client
public keys on the allow-list. The keys directory (`auth.zmq_keys_dir`) holds:

    server.key_secret   the daemon's key pair (`spoofwatch keys generate server --dir DIR`)
    clients/NAME.key    public keys of clients: they send audio and read their own streams' results
    monitors/NAME.key   public keys of monitors: they also read every stream's results

(`spoofwatch keys add NAME.key --dir DIR [--role monitor]`). A key added while the daemon runs is
picked up on its first connection (an unknown key rescans the directory, at most once a second).

Results isolation: the results socket becomes an XPUB in manual mode. A subscription carries the
ZAP User-Id of the subscriber (`client:NAME` or `monitor:NAME`), and the daemon installs it in a
namespace instead of as sent: a client's prefix P becomes `c/NAME/P`, a monitor's `m/P`. Each
message of a stream opened by client NAME is published twice, under `c/NAME/<stream id>` and
`m/<stream id>`; a stream of another transport (WHIP, telephony) only under `m/...`. So a client
that subscribes to everything still receives only its own streams. Subscribers ignore the topic
frame (the stream id is in the JSON), so clients need no change beyond their keys.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import zmq
import zmq.asyncio
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.auth.certs import load_certificate
from zmq.utils import z85

from daemon.errors import ConfigError
from daemon.refusals import Refusals

log = structlog.get_logger(__name__)

ZAP_DOMAIN = "spoofwatch"
SERVER_KEY = "server.key_secret"
ROLE_DIRS = {"client": "clients", "monitor": "monitors"}
RESCAN_INTERVAL_S = 1.0
MONITOR_PREFIX = b"m/"


def client_topic(user: str, stream_topic: bytes) -> bytes:
    """`client:NAME` + topic -> `c/NAME/topic`."""
    return b"c/" + user.split(":", 1)[-1].encode() + b"/" + stream_topic


@dataclass(frozen=True)
class CurveKeys:
    public: bytes
    secret: bytes


def load_server_keys(keys_dir: Path) -> CurveKeys:
    path = keys_dir / SERVER_KEY
    try:
        public, secret = load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError("auth.zmq_keys_dir", f"cannot read the daemon's key pair {path}: {exc} "
                          "(make it with `spoofwatch keys generate server --dir DIR`)") from None
    if secret is None:
        raise ConfigError("auth.zmq_keys_dir", f"{path} holds no secret key")
    return CurveKeys(public, secret)


def load_allow_list(keys_dir: Path) -> dict[bytes, str]:
    """z85 public key -> User-Id (`client:NAME` / `monitor:NAME`)."""
    allowed: dict[bytes, str] = {}
    for role, sub in ROLE_DIRS.items():
        directory = keys_dir / sub
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.key")):
            try:
                public, _ = load_certificate(path)
            except (OSError, ValueError) as exc:
                log.warning("zmq_key_unreadable", path=str(path), error=str(exc))
                continue
            allowed[public] = f"{role}:{path.stem}"
    return allowed


class Authenticator(AsyncioAuthenticator):
    """The allow-list, with a User-Id per key naming its role; unknown keys are refused and counted."""

    def __init__(self, context: zmq.asyncio.Context, keys_dir: Path, refusals: Refusals) -> None:
        super().__init__(context)
        self._refusals = refusals
        self.keys_dir = keys_dir
        self.allowed = load_allow_list(keys_dir)
        self.extra: dict[bytes, str] = {}  # in-process peers (the console's monitor key)
        self._scanned_at = time.monotonic()
        self.configure_curve_callback(ZAP_DOMAIN, self)

    def admit(self, public_z85: bytes, user_id: str) -> None:
        self.extra[public_z85] = user_id

    def callback(self, domain: str, key: bytes) -> bool:
        if key in self.extra or key in self.allowed:
            return True
        if time.monotonic() - self._scanned_at >= RESCAN_INTERVAL_S:  # a key added since
            self.allowed = load_allow_list(self.keys_dir)
            self._scanned_at = time.monotonic()
            if key in self.allowed:
                return True
        self._refusals.refuse("zmq", "unknown_key", key=key.decode(errors="replace")[:40])
        return False

    def curve_user_id(self, client_public_key: bytes) -> str:
        key = z85.encode(client_public_key)
        return self.extra.get(key) or self.allowed.get(key) or "unknown"


def make_server(socket: zmq.Socket[Any], keys: CurveKeys) -> None:
    """Make `socket` a CURVE server under the ZAP domain (before bind)."""
    socket.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
    socket.curve_secretkey = keys.secret
    socket.curve_publickey = keys.public
    socket.curve_server = True


def make_client(socket: zmq.Socket[Any], public: bytes, secret: bytes, server_public: bytes) -> None:
    """Make `socket` a CURVE client of the daemon (before connect)."""
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_serverkey = server_public


def mapped_subscription(user: str, topic: bytes) -> bytes:
    """The topic a subscription is installed under, given who sent it."""
    if user.startswith("monitor:"):
        return MONITOR_PREFIX + topic
    return client_topic(user, topic)


def user_of(frame: zmq.Frame) -> str:
    try:
        return str(frame.get("User-Id"))
    except zmq.ZMQError:
        return ""
