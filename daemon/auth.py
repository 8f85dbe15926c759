"""Who may talk to the daemon: bearer tokens on HTTP, HMAC signatures on webhooks.

Authentication is on by default for every listener that is not on loopback (`auth.mode =
"auto"`); `"on"` forces it on loopback too, `"off"` turns it off (a trusted network, or a
reverse proxy that authenticates; docs/security.md).

Tokens live in a file (`auth.tokens_file`), one per line: `NAME ROLE TOKEN`, where ROLE is
`client` (may send audio and read what its own requests return) or `monitor` (may also read
every stream's results: the web console and its event stream). Blank lines and `#` comments are
ignored. A token is at least 32 characters; `spoofwatch keys token` makes one.

HTTP requests carry the token as `Authorization: Bearer TOKEN`, or as `?token=TOKEN` where a
gateway cannot set headers (Twilio `<Stream url>`, mod_audio_fork), or as the `spoofwatch_token`
cookie the console sets after a first `/console/?token=TOKEN`. `/metrics`, `/healthz` and
`/readyz` need none. A missing or unknown token is a 401, a client token on a monitor path a 403,
each counted as a refused input.

Webhooks: with `auth.webhook_secret` set every POST carries `X-Spoofwatch-Timestamp` (Unix
seconds) and `X-Spoofwatch-Signature: sha256=HEX`, the HMAC-SHA256 of `TIMESTAMP.BODY` under the
secret; `verify_webhook()` is the receiver's check.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import web

from daemon.errors import ConfigError
from daemon.refusals import Refusals

log = structlog.get_logger(__name__)

ROLES = ("client", "monitor")


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    @property
    def is_monitor(self) -> bool:
        return self.role == "monitor"

MIN_TOKEN_CHARS = 32
TOKEN_COOKIE = "spoofwatch_token"
TOKEN_QUERY = "token"
PUBLIC_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})
MONITOR_PREFIXES = ("/console",)
SIGNATURE_HEADER = "X-Spoofwatch-Signature"
TIMESTAMP_HEADER = "X-Spoofwatch-Timestamp"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PRINCIPAL = web.RequestKey("principal", Principal)  # who made an authenticated request


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost` are loopback; anything else (0.0.0.0, a name) is not."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_endpoint(endpoint: str) -> bool:
    """A ZeroMQ endpoint: ipc:// and inproc:// stay on the machine; tcp://HOST:PORT by its host."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    host = rest.rsplit(":", 1)[0]
    return is_loopback_host(host)


def new_token() -> str:
    return secrets.token_urlsafe(32)




class TokenStore:
    """The accepted tokens. Only SHA-256 digests are kept, compared in constant time."""

    def __init__(self, entries: Iterable[tuple[str, str, str]]) -> None:
        self._entries: list[tuple[bytes, Principal]] = []
        for name, role, token in entries:
            if role not in ROLES:
                raise ConfigError("auth.tokens_file", f"role of {name!r} must be one of {', '.join(ROLES)}")
            if len(token) < MIN_TOKEN_CHARS:
                raise ConfigError("auth.tokens_file", f"the token of {name!r} is shorter than {MIN_TOKEN_CHARS} "
                                  "characters (make one with `spoofwatch keys token`)")
            self._entries.append((hashlib.sha256(token.encode()).digest(), Principal(name, role)))

    @classmethod
    def from_file(cls, path: Path) -> TokenStore:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError("auth.tokens_file", f"cannot read {path}: {exc}") from None
        entries = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 3:
                raise ConfigError("auth.tokens_file", f"{path}:{number}: expected `NAME ROLE TOKEN`")
            entries.append((parts[0], parts[1], parts[2]))
        return cls(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for known, principal in self._entries:  # every entry compared: no early exit to time
            if hmac.compare_digest(digest, known):
                found = principal
        return found


def request_token(request: web.Request) -> tuple[str | None, str]:
    """The token a request carries, and where it was: header, query or cookie."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip(), "header"
    if TOKEN_QUERY in request.query:
        return request.query[TOKEN_QUERY], "query"
    if TOKEN_COOKIE in request.cookies:
        return request.cookies[TOKEN_COOKIE], "cookie"
    return None, ""


def required_role(path: str) -> str | None:
    """None: no token needed; `client`: any token; `monitor`: a monitor token."""
    if path in PUBLIC_PATHS:
        return None
    if path == "/" or path.startswith(MONITOR_PREFIXES):
        return "monitor"
    return "client"


def http_middleware(store: TokenStore, refusals: Refusals
                    ) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """aiohttp middleware enforcing `required_role` on every request; each 401/403 is counted in `refusals`."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        needed = required_role(request.path)
        if needed is None:
            return await handler(request)
        token, source = request_token(request)
        principal = store.lookup(token) if token else None
        if principal is None:
            reason = "unauthorized" if token else "no_token"
            refusals.refuse("http", reason, path=request.path[:100], peer=request.remote)
            return web.Response(status=401, text="a valid token is required (docs/security.md)\n",
                                headers={"WWW-Authenticate": 'Bearer realm="spoofwatch"'})
        if needed == "monitor" and not principal.is_monitor:
            refusals.refuse("http", "forbidden", path=request.path[:100], peer=request.remote, client=principal.name)
            return web.Response(status=403, text="this needs a monitor token\n")
        request[PRINCIPAL] = principal
        response = await handler(request)
        if source == "query" and needed == "monitor" and token is not None and not response.prepared:
            # a browser opened /console/?token=...: later requests of the page (its event stream,
            # its WHIP calls) carry the cookie; SameSite=Strict keeps other sites from using it
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", path="/",
                                secure=request.secure)
        return response

    return authenticate


def sign_webhook(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The signature headers of one webhook POST."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: f"sha256={mac}"}


def verify_webhook(secret: str, body: bytes, timestamp: str, signature: str, *, tolerance_s: float = 300,
                   now: float | None = None) -> bool:
    """A receiver's check: the signature matches and the timestamp is within `tolerance_s` (replays)."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    expected = sign_webhook(secret, body, ts)[SIGNATURE_HEADER]
    return hmac.compare_digest(expected, signature)
