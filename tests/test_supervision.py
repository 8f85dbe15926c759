"""The daemon's long-running loops are supervised (daemon/supervise.py): the batcher and the console's
relay, killed on purpose here, are logged (`task_died`, `task_restarted`), counted
(`spoofwatch_task_restarts_total{task}`) and restarted, and the daemon keeps serving. The ZeroMQ
receive loop's supervision is tested in test_ingest_zmq_hostile.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import zmq
import zmq.asyncio
from daemon_harness import Client, Subscriber, is_event, running_daemon, wait_subscribed
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from clients.commands.keys import generate_keys
from daemon.app import Daemon
from daemon.batcher import Batcher
from daemon.console import WebConsole
from daemon.supervise import Supervisor
from daemon.wire.frames import AudioFormat
from daemon.wire.zmq_messages import AudioMessage, OpenedReply, OpenMessage

F16 = AudioFormat("pcm_f32le", 16000, 1)


@pytest.fixture
def context() -> Any:
    ctx = zmq.asyncio.Context()
    yield ctx
    ctx.destroy(linger=0)


def one_hop(stream_id: str, seq: int = 0) -> list[bytes]:
    t = np.arange(1600) / 16000
    return AudioMessage(stream_id, seq, (0.3 * np.sin(2 * np.pi * 220 * t)).astype("<f4").tobytes()).to_frames()


async def restarts_metric(daemon: Daemon) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, \
            session.get(f"{daemon.state.endpoints['http']}/metrics") as response:
        text = await response.text()
    return {s.labels["task"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "spoofwatch_task_restarts_total"}


async def scored(client: Client, subscriber: Subscriber, stream_id: str) -> dict[str, Any]:
    assert isinstance(await client.request(OpenMessage(stream_id, F16).to_frames()), OpenedReply)
    await client.send(one_hop(stream_id))
    return await subscriber.until(is_event(stream_id, "result"))


async def test_supervisor_restarts_a_loop_that_raises_and_never_catches_cancellation() -> None:
    runs = 0

    async def dies_twice() -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise RuntimeError(f"death {runs}")
        await asyncio.Event().wait()

    supervisor = Supervisor("test-loop", dies_twice, initial_delay_s=0.01)
    with capture_logs() as logs:
        task = asyncio.create_task(supervisor.run())
        async with asyncio.timeout(5):
            while runs < 3:
                await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert supervisor.restarts == 2
    assert [(e["event"], e["task"]) for e in logs if e["event"].startswith("task_")] == [
        ("task_died", "test-loop"), ("task_restarted", "test-loop")] * 2
    assert [e["restarts"] for e in logs if e["event"] == "task_restarted"] == [1, 2]


async def test_a_dead_batcher_is_restarted_and_fails_only_the_batch_it_held(
        tiny_model: tuple[Path, Path], context: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_daemon(tiny_model[0]) as daemon:
        batcher = daemon.batcher
        assert isinstance(batcher, Batcher)
        client = Client(context, daemon.state.endpoints["ingest"])
        subscriber = Subscriber(context, daemon.state.endpoints["pub"])
        await wait_subscribed(client, subscriber, F16)
        await scored(client, subscriber, "before")
        original = batcher._run
        kills = 0

        async def dying_run(batch: Any) -> None:
            nonlocal kills
            if kills == 0:  # the loop dies with a batch taken, outside any one hop's scoring
                kills += 1
                raise RuntimeError("injected batcher failure")
            await original(batch)

        monkeypatch.setattr(batcher, "_run", dying_run)
        with capture_logs() as logs:
            assert isinstance(await client.request(OpenMessage("victim", F16).to_frames()), OpenedReply)
            await client.send(one_hop("victim"))
            closed = await subscriber.until(is_event("victim", "closed"))
            assert closed["reason"] == "error"
            # the restarted batcher scores new streams
            result = await scored(client, subscriber, "after")
        assert result["seq"] == 0 and kills == 1
        assert daemon.task_restarts()["batcher"] == 1
        assert (await restarts_metric(daemon))["batcher"] == 1
        events = [(e["event"], e.get("task")) for e in logs]
        assert ("task_died", "batcher") in events and ("task_restarted", "batcher") in events
        assert next(e for e in logs if e["event"] == "batch_abandoned")["size"] == 1
        errors = subscriber.of("victim", "error")
        assert errors and "batcher failed" in errors[0]["message"]
        client.close()
        subscriber.close()


async def test_a_batcher_that_dies_before_taking_a_batch_loses_no_hop(
        tiny_model: tuple[Path, Path], context: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_daemon(tiny_model[0]) as daemon:
        batcher = daemon.batcher
        assert isinstance(batcher, Batcher)
        client = Client(context, daemon.state.endpoints["ingest"])
        subscriber = Subscriber(context, daemon.state.endpoints["pub"])
        await wait_subscribed(client, subscriber, F16)
        original = batcher._take_batch
        kills = 0

        def dying_take() -> Any:
            nonlocal kills
            if kills == 0:
                kills += 1
                raise RuntimeError("injected batcher failure")
            return original()

        monkeypatch.setattr(batcher, "_take_batch", dying_take)
        result = await scored(client, subscriber, "queued")  # still queued at the restart: scored after it
        assert result["seq"] == 0 and kills == 1 and daemon.task_restarts()["batcher"] == 1
        assert not subscriber.of("queued", "closed")
        client.close()
        subscriber.close()


async def test_a_dead_console_relay_is_restarted_and_browsers_get_later_events(
        tiny_model: tuple[Path, Path], context: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_daemon(tiny_model[0]) as daemon:
        console = next(adapter for adapter in daemon.adapters if isinstance(adapter, WebConsole))
        client = Client(context, daemon.state.endpoints["ingest"])
        original = console.state.apply
        kills = 0

        def dying_apply(message: Any) -> None:
            nonlocal kills
            if kills == 0:
                kills += 1
                raise RuntimeError("injected relay failure")
            original(message)

        monkeypatch.setattr(console.state, "apply", dying_apply)
        base = daemon.state.endpoints["http"]
        with capture_logs() as logs:
            async with aiohttp.ClientSession() as session, session.get(f"{base}/console/events") as events:
                seen: list[dict[str, Any]] = []

                async def read() -> None:
                    async for line in events.content:
                        if line.startswith(b"data: "):
                            seen.append(json.loads(line[6:]))

                reader = asyncio.create_task(read())
                n = 0
                async with asyncio.timeout(10):  # PUB/SUB joins late: open streams until one shows
                    while not any(m.get("type") == "opened" for m in seen):
                        assert isinstance(await client.request(OpenMessage(f"c{n}", F16).to_frames()),
                                          OpenedReply)
                        n += 1
                        await asyncio.sleep(0.1)
                reader.cancel()
        assert kills == 1 and console.relay_restarts == 1
        assert daemon.task_restarts()["console-relay"] == 1
        assert (await restarts_metric(daemon))["console-relay"] == 1
        assert ("task_restarted", "console-relay") in [(e["event"], e.get("task")) for e in logs]
        client.close()


@pytest.mark.parametrize("auth", ["off", "on"])
async def test_a_healthy_daemon_restarts_nothing(tiny_model: tuple[Path, Path], tmp_path: Path, auth: str) -> None:
    """Every supervised loop keeps running: none returns at once (a supervisor would restart it)."""
    sections: dict[str, Any] = {"memory": {"trim_interval_s": 0.1}}
    if auth == "on":  # CURVE: the results socket's subscription loop runs too
        generate_keys("server", tmp_path / "zmq")
        tokens = tmp_path / "tokens.txt"
        tokens.write_text(f"ops monitor {'m' * 40}\n")
        sections["auth"] = {"mode": "on", "zmq_keys_dir": str(tmp_path / "zmq"), "tokens_file": str(tokens)}
    async with running_daemon(tiny_model[0], **sections) as daemon:
        await asyncio.sleep(0.5)
        restarts = daemon.task_restarts()
        assert {"batcher", "idle-reaper", "loop-lag-watchdog", "inference-stall-check", "pub-connections",
                "zmq-ingest"} <= set(restarts)
        assert ("pub-subscriptions" in restarts) == (auth == "on")
        assert all(count == 0 for count in restarts.values()), restarts
