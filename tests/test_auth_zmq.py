"""ZeroMQ CURVE (issue 22): an allow-list of client keys through pyzmq's asyncio ZAP authenticator,
`spoofwatch keys generate` / `keys add`, and results isolation: a client reads only its own
streams, a monitor reads every stream."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from daemon_harness import running_daemon

from clients.client import AsyncDetectorClient, CurveCredentials, ResultSubscription
from clients.commands.keys import add_key, generate_keys
from daemon.app import Daemon
from daemon.config import build_config
from daemon.console import WebConsole
from daemon.errors import ConfigError

RATE = 16000


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """server, clients alice and bob, monitor ops; mallory has keys but is not on the list."""
    daemon_dir, people = tmp_path / "daemon", tmp_path / "people"
    generate_keys("server", daemon_dir)
    for name in ("alice", "bob", "ops", "mallory"):
        generate_keys(name, people)
    add_key(people / "alice.key", daemon_dir, "client", None)
    add_key(people / "bob.key", daemon_dir, "client", None)
    add_key(people / "ops.key", daemon_dir, "monitor", None)
    return tmp_path


def creds(keys: Path, name: str) -> CurveCredentials:
    return CurveCredentials.from_files(keys / "people" / f"{name}.key_secret", keys / "daemon" / "server.key")


@pytest.fixture
async def daemon(tiny_model: tuple[Path, Path], keys: Path) -> AsyncIterator[Daemon]:
    tokens = keys / "tokens.txt"
    tokens.write_text(f"ops monitor {'m' * 40}\n")
    async with running_daemon(tiny_model[0], auth={"mode": "on", "zmq_keys_dir": str(keys / "daemon"),
                                                   "tokens_file": str(tokens)}) as running:
        yield running


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


async def drain(subscription: ResultSubscription, seconds: float) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(seconds):
            async for message in subscription:
                messages.append(message)
    except TimeoutError:
        pass
    return messages


def test_zmq_off_loopback_needs_keys() -> None:
    with pytest.raises(ConfigError, match="auth.zmq_keys_dir"):
        build_config({"zmq": {"ingest_endpoint": "tcp://0.0.0.0:5555"}})
    assert not build_config({}).zmq_auth_required
    assert build_config({"zmq": {"pub_endpoint": "tcp://*:5556"}, "auth": {"zmq_keys_dir": "/k"}}).zmq_auth_required


async def test_clients_read_only_their_own_streams_and_monitors_read_all(daemon: Daemon, keys: Path) -> None:
    ingest, results = daemon.state.endpoints["ingest"], daemon.state.endpoints["pub"]
    async with AsyncDetectorClient(ingest, results, curve=creds(keys, "alice")) as alice, \
            AsyncDetectorClient(ingest, results, curve=creds(keys, "bob")) as bob, \
            AsyncDetectorClient(ingest, results, curve=creds(keys, "ops")) as ops:
        seen = {name: client.subscribe(timeout_s=None) for name, client in  # each subscribes to everything
                (("alice", alice), ("bob", bob), ("ops", ops))}
        await asyncio.sleep(0.5)
        streams = {"alice": await alice.open_stream("a-1", encoding="pcm_f32le", sample_rate_hz=RATE),
                   "bob": await bob.open_stream("b-1", encoding="pcm_f32le", sample_rate_hz=RATE)}
        for stream in streams.values():
            await stream.send(tone(0.5))
            await stream.close()
        got = {name: await drain(sub, 1.5) for name, sub in seen.items()}
    ids = {name: {m["stream_id"] for m in messages} for name, messages in got.items()}
    assert ids["alice"] == {"a-1"} and ids["bob"] == {"b-1"}
    assert ids["ops"] == {"a-1", "b-1"}
    for name in ("alice", "bob"):
        kinds = [m["type"] for m in got[name]]
        assert kinds[0] == "opened" and kinds[-1] == "closed" and kinds.count("result") == 5
    console = next(a for a in daemon.adapters if isinstance(a, WebConsole))
    assert console.events_relayed >= 12  # the in-process console holds its own monitor key


async def test_unknown_and_missing_keys_are_refused(daemon: Daemon, keys: Path) -> None:
    ingest, results = daemon.state.endpoints["ingest"], daemon.state.endpoints["pub"]
    before = daemon.refusals.count("zmq", "unknown_key")
    async with AsyncDetectorClient(ingest, results, timeout_s=0.5, curve=creds(keys, "mallory")) as mallory:
        with pytest.raises(TimeoutError):
            await mallory.ping()
    assert daemon.refusals.count("zmq", "unknown_key") > before
    async with AsyncDetectorClient(ingest, results, timeout_s=0.5) as plain:  # no CURVE at all
        with pytest.raises(TimeoutError):
            await plain.ping()
    # allowed while the daemon runs: picked up on the key's next connection
    add_key(keys / "people" / "mallory.key", keys / "daemon", "client", None)
    await asyncio.sleep(1.1)  # the allow-list is rescanned at most once a second
    async with AsyncDetectorClient(ingest, results, timeout_s=3, curve=creds(keys, "mallory")) as mallory:
        assert await mallory.ping() < 3


def test_keys_cli_generate_and_add(tmp_path: Path) -> None:
    def keys(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "clients.cli", "keys", *args], check=False,
                              capture_output=True, text=True)

    assert keys("generate", "server", "--dir", str(tmp_path / "d")).returncode == 0
    assert keys("generate", "carol", "--dir", str(tmp_path / "p")).returncode == 0
    assert (tmp_path / "p" / "carol.key_secret").stat().st_mode & 0o777 == 0o600
    refused_secret = keys("add", str(tmp_path / "p" / "carol.key_secret"), "--dir", str(tmp_path / "d"))
    assert refused_secret.returncode == 1 and "secret" in refused_secret.stderr
    added = keys("add", str(tmp_path / "p" / "carol.key"), "--dir", str(tmp_path / "d"), "--role", "monitor")
    assert added.returncode == 0, added.stderr
    assert (tmp_path / "d" / "monitors" / "carol.key").read_bytes() == (tmp_path / "p" / "carol.key").read_bytes()
    twice = keys("add", str(tmp_path / "p" / "carol.key"), "--dir", str(tmp_path / "d"))
    assert twice.returncode == 1 and "already allowed as monitor" in twice.stderr
