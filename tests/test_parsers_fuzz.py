"""Property-based fuzzing of every parser that reads peer input (issue 22): whatever arrives, each
parser either returns a well-formed value or raises its own refusal type, never anything else.
Bounded: a fixed number of examples per property, no example database, seconds in all."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.ingest.audiofork import parse_rate
from daemon.ingest.audiosocket import AudioSocketProtocolError, read_message
from daemon.ingest.twilio import MAX_CHUNK_NUMBER, TwilioConnection
from daemon.ingest.webrtc import WhipRequestError, parse_offer, stream_request
from daemon.ingest.websockets import ProtocolViolation, json_object
from daemon.wire.frames import ENCODINGS, MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ, AudioFormat
from daemon.wire.limits import (
    MAX_JSON_DEPTH,
    MAX_METADATA_BYTES,
    MAX_METADATA_ENTRIES,
    JsonRejected,
    json_depth_exceeds,
    loads_bounded,
    metadata_problem,
)
from daemon.wire.pcm import PayloadError, decode_payload
from daemon.wire.zmq_messages import ProtocolError, parse_request

BOUNDED = settings(max_examples=150, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

scalars = st.none() | st.booleans() | st.integers(-(10**30), 10**30) \
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=30)
# text that looks like JSON: brackets, quotes, escapes, numbers and keywords in any order
jsonish = st.lists(st.sampled_from(['[', ']', '{', '}', '"', '\\', ',', ':', '1', '-', 'e400', '.5', 'NaN',
                                    'Infinity', 'true', 'null', '"v"', '"type"', '"open"', '"audio"', '9' * 40,
                                    ' ', 'x']), max_size=200).map("".join)
# the shapes that used to escape as RecursionError / ValueError / OverflowError
hostile = (st.tuples(st.integers(0, 3000), st.sampled_from([("[", "]"), ('{"a":', "}")]))
           .map(lambda n_pair: n_pair[1][0] * n_pair[0] + "1" + n_pair[1][1] * n_pair[0])
           | st.integers(4000, 6000).map(lambda n: "9" * n)
           | st.sampled_from(["1e400", "-1e400", "NaN", "Infinity", "-Infinity", '{"chunk":Infinity}']))


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


@BOUNDED
@given(json_values)
def test_bounded_json_round_trips_what_json_does(value: Any) -> None:
    text = json.dumps(value)
    if depth(value) <= MAX_JSON_DEPTH:
        assert loads_bounded(text, max_bytes=1 << 20) == json.loads(text)
    assert json_depth_exceeds(text.encode(), MAX_JSON_DEPTH) == (depth(value) > MAX_JSON_DEPTH)


@BOUNDED
@given(st.binary(max_size=300) | jsonish.map(str.encode) | hostile.map(str.encode))
def test_bounded_json_only_ever_raises_its_refusal(data: bytes) -> None:
    try:
        loads_bounded(data, max_bytes=100_000)
    except JsonRejected as exc:
        assert exc.reason in ("too_large", "too_deep", "bad_number", "bad_json")


@BOUNDED
@given(st.integers(0, 60))
def test_any_nesting_is_refused_or_parsed(levels: int) -> None:
    for opening, closing in (("[", "]"), ('{"a":', "}")):
        text = opening * levels + "1" + closing * levels
        if levels > MAX_JSON_DEPTH:
            try:
                loads_bounded(text, max_bytes=1 << 16)
            except JsonRejected as exc:
                assert exc.reason == "too_deep"
            else:
                raise AssertionError("too deep, yet parsed")
        else:
            assert depth(loads_bounded(text, max_bytes=1 << 16)) == levels


headers = st.fixed_dictionaries({}, optional={
    "v": st.sampled_from([1, 2, "1", None, 1.0]), "type": st.sampled_from(["open", "audio", "close", "ping", "x", 3]),
    "stream_id": st.text(max_size=140) | st.integers(), "seq": st.integers(-5, 2**70) | st.text(max_size=5),
    "encoding": st.sampled_from([*ENCODINGS, "opus", 7]), "sample_rate_hz": st.integers(0, 10**6) | st.floats(),
    "channels": st.integers(-1, 4) | st.booleans(), "metadata": json_values})


@BOUNDED
@given(st.lists(st.binary(max_size=200) | jsonish.map(str.encode) | hostile.map(str.encode)
                | headers.map(lambda h: json.dumps(h).encode()), max_size=3))
def test_zmq_requests_parse_or_get_a_reason_code(frames: list[bytes]) -> None:
    try:
        parse_request(frames)
    except ProtocolError as exc:
        assert exc.code and exc.message


@BOUNDED
@given(st.binary(max_size=700), st.sampled_from(ENCODINGS), st.sampled_from([8000, 16000, 48000]),
       st.sampled_from([1, 2]))
def test_zmq_payloads_decode_or_are_refused(payload: bytes, encoding: Any, rate: int, channels: int) -> None:
    try:
        samples = decode_payload(payload, AudioFormat(encoding, rate, channels))
    except PayloadError:
        return
    assert samples.dtype == np.float32 and np.isfinite(samples).all()


@BOUNDED
@given(jsonish | hostile | st.text(max_size=100) | json_values.map(json.dumps))
def test_websocket_text_is_an_object_or_a_protocol_close(text: str) -> None:
    try:
        assert isinstance(json_object(text), dict)
    except ProtocolViolation as exc:
        assert exc.code and exc.close_code in (1007, 1008)


@BOUNDED
@given(json_values | st.text(max_size=30) | st.floats() | st.sampled_from(["inf", "1e400", "-0", "9" * 25]))
def test_twilio_chunk_numbers_are_bounded(chunk: Any) -> None:
    try:
        number = TwilioConnection._chunk_number(chunk)
    except ProtocolViolation:
        return
    assert number is None or 0 <= number <= MAX_CHUNK_NUMBER


@BOUNDED
@given(json_values | st.text(max_size=30) | st.floats() | st.from_regex(r"\s*[-+]?[0-9.eEinfa]{0,10}[kK]?\s*", fullmatch=True))
def test_audiofork_rates_are_in_range_or_refused(value: Any) -> None:
    try:
        rate = parse_rate(value)
    except ProtocolViolation:
        return
    assert MIN_SAMPLE_RATE_HZ <= rate <= MAX_SAMPLE_RATE_HZ


@BOUNDED
@given(st.dictionaries(st.text(max_size=80), st.text(max_size=600), max_size=40))
def test_metadata_problem_is_the_whole_rule(metadata: dict[str, str]) -> None:
    problem = metadata_problem(metadata)
    within = (len(metadata) <= MAX_METADATA_ENTRIES and all(1 <= len(k) <= 64 and len(v) <= 512
                                                            for k, v in metadata.items())
              and sum(len(k.encode("utf-8", "surrogatepass")) + len(v.encode("utf-8", "surrogatepass"))
                      for k, v in metadata.items()) <= MAX_METADATA_BYTES)
    assert (problem is None) == within


@BOUNDED
@given(st.binary(max_size=400))
def test_audiosocket_frames_parse_or_are_refused(data: bytes) -> None:
    async def read_all() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        while (message := await read_message(reader)) is not None:
            assert 0 <= message.kind <= 0xFF and len(message.payload) <= 0xFFFF

    try:
        asyncio.run(read_all())
    except AudioSocketProtocolError:
        pass


SDP_LINES = ["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0", "m=audio 9 UDP/TLS/RTP/SAVPF 111",
             "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "m=video 9 UDP/TLS/RTP/SAVPF 96",
             "c=IN IP4 0.0.0.0", "a=mid:0", "a=sendonly", "a=recvonly", "a=rtpmap:111 opus/48000/2",
             "a=rtpmap:0 PCMU/8000", "a=ice-ufrag:abcd", "a=ice-pwd:0123456789abcdef01234567",
             "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:actpass", "a=rtcp-mux", "a=ssrc:1 cname:x",
             "a=candidate:1 1 UDP 1 127.0.0.1 9 typ host", "a=sctp-port:5000", "a=fmtp:111 minptime=10", "m=", "a=",
             "a=rtpmap:", "a=ssrc-group:FID", "a=extmap:1 x", "b=AS:30", "m=audio x y z", "a=msid:a b"]


@BOUNDED
@given(st.lists(st.sampled_from(SDP_LINES), max_size=25), st.integers(0, 2000))
def test_whip_offers_parse_or_are_a_4xx(lines: list[str], cut: int) -> None:
    text = "\r\n".join(["v=0", *lines]) + "\r\n"
    for body in (text, text[:cut]):
        try:
            parse_offer(body.encode())
        except WhipRequestError as exc:
            assert 400 <= exc.status < 500


@BOUNDED
@given(st.dictionaries(st.text(max_size=80), st.text(max_size=200), max_size=40))
def test_whip_query_is_a_stream_or_a_400(query: dict[str, str]) -> None:
    try:
        stream_id, metadata = stream_request(query)
    except WhipRequestError as exc:
        assert exc.status == 400
        return
    assert stream_id and metadata_problem(metadata) is None
