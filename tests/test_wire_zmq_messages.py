from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from daemon.wire import results
from daemon.wire.frames import AudioFormat
from daemon.wire.pcm import (
    PayloadError,
    decode_payload,
    decode_payloads,
    encode_samples,
    payload_frames,
)
from daemon.wire.zmq_messages import (
    _CANONICAL_AUDIO_HEADER,
    MAX_BATCH_ENTRIES,
    MAX_HEADER_BYTES,
    AudioBatchMessage,
    AudioMessage,
    ClosedReply,
    CloseMessage,
    ErrorReply,
    OpenedReply,
    OpenMessage,
    PingMessage,
    PongReply,
    ProtocolError,
    parse_reply,
    parse_request,
    parse_request_json,
)


def _frames(header: Any, *rest: bytes) -> list[bytes]:
    return [json.dumps(header).encode(), *rest]


def test_requests_round_trip() -> None:
    messages: list[OpenMessage | AudioMessage | CloseMessage | PingMessage] = [
        OpenMessage("call-42", AudioFormat("mulaw", 8000, 1), {"call_id": "x"}),
        AudioMessage("call-42", 7, b"\x00" * 160),
        CloseMessage("call-42"),
        PingMessage(),
    ]
    for message in messages:
        assert parse_request(message.to_frames()) == message


def test_replies_round_trip() -> None:
    for reply in (OpenedReply("a", "m", 200.0), ClosedReply("a"), PongReply(),
                  ErrorReply("bad_json", "nope", None, "?", None), ErrorReply("bad_payload", "x", "a", "audio", 3)):
        assert parse_reply(reply.to_frames()) == reply


OPEN = {"v": 1, "type": "open", "stream_id": "s", "encoding": "pcm_s16le", "sample_rate_hz": 16000, "channels": 1}


@pytest.mark.parametrize("frames,code", [
    ([b"{not json"], "bad_json"),
    ([b"\xff\xfe"], "bad_json"),
    (_frames([1, 2]), "bad_json"),
    ([], "bad_json"),
    (_frames({"type": "ping"}), "missing_field"),
    (_frames({"v": 2, "type": "ping"}), "bad_version"),
    (_frames({"v": 1}), "missing_field"),
    (_frames({"v": 1, "type": "launch"}), "unknown_type"),
    (_frames({**OPEN, "stream_id": None}), "bad_field"),
    (_frames({k: v for k, v in OPEN.items() if k != "stream_id"}), "missing_field"),
    (_frames({**OPEN, "stream_id": ""}), "bad_field"),
    (_frames({**OPEN, "stream_id": "x" * 129}), "bad_field"),
    (_frames({**OPEN, "encoding": "opus"}), "bad_field"),
    (_frames({k: v for k, v in OPEN.items() if k != "encoding"}), "missing_field"),
    (_frames({**OPEN, "sample_rate_hz": 4000}), "bad_field"),
    (_frames({**OPEN, "sample_rate_hz": 16000.5}), "bad_field"),
    (_frames({**OPEN, "channels": 3}), "bad_field"),
    (_frames({**OPEN, "metadata": {"a": 1}}), "bad_field"),
    (_frames({**OPEN, "metadata": "call"}), "bad_field"),
    (_frames(OPEN, b"extra"), "bad_field"),
    (_frames({"v": 1, "type": "audio", "stream_id": "s"}, b"\x00\x00"), "missing_field"),
    (_frames({"v": 1, "type": "audio", "stream_id": "s", "seq": -1}, b"\x00\x00"), "bad_field"),
    (_frames({"v": 1, "type": "audio", "stream_id": "s", "seq": "1"}, b"\x00\x00"), "bad_field"),
    (_frames({"v": 1, "type": "audio", "stream_id": "s", "seq": True}, b"\x00\x00"), "bad_field"),
    (_frames({"v": 1, "type": "audio", "stream_id": "s", "seq": 0}), "bad_payload"),
    (_frames({"v": 1, "type": "close"}), "missing_field"),
    # hostile JSON (issue 22): each of these used to escape as RecursionError/ValueError
    ([b"[" * 1000 + b"]" * 1000], "bad_json"),
    ([b'{"v":1,"type":"ping","x":' + b"[" * 100 + b"]" * 100 + b"}"], "bad_json"),
    ([b"1" * 5000], "bad_json"),
    ([b'{"v":1,"type":"audio","stream_id":"s","seq":' + b"9" * 5000 + b"}", b"\x00\x00"], "bad_json"),
    ([b'{"v":1,"type":"ping","x":NaN}'], "bad_json"),
    ([b'{"v":1,"type":"ping","x":1e400}'], "bad_json"),
    ([b'{"v":1,"type":"ping","pad":"' + b"x" * 70000 + b'"}'], "bad_json"),
    (_frames({**OPEN, "metadata": {"k" * 20000: "v"}}), "bad_field"),
    (_frames({**OPEN, "metadata": {"": "v"}}), "bad_field"),
    (_frames({**OPEN, "metadata": {"k": "v" * 513}}), "bad_field"),
    (_frames({**OPEN, "metadata": {f"k{i}": "v" for i in range(33)}}), "bad_field"),
    (_frames({**OPEN, "metadata": {f"k{i}": "v" * 500 for i in range(9)}}), "bad_field"),  # > 4 KiB in all
])
def test_malformed_requests_get_their_reason_code(frames: list[bytes], code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_request(frames)
    assert info.value.code == code
    reply = parse_reply(info.value.reply().to_frames())
    assert isinstance(reply, ErrorReply) and reply.code == code and reply.message


def test_error_reply_names_stream_ref_and_seq() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_request(_frames({"v": 1, "type": "audio", "stream_id": "s", "seq": 4}))
    reply = info.value.reply()
    assert (reply.stream_id, reply.ref, reply.seq) == ("s", "audio", 4)


@pytest.mark.parametrize("encoding", ["pcm_s16le", "pcm_f32le", "mulaw", "alaw"])
def test_payload_decode_and_downmix(encoding: str) -> None:
    fmt = AudioFormat(encoding, 8000, 2)  # type: ignore[arg-type]
    t = np.arange(800) / 8000
    left, right = 0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 440 * t)
    payload = encode_samples(np.stack([left, right], axis=1), fmt)
    mono = decode_payload(payload, fmt)
    assert mono.dtype == np.float32 and mono.shape == (800,)
    tolerance = 1e-4 if encoding.startswith("pcm") else 0.03
    np.testing.assert_allclose(mono, (left + right) / 2, atol=tolerance)


