"""Can the daemon bind its listeners? And if a port is taken, by whom (a running spoofwatch or not)?

The owner of a listening TCP port is found the way `ss -ltnp` does it, from /proc: the socket's
inode in /proc/net/tcp{,6}, then the process holding a descriptor to that inode. Processes of
other users are invisible without root; the report then says so and names the `ss` command.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from clients.doctor import Finding
from daemon.config import DaemonConfig

TCP_LISTEN = "0A"


@dataclass(frozen=True)
class Listener:
    name: str  # what it is, as the report says it
    setting: str  # the config key that moves it
    host: str
    port: int  # 0: any free port


@dataclass(frozen=True)
class PortOwner:
    pid: int
    command: str

    @property
    def is_spoofwatch(self) -> bool:
        return looks_like_spoofwatch(self.command.split("\0"))


def looks_like_spoofwatch(argv: list[str]) -> bool:
    """`spoofwatch serve ...` (the console script) or `python -m daemon ...` (what the demo runs)."""
    for i, arg in enumerate(argv[:3]):
        if os.path.basename(arg) == "spoofwatch" and argv[i + 1:i + 2] == ["serve"]:
            return True
        if arg == "-m" and argv[i + 1:i + 2] == ["daemon"]:
            return True
    return False


def tcp_endpoint(endpoint: str) -> tuple[str, int] | None:
    """`tcp://HOST:PORT` -> (host, port), port 0 for `*`; None for ipc:// and inproc://."""
    scheme, _, rest = endpoint.partition("://")
    if scheme != "tcp":
        return None
    host, _, port = rest.rpartition(":")
    return host.strip("[]"), 0 if port == "*" else int(port)


def listeners(config: DaemonConfig) -> list[Listener]:
    """Every TCP listener the config turns on."""
    found = []
    if config.zmq.enabled:
        for name, key in (("zmq ingest", "ingest_endpoint"), ("zmq results", "pub_endpoint")):
            endpoint = tcp_endpoint(getattr(config.zmq, key))
            if endpoint is not None:
                found.append(Listener(name, f"zmq.{key}", *endpoint))
    if config.http_enabled:
        found.append(Listener("http", "webrtc.port", config.webrtc.host, config.webrtc.port))
    if config.audiosocket.enabled:
        found.append(Listener("audiosocket", "audiosocket.port", config.audiosocket.host, config.audiosocket.port))
    return found


def try_bind(host: str, port: int) -> OSError | None:
    """Bind (as the daemon's listeners do: SO_REUSEADDR, so TIME_WAIT is no obstacle) and let go."""
    bind_host = "" if host in ("*", "0.0.0.0") else host
    try:
        infos = socket.getaddrinfo(bind_host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc
    return None


def listening_inodes(port: int, proc: Path = Path("/proc")) -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == TCP_LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def port_owners(port: int, proc: Path = Path("/proc")) -> list[PortOwner]:
    """The processes (that this user may see) holding a socket listening on `port`."""
    wanted = {f"socket:[{inode}]" for inode in listening_inodes(port, proc)}
    owners: list[PortOwner] = []
    if not wanted:
        return owners
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            held = any(os.readlink(fd) in wanted for fd in (pid_dir / "fd").iterdir())
            if held:
                command = (pid_dir / "cmdline").read_bytes().rstrip(b"\0").decode(errors="replace")
                owners.append(PortOwner(int(pid_dir.name), command))
        except OSError:  # gone, or another user's
            continue
    return owners


def check_ports(config: DaemonConfig,
                owners_of: Callable[[int], Iterable[PortOwner]] = port_owners) -> list[Finding]:
    findings = []
    for listener in listeners(config):
        where = f"{listener.name} {listener.host}:{listener.port}"
        if listener.port == 0:
            findings.append(Finding("port", "OK", f"{listener.name}: any free port (logged at start)"))
            continue
        error = try_bind(listener.host, listener.port)
        if error is None:
            findings.append(Finding("port", "OK", f"{where} is free"))
        elif isinstance(error, socket.gaierror):  # ZeroMQ also takes interface names (tcp://eth0:5555)
            findings.append(Finding("port", "WARN", f"{where}: {listener.host!r} does not resolve ({error})",
                                    f"check {listener.setting}: an address or name of this host"))
        elif error.errno == errno.EADDRINUSE:
            findings.append(_in_use(listener, where, list(owners_of(listener.port))))
        elif error.errno in (errno.EACCES, errno.EPERM):
            findings.append(Finding("port", "FAIL", f"{where}: not allowed to bind ({error.strerror})",
                                    f"use a port above 1023, or set {listener.setting}"))
        else:
            findings.append(Finding("port", "FAIL", f"{where}: cannot bind ({error})",
                                    f"use an address of this host in {listener.setting.split('.')[0]} settings"))
    if not findings:
        findings.append(Finding("port", "OK", "no TCP listener configured"))
    return findings


def _in_use(listener: Listener, where: str, owners: list[PortOwner]) -> Finding:
    ours = [o for o in owners if o.is_spoofwatch]
    if ours:
        return Finding("port", "WARN", f"{where} is held by a running spoofwatch (pid "
                       f"{', '.join(str(o.pid) for o in ours)}: {_short(ours[0].command)})",
                       "fine if that is this daemon; to start another, stop it first (systemctl stop "
                       f"spoofwatch) or set {listener.setting}")
    if owners:
        return Finding("port", "FAIL", f"{where} is held by another program (pid {owners[0].pid}: "
                       f"{_short(owners[0].command)})", f"stop it, or set {listener.setting} to a free port")
    return Finding("port", "FAIL", f"{where} is in use by a process this user cannot see",
                   f"find it with `ss -ltnp 'sport = :{listener.port}'` (as root); stop it or set {listener.setting}")


def _short(command: str, limit: int = 80) -> str:
    text = command.replace("\0", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."
