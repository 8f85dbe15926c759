"""Admission (daemon/admission.py) is the one place that decides whether a new stream may open."""

from __future__ import annotations

import pytest

from daemon.admission import Admission
from daemon.stream_api import StreamRejected, StreamSpec
from daemon.streams import StreamRegistry


def refusal(admission: Admission, spec: StreamSpec) -> tuple[str, str]:
    with pytest.raises(StreamRejected) as info:
        admission.check(spec)
    return info.value.code, info.value.message


def test_each_refusal_has_its_code_and_message() -> None:
    registry: StreamRegistry[object] = StreamRegistry()
    admission = Admission(registry, max_streams=1)
    admission.check(StreamSpec("a", 8000, "test"))  # admitted: nothing raised, nothing added
    assert len(registry) == 0 and not admission.at_capacity
    registry.add("a", object())
    assert admission.at_capacity
    assert refusal(admission, StreamSpec("a", 8000, "test")) == ("stream_exists", "stream 'a' is already open")
    assert refusal(admission, StreamSpec("b", 8000, "test")) == (
        "too_many_streams", "the daemon already has 1 open streams")
    assert refusal(admission, StreamSpec("c", 4000, "test")) == (
        "bad_field", "sample rate must be 8000..48000 Hz, got 4000")
    code, message = refusal(admission, StreamSpec("d", 8000, "test", {"k": "v" * 513}))
    assert code == "bad_field" and "metadata" in message
    admission.stop_accepting()
    assert not admission.accepting
    assert refusal(admission, StreamSpec("e", 8000, "test")) == (
        "server_shutting_down", "the daemon is shutting down")


def test_the_first_problem_in_order_is_the_one_reported() -> None:
    registry: StreamRegistry[object] = StreamRegistry()
    admission = Admission(registry, max_streams=1)
    registry.add("a", object())
    # a duplicate id on a full daemon is a duplicate; a bad rate or metadata comes before either
    assert refusal(admission, StreamSpec("a", 8000, "test"))[0] == "stream_exists"
    assert refusal(admission, StreamSpec("a", 96000, "test"))[0] == "bad_field"
    assert refusal(admission, StreamSpec("a", 8000, "test", {"k" * 100: "v"}))[0] == "bad_field"
    admission.stop_accepting()
    assert refusal(admission, StreamSpec("a", 96000, "test"))[0] == "server_shutting_down"


def test_a_closed_stream_frees_its_id_and_its_place() -> None:
    registry: StreamRegistry[object] = StreamRegistry()
    admission = Admission(registry, max_streams=1)
    stream = object()
    registry.add("a", stream)
    registry.remove("a", stream)
    admission.check(StreamSpec("a", 8000, "test"))