@pytest.mark.parametrize("fmt,length,needle", [
    (AudioFormat("pcm_s16le", 16000), 321, "multiple of the frame size"),
    (AudioFormat("pcm_s16le", 16000, 2), 642, "multiple of the frame size"),
    (AudioFormat("mulaw", 8000), 79, "allowed 10 ms"),
    (AudioFormat("mulaw", 8000), 8001, "allowed 10 ms"),
    (AudioFormat("pcm_f32le", 48000, 2), 48001 * 8, "allowed 10 ms"),
])
def test_bad_payloads_are_rejected(fmt: AudioFormat, length: int, needle: str) -> None:
    with pytest.raises(PayloadError, match=needle):
        payload_frames(b"\x00" * length, fmt)


def test_payload_bounds_are_inclusive() -> None:
    fmt = AudioFormat("mulaw", 8000)
    assert payload_frames(b"\x00" * 80, fmt) == 80
    assert payload_frames(b"\x00" * 8000, fmt) == 8000


def test_nan_f32_payload_is_rejected() -> None:
    samples = np.zeros(160, dtype="<f4")
    samples[3] = np.nan
    with pytest.raises(PayloadError, match="NaN"):
        decode_payload(samples.tobytes(), AudioFormat("pcm_f32le", 16000))


def test_pub_messages_round_trip() -> None:
    summary = results.StreamSummary(3, 0.6, 0.1, 0.2, 0.3, 0.4, "bonafide", 1, 160, 2, 0, 0)
    closed = results.closed_event(stream_id="a", reason="idle", summary=summary)
    frames = results.encode_pub(closed)
    assert frames[0] == b"a"
    assert results.decode_pub(frames) == closed
    with pytest.raises(ValueError, match="close reason"):
        results.closed_event(stream_id="a", reason="bored", summary=summary)


