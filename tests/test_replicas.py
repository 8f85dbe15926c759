"""Daemon replicas: streams placed by consistent hashing (clients/placement.py), results of every
replica on one endpoint through the XSUB/XPUB proxy (clients/proxy.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
import zmq.asyncio
from daemon_harness import Subscriber, running_daemon

from clients.placement import HashRing, Replica, ReplicaSet, ring_hash
from clients.proxy import ResultsProxy

IDS = [f"call-{i}" for i in range(20000)]


def owners(ring: HashRing) -> dict[str, str]:
    return {stream_id: ring.node_for(stream_id) for stream_id in IDS}


def test_ring_hash_is_fixed_across_processes() -> None:
    # BLAKE2b, not Python's per-process salted hash(): every client computes the same ring
    assert ring_hash("call-1") == 0x08C8A4699CFA3AC1  # pinned: clients of every version must agree
    assert HashRing(["a", "b", "c"]).node_for("call-1") == HashRing(["c", "a", "b"]).node_for("call-1")


@pytest.mark.parametrize("replicas", [2, 3, 5, 10])
def test_each_replica_gets_about_an_equal_share(replicas: int) -> None:
    counts: dict[str, int] = {}
    for node in owners(HashRing([f"tcp://d{k}:5555" for k in range(replicas)])).values():
        counts[node] = counts.get(node, 0) + 1
    assert len(counts) == replicas
    shares = [count * replicas / len(IDS) for count in counts.values()]
    assert 0.85 <= min(shares) and max(shares) <= 1.15, shares


@pytest.mark.parametrize("replicas", [3, 4, 8])
def test_adding_a_replica_moves_about_one_nth_and_only_to_it(replicas: int) -> None:
    nodes = [f"tcp://d{k}:5555" for k in range(replicas)]
    before = owners(HashRing(nodes))
    ring = HashRing(nodes)
    ring.add("tcp://new:5555")
    after = owners(ring)
    moved = [i for i in IDS if before[i] != after[i]]
    assert all(after[i] == "tcp://new:5555" for i in moved)
    expected = 1 / (replicas + 1)
    assert 0.75 * expected <= len(moved) / len(IDS) <= 1.25 * expected


def test_removing_a_replica_moves_only_its_streams() -> None:
    nodes = [f"tcp://d{k}:5555" for k in range(4)]
    before = owners(HashRing(nodes))
    ring = HashRing(nodes)
    ring.remove("tcp://d2:5555")
    after = owners(ring)
    moved = {i for i in IDS if before[i] != after[i]}
    assert moved == {i for i in IDS if before[i] == "tcp://d2:5555"}
    assert "tcp://d2:5555" not in after.values()


def test_ring_refuses_duplicates_and_empty() -> None:
    ring = HashRing(["a"])
    with pytest.raises(ValueError):
        ring.add("a")
    ring.remove("a")
    with pytest.raises(LookupError):
        ring.node_for("x")


async def _until_seen(subscriber: Subscriber, wanted: set[tuple[str, str]], timeout: float = 10.0) -> None:
    seen: set[tuple[str, str]] = set()

    def done(message: dict[str, Any]) -> bool:
        seen.add((message["stream_id"], message["type"]))
        return wanted <= seen

    await subscriber.until(done, timeout)


async def test_streams_land_on_their_replica_and_all_results_reach_one_subscriber(
        tiny_model: tuple[Path, Path]) -> None:
    """Replica B's results endpoint is connected by the proxy (`--connect`); replica A connects its
    results socket to the proxy's XSUB (`zmq.pub_connect`): one subscriber on the XPUB sees both."""
    async with running_daemon(tiny_model[0]) as b:
        with ResultsProxy("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", [b.state.endpoints["pub"]]) as proxy:
            async with running_daemon(tiny_model[0], zmq={"pub_connect": [proxy.xsub_endpoint]}) as a:
                await _check_two_replicas(a, b, proxy)


