"""Bounded JSON and metadata limits shared by every ingress (daemon/wire/limits.py)."""

from __future__ import annotations

import json

import pytest

from daemon.ingest.webrtc import WhipRequestError, stream_request
from daemon.wire.frames import AudioFormat
from daemon.wire.limits import (
    MAX_JSON_DEPTH,
    MAX_METADATA_BYTES,
    MAX_STREAM_ID_CHARS,
    JsonRejected,
    json_depth_exceeds,
    loads_bounded,
    metadata_problem,
)
from daemon.wire.zmq_messages import OpenMessage, ProtocolError, parse_request


def test_plain_json_parses_as_json_loads_does() -> None:
    text = '{"a": [1, 2.5, -3, {"b": "[[[{{{"}], "c": null, "d": true, "e": "\\"]]]"}'
    assert loads_bounded(text, max_bytes=1000) == json.loads(text)
    assert loads_bounded(text.encode(), max_bytes=1000) == json.loads(text)


def test_depth_counts_only_brackets_outside_strings() -> None:
    nested = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert loads_bounded(nested, max_bytes=1000) is not None
    assert not json_depth_exceeds(b'["' + b"[" * 500 + b'"]', MAX_JSON_DEPTH)
    assert not json_depth_exceeds(b"[" + b"[]," * 200 + b"[]]", MAX_JSON_DEPTH)  # wide, not deep
    assert json_depth_exceeds(b"[" * (MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH)
    assert json_depth_exceeds(b'{"a":"\\"",' + b'"b":[' * 40, MAX_JSON_DEPTH)


@pytest.mark.parametrize("text, reason", [
    ("[" * 1000 + "]" * 1000, "too_deep"),
    ("[" * 100_000, "too_deep"),
    ("1" * 5000, "bad_number"),
    ("-" + "1" * 33, "bad_number"),
    ("[NaN]", "bad_number"),
    ('{"x": Infinity}', "bad_number"),
    ("[-Infinity]", "bad_number"),
    ("1e400", "bad_number"),
    ("[1", "bad_json"),
    ("", "bad_json"),
    ('"' + "x" * 200_001 + '"', "too_large"),
])
def test_hostile_json_is_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(JsonRejected) as info:
        loads_bounded(text, max_bytes=200_000)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError) and info.value.message


def test_invalid_utf8_is_bad_json() -> None:
    with pytest.raises(JsonRejected) as info:
        loads_bounded(b'"\xff\xfe"', max_bytes=100)
    assert info.value.reason == "bad_json"


@pytest.mark.parametrize("metadata, needle", [
    ({"k" * 20000: "v"}, "key of 20000"),
    ({"": "v"}, "key of 0"),
    ({"k": "v" * 513}, "value of 513"),
    ({f"k{i}": "" for i in range(33)}, "33 entries"),
    ({f"k{i}": "v" * 500 for i in range(9)}, "bytes"),
    ({"k": 1}, "strings"),
])
def test_metadata_limits_say_what_is_wrong(metadata: dict[str, object], needle: str) -> None:
    problem = metadata_problem(metadata)
    assert problem is not None and needle in problem


def test_metadata_within_limits_passes() -> None:
    assert metadata_problem({}) is None
    assert metadata_problem({"call_id": "c" * 512, "k" * 64: "v"}) is None
    assert metadata_problem({f"k{i:02d}": "v" * 120 for i in range(32)}) is None
    assert sum(3 + 120 for _ in range(32)) <= MAX_METADATA_BYTES


def test_one_stream_id_limit_on_every_transport() -> None:
    longest, too_long = "s" * MAX_STREAM_ID_CHARS, "s" * (MAX_STREAM_ID_CHARS + 1)
    mulaw = AudioFormat("mulaw", 8000, 1)
    assert parse_request(OpenMessage(longest, mulaw).to_frames()).stream_id == longest
    with pytest.raises(ProtocolError, match=f"1..{MAX_STREAM_ID_CHARS}"):
        parse_request(OpenMessage(too_long, mulaw).to_frames())
    assert stream_request({"stream_id": longest})[0] == longest
    with pytest.raises(WhipRequestError, match=f"1..{MAX_STREAM_ID_CHARS}"):
        stream_request({"stream_id": too_long})