def _outcome(parse: Callable[[list[bytes]], object], frames: list[bytes]) -> object:
    try:
        return parse(frames)
    except ProtocolError as exc:
        return (exc.code, exc.stream_id, exc.ref, exc.seq)


@pytest.mark.parametrize("header", [
    b'{"v":1,"type":"audio","stream_id":"call-1","seq":0}',
    b'{"v":1,"type":"audio","stream_id":"a b~!#$%&()*+,-./:;<=>?@[]^_`{|}","seq":123456789012345678}',
    b'{"v":1,"type":"audio","stream_id":"' + b"x" * 128 + b'","seq":5}',
    b'{"v":1,"type":"audio","stream_id":"' + b"x" * 129 + b'","seq":5}',  # too long
    b'{"v":1,"type":"audio","stream_id":"","seq":5}',  # empty id
    b'{"v":1,"type":"audio","stream_id":"q\\"uote","seq":5}',  # escaped quote: JSON path
    b'{"v":1,"type":"audio","stream_id":"tab\\there","seq":5}',  # not printable
    b'{"v":1,"type":"audio","stream_id":"\xc3\xa9","seq":5}',  # non-ASCII: JSON path
    b'{"v":1,"type":"audio","stream_id":"s","seq":01}',  # not JSON
    b'{"v":1,"type":"audio","stream_id":"s","seq":-1}',
    b'{"v":1,"type":"audio","stream_id":"s","seq":1.5}',
    b'{"v":2,"type":"audio","stream_id":"s","seq":1}',
    b'{"type":"audio","v":1,"stream_id":"s","seq":1}',  # other key order: JSON path
    b'{"v": 1, "type": "audio", "stream_id": "s", "seq": 1}',  # spaces: JSON path
    b'{"v":1,"type":"audio","stream_id":"s","seq":1} ',
])
@pytest.mark.parametrize("extra_frames", [1, 0, 2])
def test_audio_fast_path_agrees_with_the_json_parser(header: bytes, extra_frames: int) -> None:
    frames = [header] + [b"\x01\x02"] * extra_frames
    assert _outcome(parse_request, frames) == _outcome(parse_request_json, frames)


def test_client_audio_headers_take_the_fast_path() -> None:
    header = AudioMessage("call-7 [eu]", 99, b"").to_frames()[0]
    assert _CANONICAL_AUDIO_HEADER.fullmatch(header) is not None


# ---- audio_batch (a gateway's 20 ms of many streams in one message) ------------------------------

def _batch(stream_ids: list[Any], seqs: list[Any], payloads: int | None = None) -> list[bytes]:
    count = len(stream_ids) if payloads is None else payloads
    return _frames({"v": 1, "type": "audio_batch", "stream_ids": stream_ids, "seqs": seqs},
                   *(bytes([i % 256]) * 160 for i in range(count)))


def test_audio_batch_round_trips_in_order() -> None:
    message = AudioBatchMessage([AudioMessage("call-1", 5, b"\x01" * 160), AudioMessage("call-2", 0, b"\x02" * 80),
                                 AudioMessage("call-1", 6, b"\x03" * 160)])
    frames = message.to_frames()
    assert json.loads(frames[0]) == {"v": 1, "type": "audio_batch", "stream_ids": ["call-1", "call-2", "call-1"],
                                     "seqs": [5, 0, 6]}
    assert parse_request(frames) == message