async def _check_two_replicas(a: Any, b: Any, proxy: ResultsProxy) -> None:
    context = zmq.asyncio.Context()
    subscriber = Subscriber(context, proxy.xpub_endpoint)
    replicas = ReplicaSet([Replica(d.state.endpoints["ingest"], d.state.endpoints["pub"]) for d in (a, b)])
    by_daemon = {a.state.endpoints["ingest"]: a, b.state.endpoints["ingest"]: b}
    try:
        ids = [f"call-{i}" for i in range(12)]
        placed = {stream_id: replicas.replica_for(stream_id).ingest for stream_id in ids}
        assert set(placed.values()) == set(by_daemon)  # both replicas get some of the twelve
        await asyncio.sleep(0.5)  # the subscription travels subscriber -> XPUB -> XSUB -> each daemon's PUB
        streams = [await replicas.open_stream(stream_id, encoding="pcm_f32le", sample_rate_hz=16000)
                   for stream_id in ids]
        for stream_id, ingest in placed.items():
            assert stream_id in by_daemon[ingest].hub.registry
            assert all(stream_id not in d.hub.registry for i, d in by_daemon.items() if i != ingest)
        audio = (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32)
        for stream in streams:
            await stream.send(audio)
        for stream in streams:
            await stream.close()
        await _until_seen(subscriber, {(i, kind) for i in ids for kind in ("opened", "result", "closed")})
    finally:
        await replicas.close()
        subscriber.close()
        context.destroy(linger=0)


def test_pub_connect_is_refused_with_zmq_authentication(tmp_path: Path) -> None:
    from daemon.config import build_config
    from daemon.errors import ConfigError

    with pytest.raises(ConfigError, match="zmq.pub_connect"):
        build_config({"auth": {"mode": "on", "zmq_keys_dir": str(tmp_path), "tokens_file": str(tmp_path / "t")},
                      "zmq": {"pub_connect": ["tcp://proxy:5557"]}})


def test_proxy_command_needs_an_upstream() -> None:
    from clients.commands.proxy import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--xpub", "tcp://127.0.0.1:*"])
    assert exit_info.value.code == 2


async def test_a_draining_replica_finishes_its_streams_and_refuses_new_ones(tiny_model: tuple[Path, Path]) -> None:
    """shutdown.drain_wait_s: on SIGTERM a replica leaves the pool (/readyz 503, new streams refused)
    but its open streams go on being scored until they end themselves; then it stops."""
    import aiohttp
    from daemon_harness import Client, is_event, wait_subscribed

    from daemon.wire.frames import AudioFormat
    from daemon.wire.zmq_messages import (
        AudioMessage,
        CloseMessage,
        ErrorReply,
        OpenedReply,
        OpenMessage,
    )

    fmt = AudioFormat("pcm_f32le", 16000, 1)
    async with running_daemon(tiny_model[0], shutdown={"drain_wait_s": 30.0}) as daemon:
        context = zmq.asyncio.Context()
        client = Client(context, daemon.state.endpoints["ingest"])
        subscriber = Subscriber(context, daemon.state.endpoints["pub"])
        try:
            await wait_subscribed(client, subscriber, fmt)
            assert isinstance(await client.request(OpenMessage("call", fmt).to_frames()), OpenedReply)
            shutdown = asyncio.create_task(daemon.shutdown())
            await asyncio.sleep(0.1)
            async with aiohttp.ClientSession() as session, \
                    session.get(f"{daemon.state.endpoints['http']}/readyz") as response:
                assert response.status == 503 and '"not_draining": false' in await response.text()
            refused = await client.request(OpenMessage("new-call", fmt).to_frames())
            assert isinstance(refused, ErrorReply) and refused.code == "server_shutting_down"
            audio = np.zeros(8000, np.float32).tobytes()  # 0.5 s: five hops
            await client.send(AudioMessage("call", 0, audio).to_frames())
            await subscriber.until(lambda m: m["stream_id"] == "call" and m["type"] == "result" and m["seq"] >= 4)
            assert not shutdown.done()  # still waiting for the call to end
            await client.request(CloseMessage("call").to_frames())
            closed = await subscriber.until(is_event("call", "closed"))
            assert closed["reason"] == "client"  # ended by its client, not cut by the shutdown
            await asyncio.wait_for(shutdown, 10)
        finally:
            client.close()
            subscriber.close()
            context.destroy(linger=0)


def test_replicas_from_dns_lists_every_address() -> None:
    from clients.placement import replicas_from_dns

    replicas = replicas_from_dns("localhost", 6000, 6001)
    assert Replica("tcp://127.0.0.1:6000", "tcp://127.0.0.1:6001") in replicas
    assert replicas == sorted(replicas, key=lambda r: r.ingest) and len(set(replicas)) == len(replicas)
