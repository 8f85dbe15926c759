"""Which daemon replica a stream goes to: consistent hashing of the stream id.

    replicas = ReplicaSet([Replica("tcp://d1:5555", "tcp://d1:5556"), Replica("tcp://d2:5555", "tcp://d2:5556")])
    stream = await replicas.open_stream("call-1", encoding="mulaw", sample_rate_hz=8000)

Every replica owns `VNODES` points on a ring of 64-bit hashes (BLAKE2b of `<replica>#<n>`, never
Python's salted `hash()`, so every client process and every language computes the same ring); a
stream id belongs to the first point at or after its own hash. Adding or removing one of N
replicas moves only the ids whose point changes owner, about 1/N of them, and every client that
knows the same replica list sends a stream id to the same replica with no coordination.

A replica's state (its streams, each stream's model state) is its own, so a stream lives on one
replica from open to close; placement matters only at open. When a replica is lost, its streams end
(the client's reconnect reopens each under a new id, which the ring places on a live replica once
the caller removes the dead one). Telephony transports (AudioSocket, Twilio, audio fork) are one
connection per call, so a plain TCP or HTTP load balancer places them; this ring is for the
ZeroMQ protocol, where one client connection carries many streams.
"""

from __future__ import annotations

import bisect
import hashlib
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Self

VNODES = 160  # points per replica: each of 2-10 replicas gets within about ±12 % of an equal share


def ring_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")


class HashRing:
    """Consistent hashing of keys onto named nodes."""

    def __init__(self, nodes: Iterable[str], vnodes: int = VNODES) -> None:
        if vnodes < 1:
            raise ValueError(f"vnodes must be >= 1, got {vnodes}")
        self.vnodes = vnodes
        self._points: list[tuple[int, str]] = []
        self.nodes: list[str] = []
        for node in nodes:
            self.add(node)

    def add(self, node: str) -> None:
        if node in self.nodes:
            raise ValueError(f"node {node!r} is already on the ring")
        self.nodes.append(node)
        for i in range(self.vnodes):
            bisect.insort(self._points, (ring_hash(f"{node}#{i}"), node))

    def remove(self, node: str) -> None:
        if node not in self.nodes:
            raise KeyError(node)
        self.nodes.remove(node)
        self._points = [point for point in self._points if point[1] != node]

    def node_for(self, key: str) -> str:
        if not self._points:
            raise LookupError("the ring has no nodes")
        index = bisect.bisect_left(self._points, (ring_hash(key), ""))
        return self._points[index % len(self._points)][1]


@dataclass(frozen=True)
class Replica:
    """One daemon: its ingest (ROUTER) and results (PUB) endpoints."""

    ingest: str
    results: str


def replicas_from_dns(host: str, ingest_port: int = 5555, results_port: int = 5556) -> list[Replica]:
    """One replica per address `host` resolves to, sorted: a Kubernetes headless Service answers with
    the address of every ready daemon pod (deploy/k8s). Resolve again, and rebuild the ring, when
    the set changes: ids move only to or from the replicas that came or went."""
    infos = socket.getaddrinfo(host, ingest_port, type=socket.SOCK_STREAM)
    addresses = sorted({str(info[4][0]) for info in infos})
    hosts = [f"[{address}]" if ":" in address else address for address in addresses]
    return [Replica(f"tcp://{h}:{ingest_port}", f"tcp://{h}:{results_port}") for h in hosts]


class ReplicaSet:
    """One `AsyncDetectorClient` per daemon replica, streams placed by `HashRing` on the ingest endpoint."""

    def __init__(self, replicas: Sequence[Replica], **client_options: Any) -> None:
        if not replicas:
            raise ValueError("name at least one replica")
        self.replicas = {replica.ingest: replica for replica in replicas}
        self.ring = HashRing(self.replicas)
        self._client_options = client_options
        self._clients: dict[str, Any] = {}

    def replica_for(self, stream_id: str) -> Replica:
        return self.replicas[self.ring.node_for(stream_id)]

    def client_for(self, stream_id: str) -> Any:
        """The `AsyncDetectorClient` of the replica that owns `stream_id` (made on first use)."""
        from clients.client import AsyncDetectorClient

        replica = self.replica_for(stream_id)
        if replica.ingest not in self._clients:
            self._clients[replica.ingest] = AsyncDetectorClient(replica.ingest, replica.results, **self._client_options)
        return self._clients[replica.ingest]

    async def open_stream(self, stream_id: str, **options: Any) -> Any:
        """`AsyncDetectorClient.open_stream` on the owning replica."""
        return await self.client_for(stream_id).open_stream(stream_id, **options)

    def remove(self, ingest: str) -> None:
        """Take a lost replica off the ring: its ids move to the others, no other id moves."""
        self.ring.remove(ingest)
        self.replicas.pop(ingest)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close(linger_ms=0)
        self._clients.clear()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