@pytest.mark.parametrize("frames,code", [
    (_batch([], []), "bad_field"),
    (_batch(["a"] * (MAX_BATCH_ENTRIES + 1), [0] * (MAX_BATCH_ENTRIES + 1)), "bad_field"),
    (_batch(["a", "b"], [0]), "bad_field"),
    (_batch(["a", "b"], [0, 0], payloads=1), "bad_payload"),
    (_batch(["a", "b"], [0, 0], payloads=3), "bad_payload"),
    (_frames({"v": 1, "type": "audio_batch", "seqs": [0]}, b"\x00"), "missing_field"),
    (_frames({"v": 1, "type": "audio_batch", "stream_ids": ["a"]}, b"\x00"), "missing_field"),
    (_frames({"v": 1, "type": "audio_batch", "stream_ids": "a", "seqs": [0]}, b"\x00"), "bad_field"),
    (_frames({"v": 2, "type": "audio_batch", "stream_ids": ["a"], "seqs": [0]}, b"\x00"), "bad_version"),
    # only an audio_batch header may exceed the usual 64 KiB, and not for another type
    ([b'{"v":1,"type":"audio","pad":"' + b"x" * 70000 + b'"}', b"\x00", b"\x00"], "bad_json"),
    ([b'{"v":1,"type":"audio_batch","pad":"' + b"x" * 300000 + b'"}', b"\x00", b"\x00"], "bad_json"),
])
def test_malformed_audio_batch_is_refused_as_a_whole(frames: list[bytes], code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_request(frames)
    assert info.value.code == code and info.value.index is None
    assert info.value.ref == ("?" if code == "bad_json" else "audio_batch")


def test_a_bad_entry_is_refused_alone_with_its_index() -> None:
    message = parse_request(_batch(["ok-1", 7, "", "ok-2", "neg", "x" * 129], [0, 1, 2, 3, -1, 5]))
    assert isinstance(message, AudioBatchMessage)
    kinds = [(type(e).__name__, getattr(e, "index", None)) for e in message.entries]
    assert kinds == [("AudioMessage", None), ("ProtocolError", 1), ("ProtocolError", 2), ("AudioMessage", None),
                     ("ProtocolError", 4), ("ProtocolError", 5)]
    assert message.entries[0] == AudioMessage("ok-1", 0, b"\x00" * 160)
    assert message.entries[3] == AudioMessage("ok-2", 3, b"\x03" * 160)  # payload frame i + 1 for entry i
    refused = [e for e in message.entries if isinstance(e, ProtocolError)]
    assert all(e.code == "bad_field" and e.ref == "audio_batch" for e in refused)
    negative = refused[2]
    assert (negative.stream_id, negative.seq, negative.index) == ("neg", None, 4)
    reply = parse_reply(negative.reply().to_frames())
    assert isinstance(reply, ErrorReply) and reply.index == 4 and reply.stream_id == "neg"
    with pytest.raises(ValueError, match="refused entry"):
        message.to_frames()


def test_a_full_batch_of_long_ids_fits_its_header_limit() -> None:
    ids = [f"{i:04d}" + "x" * 124 for i in range(MAX_BATCH_ENTRIES)]
    frames = AudioBatchMessage([AudioMessage(i, 10**12, b"\x00" * 160) for i in ids]).to_frames()
    assert len(frames[0]) > MAX_HEADER_BYTES
    message = parse_request(frames)
    assert isinstance(message, AudioBatchMessage) and len(message.entries) == MAX_BATCH_ENTRIES
    assert all(isinstance(e, AudioMessage) for e in message.entries)


def test_error_replies_without_an_index_keep_the_v1_shape() -> None:
    assert "index" not in json.loads(ErrorReply("bad_payload", "x", "a", "audio", 3).to_frames()[0])


def test_decode_payloads_equals_decode_payload_one_by_one() -> None:
    rng = np.random.default_rng(3)
    formats = [AudioFormat("mulaw", 8000, 1), AudioFormat("alaw", 8000, 1), AudioFormat("mulaw", 16000, 2),
               AudioFormat("pcm_s16le", 16000, 1), AudioFormat("pcm_f32le", 48000, 1)]
    items: list[tuple[bytes, AudioFormat]] = []
    for k in range(40):
        fmt = formats[k % len(formats)]
        frames = int(rng.integers(-(-fmt.sample_rate_hz // 100), fmt.sample_rate_hz // 10))
        samples = (0.3 * rng.standard_normal((frames, fmt.channels))).astype(np.float32)
        items.append((encode_samples(samples if fmt.channels == 2 else samples[:, 0], fmt), fmt))
    items += [(b"\x00" * 10, formats[0]), (b"\x00" * 161, formats[3]), (b"\x00" * 16001, formats[1])]
    for (payload, fmt), got in zip(items, decode_payloads(items), strict=True):
        try:
            expected = decode_payload(payload, fmt)
        except PayloadError as exc:
            assert isinstance(got, PayloadError) and str(got) == str(exc)
            continue
        assert not isinstance(got, PayloadError)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)
