"""The wire protocol: every message round-trips; bad input is a ProtocolError, never a crash."""

from __future__ import annotations

import json
import unicodedata

import pytest

from speakers.protocol import (
    ALL_MESSAGES,
    COMMANDS,
    EVENT_STATES,
    LOOKAHEAD_MESSAGES,
    MAX_LOOKAHEAD_SLOTS,
    NODE_MESSAGES,
    PROTOCOL_VERSION,
    AudioRef,
    Event,
    Health,
    Lookahead,
    PlayCommand,
    ProtocolError,
    Slot,
    Status,
    StopCommand,
    StreamCommand,
    StreamFrame,
    TimeRequest,
    TimeSync,
    Topics,
    VolumeCommand,
    decode,
    decode_command,
    decode_lookahead,
    decode_node_message,
    sha256_hex,
    split_chunks,
)

DATA = bytes(range(256)) * 700  # 179,200 bytes: three chunks of 64 KiB
REF = AudioRef.for_bytes(DATA, duration_s=61.5)
TITLE = unicodedata.normalize("NFC", "Thông báo khẩn: lũ quét ở thôn Đồng Tâm")

SAMPLES = [
    PlayCommand(
        broadcast_id="42",
        audio=REF,
        start_at=1_800_000_000.25,
        tier="emergency",
        volume=90,
        valid_until=1_800_000_600.0,
        title=TITLE,
        targets=("loa-01", "loa-02"),
    ),
    PlayCommand(broadcast_id="43", audio=REF, start_at=1.0),
    PlayCommand(broadcast_id="44", audio=REF, start_at=2.0, slot="s12@2026-01-05T06:00:00Z"),
    StopCommand(broadcast_id="42", reason="Hủy theo yêu cầu của chủ tịch xã"),
    StopCommand(),
    VolumeCommand(volume=0),
    VolumeCommand(volume=100),
    TimeSync(seq=7, t_node=1000.5, t_controller=1002.75),
    TimeSync(seq=-1, t_node=0.0, t_controller=5.0),
    TimeRequest(seq=0, t_node=1000.5),
    Status(online=True, ts=1.0, zone="thon-1", agent_version="0.1.0"),
    Status(online=False),
    Health(
        ts=1.0,
        uptime_s=2.5,
        volume=70,
        amplifier_on=True,
        playing="42",
        cache_bytes=1234,
        clock_offset_ms=-1.5,
        last_error="mất kết nối",
        queue=("43", "44"),
        malformed_count=2,
        cpu_temp_c=51.2,
        disk_free_bytes=10**9,
        signal_dbm=-71.0,
        clock_rtt_ms=3.2,
        reconnects=1,
        zone="thon-2",
        player="null",
        agent_version="0.1.0",
    ),
    Health(ts=1.0, uptime_s=0.0, volume=0, amplifier_on=False),
    Health(
        ts=1.0, uptime_s=9.0, volume=80, amplifier_on=True, supply_v=12.45, on_backup=True, output_dbfs=-23.5
    ),
    Lookahead(
        generated_at=1_800_000_000.0,
        horizon_s=172_800.0,
        slots=(
            Slot(
                slot="s12@2027-01-15T00:00:00Z",
                start_at=1_800_003_600.0,
                audio=REF,
                title=TITLE,
                valid_until=1_800_003_900.0,
            ),
            Slot(
                slot="s3@2027-01-15T10:30:00Z",
                start_at=1_800_041_400.0,
                audio=REF,
                tier="priority",
                volume=60,
            ),
        ),
    ),
    Lookahead(generated_at=5.0),
    StreamCommand(
        broadcast_id="77",
        stream="ch3",
        start_at=1_800_000_002.5,
        end_at=1_800_001_802.5,
        tier="priority",
        volume=70,
        title="Tiếp sóng VOV1: thời sự",
        targets=("loa-01", "loa-02"),
    ),
    StreamCommand(broadcast_id="78-r1", stream="live78", start_at=5.0, kind="live"),
    *[Event(state=s, ts=3.0, broadcast_id="42", audio_id=REF.id) for s in EVENT_STATES],
    Event(state="need_audio", ts=3.0, broadcast_id="42", audio_id=REF.id, missing=(0, 2)),
    Event(state="done", ts=3.0, broadcast_id="42", started_at=1.0, seconds_played=61.5, rms_dbfs=-18.25),
    Event(state="failed", ts=3.0, broadcast_id="42", reason="không giải mã được âm thanh", tier="priority"),
    Event(
        state="done",
        ts=9.0,
        audio_id=REF.id,
        slot="s12@2027-01-15T00:00:00Z",
        offline=True,
        started_at=1.0,
        finished_at=62.5,
        seconds_played=61.5,
        rms_dbfs=-20.0,
    ),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: f"{type(m).__name__}")
def test_every_message_round_trips(message) -> None:
    data = message.to_dict()
    assert data["v"] == PROTOCOL_VERSION and data["type"] == message.TYPE
    assert type(message).from_dict(data) == message
    assert decode(message.encode()) == message
    assert decode(message.encode().decode("utf-8")) == message
    assert json.loads(message.encode()) == data
    if type(message) in COMMANDS.values():
        assert decode_command(message.encode()) == message
    elif type(message) in LOOKAHEAD_MESSAGES.values():
        assert decode_lookahead(message.encode()) == message
    else:
        assert decode_node_message(message.encode()) == message


def test_every_message_type_has_a_sample() -> None:
    assert {type(m) for m in SAMPLES} == set(ALL_MESSAGES.values())
    assert {e.state for e in SAMPLES if isinstance(e, Event)} == set(EVENT_STATES)


def test_vietnamese_travels_as_utf8_not_escapes() -> None:
    cmd = SAMPLES[0]
    raw = cmd.encode()
    assert TITLE.encode("utf-8") in raw
    assert b"\\u" not in raw
    assert decode_command(raw).title == TITLE


def test_unknown_fields_and_newer_versions_are_accepted() -> None:
    data = SAMPLES[0].to_dict()
    data["v"] = PROTOCOL_VERSION + 1
    data["future_field"] = {"anything": [1, 2]}
    data["audio"]["codec_profile"] = "x"
    decoded = decode_command(json.dumps(data))
    assert decoded == SAMPLES[0]


@pytest.mark.parametrize(
    "payload, match",
    [
        (b"\xff\xfe not utf8", "not JSON"),
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"type": "play"}', "version"),
        (b'{"v": 0, "type": "stop"}', "version"),
        (b'{"v": true, "type": "stop"}', "version"),
        (b'{"v": 1}', "type"),
        (b'{"v": 1, "type": "reboot"}', "type"),
        (b'{"v": 1, "type": "volume"}', "missing field 'volume'"),
        (b'{"v": 1, "type": "volume", "volume": "loud"}', "integer"),
        (b'{"v": 1, "type": "volume", "volume": true}', "integer"),
        (b'{"v": 1, "type": "volume", "volume": 101}', "0..100"),
        (b'{"v": 1, "type": "stop", "broadcast_id": 5}', "string"),
        (b'{"v": 1, "type": "time", "seq": 1, "t_node": NaN, "t_controller": 1}', "finite"),
        (b'{"v": 1, "type": "time", "seq": -2, "t_node": 1, "t_controller": 1}', "seq"),
    ],
)
def test_malformed_commands_raise_protocol_error(payload: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_command(payload)


def _play(**changes) -> bytes:
    data = SAMPLES[0].to_dict()
    for key, value in changes.items():
        if key.startswith("audio."):
            data["audio"][key[6:]] = value
        elif value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    "payload",
    [
        _play(broadcast_id=""),
        _play(start_at="soon"),
        _play(start_at=float("inf")),
        _play(tier="urgent"),
        _play(volume=-1),
        _play(targets=["loa/01"]),
        _play(targets="loa-01"),
        _play(audio=None),
        _play(audio="abc"),
        _play(**{"audio.id": "ABC"}),
        _play(**{"audio.size": -1}),
        _play(**{"audio.chunk_hashes": ["00" * 32]}),
        _play(**{"audio.chunk_hashes": ["zz"] * 3}),
        _play(**{"audio.chunk_size": 0}),
    ],
)
def test_malformed_play_commands_raise_protocol_error(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_command(payload)


_DIGITS = "9" * 5000  # beyond Python's int-from-string limit (ValueError, not JSONDecodeError)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b'{"v": 1, "type": "volume", "volume": ' + _DIGITS.encode() + b"}", "not JSON"),
        (b'{"v": ' + _DIGITS.encode() + b', "type": "stop"}', "not JSON"),
        (b'{"v": 1, "type": "volume", "volume": ' + b"9" * 100 + b"}", "0..100"),
        (b'{"v": 1, "type": "volume", "volume": -5}', "0..100"),
        (b'{"v": 1, "type": "volume", "volume": 50.5}', "integer"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"v": 1, "type": "stop", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested"),
        (b'{"v": 1, "type": "time", "seq": 1, "t_node": Infinity, "t_controller": 1}', "finite"),
        (b'{"v": 1, "type": "time", "seq": 1, "t_node": 1, "t_controller": -Infinity}', "finite"),
        (b'{"v": 1, "type": "time", "seq": 1, "t_node": 1e999, "t_controller": 1}', "finite"),
        (b'{"v": 1, "type": "time", "seq": 1, "t_node": 1' + b"0" * 400 + b', "t_controller": 1}', "range"),
        (b'{"v": 1, "type": "time", "seq": 1, "t_node": 1, "t_controller": 1}\xff', "not JSON"),
    ],
)
def test_hostile_payloads_raise_protocol_error_only(payload: bytes, match: str) -> None:
    """Every bad input becomes a ProtocolError (never ValueError, RecursionError, OverflowError)."""
    with pytest.raises(ProtocolError, match=match):
        decode_command(payload)


def test_non_finite_numbers_are_refused_in_node_messages_too() -> None:
    checked = set()
    for sample in SAMPLES:
        data = sample.to_dict()
        floats = [k for k, v in data.items() if isinstance(v, float)]
        for key in floats:
            checked.add((sample.TYPE, key))
            bad = json.dumps({**data, key: 1.0}).replace('"' + key + '": 1.0', '"' + key + '": NaN')
            with pytest.raises(ProtocolError, match="finite"):
                decode(bad.encode())
    assert {t for t, _ in checked} >= {"play", "time", "health", "event"}


def test_node_messages_are_not_commands_and_back() -> None:
    with pytest.raises(ProtocolError, match="type"):
        decode_command(Status(online=True).encode())
    with pytest.raises(ProtocolError, match="type"):
        decode_node_message(VolumeCommand(volume=5).encode())
    with pytest.raises(ProtocolError):
        decode_node_message(b'{"v": 1, "type": "event", "state": "exploded", "ts": 1}')
    with pytest.raises(ProtocolError):
        decode_node_message(b'{"v": 1, "type": "event", "state": "need_audio", "ts": 1, "missing": [-1]}')


def test_audio_ref_describes_chunks() -> None:
    assert REF.id == sha256_hex(DATA) and REF.size == len(DATA)
    assert REF.chunk_count == 3 == len(split_chunks(DATA))
    assert b"".join(REF.chunk_of(DATA, i) for i in range(3)) == DATA
    assert REF.chunk_ok(2, REF.chunk_of(DATA, 2))
    assert not REF.chunk_ok(2, REF.chunk_of(DATA, 1))  # right size? no: wrong hash and length
    assert not REF.chunk_ok(0, b"\xff" + REF.chunk_of(DATA, 0)[1:])
    assert not REF.chunk_ok(3, b"")
    with pytest.raises(IndexError):
        REF.chunk_of(DATA, 3)
    empty = AudioRef.for_bytes(b"")
    assert empty.chunk_count == 1 and empty.chunk_ok(0, b"")
    small = AudioRef.for_bytes(b"abc", chunk_size=2)
    assert small.chunk_hashes == (sha256_hex(b"ab"), sha256_hex(b"c"))


def test_topics_build_and_parse() -> None:
    t = Topics("loa")
    assert t.status("loa-01") == "loa/speakers/loa-01/status"
    assert t.zone_cmd("thon-1") == "loa/zones/thon-1/cmd"
    assert t.audio_chunk(REF.id, 3) == f"loa/audio/{REF.id}/3"
    assert t.audio_filter(REF.id) == f"loa/audio/{REF.id}/+"
    assert t.lookahead("loa-01") == "loa/speakers/loa-01/lookahead"
    assert t.node_filters("loa-01", "thon-1") == [
        "loa/speakers/loa-01/cmd",
        "loa/zones/thon-1/cmd",
        "loa/speakers/loa-01/lookahead",
    ]
    assert t.node_filters("loa-01", None) == ["loa/speakers/loa-01/cmd", "loa/speakers/loa-01/lookahead"]
    for kind in ("status", "health", "cmd", "events", "time", "lookahead"):
        assert t.parse(f"loa/speakers/loa-01/{kind}") == (kind, "loa-01", None)
    assert t.parse("loa/zones/thon-1/cmd") == ("zone_cmd", "thon-1", None)
    assert t.parse(f"loa/audio/{REF.id}/12") == ("audio", REF.id, "12")
    nested = Topics("xa/dong-tam")
    assert nested.parse(nested.events("loa-9")) == ("events", "loa-9", None)
    for bad in (
        "other/speakers/loa-01/status",
        "loa/speakers/+/status",
        "loa/speakers/loa-01/reboot",
        "loa/audio/abc/1",
        f"loa/audio/{REF.id}/x",
        "loa/zones/thon-1/events",
        "loa",
    ):
        with pytest.raises(ProtocolError):
            t.parse(bad)
    assert set(t.controller_filters()) == {
        "loa/speakers/+/status",
        "loa/speakers/+/health",
        "loa/speakers/+/events",
        "loa/speakers/+/time",
    }


def test_message_registries() -> None:
    assert set(COMMANDS) == {"play", "stop", "volume", "time", "stream"}
    assert set(LOOKAHEAD_MESSAGES) == {"lookahead"}
    assert set(NODE_MESSAGES) == {"time_request", "status", "health", "event"}


# ---------------------------------------------------------------- offline airing (section 11)


def _slot(key: str = "s1@2027-01-15T00:00:00Z", **kw) -> dict:
    return {"slot": key, "start_at": 100.0, "audio": REF.to_dict(), **kw}


def test_lookahead_is_not_a_command_and_an_empty_payload_clears_it() -> None:
    message = Lookahead(generated_at=1.0, slots=(Slot(slot="a", start_at=1.0, audio=REF),))
    with pytest.raises(ProtocolError, match="type"):
        decode_command(message.encode())
    with pytest.raises(ProtocolError, match="type"):
        decode_lookahead(PlayCommand(broadcast_id="1", audio=REF, start_at=1.0).encode())
    assert decode_lookahead(b"") == Lookahead(generated_at=0.0)  # the retained message was cleared


@pytest.mark.parametrize(
    ("slots", "match"),
    [
        ([_slot(tier="emergency")], "tier"),  # emergencies need the link: never aired offline
        ([_slot(), _slot()], "unique"),
        ([_slot("has space")], "slot key"),
        ([_slot("")], "slot key"),
        ([_slot("x" * 121)], "slot key"),
        ([_slot(valid_until=99.0)], "valid_until"),
        ([_slot(volume=101)], "volume"),
        ([_slot(start_at="soon")], "start_at"),
        ([{"slot": "a", "start_at": 1.0}], "audio"),
        ([_slot(f"s{i}") for i in range(MAX_LOOKAHEAD_SLOTS + 1)], "at most"),
    ],
)
def test_malformed_lookaheads_raise_protocol_error(slots: list, match: str) -> None:
    payload = json.dumps({"v": 1, "type": "lookahead", "generated_at": 1.0, "slots": slots})
    with pytest.raises(ProtocolError, match=match):
        decode_lookahead(payload)


def test_slot_keys_in_play_commands_and_receipts_are_checked() -> None:
    with pytest.raises(ProtocolError, match="slot key"):
        decode_command(json.dumps({"v": 1, "type": "play", "broadcast_id": "1", "audio": REF.to_dict(),
                                   "start_at": 1.0, "slot": "a b"}))  # fmt: skip
    with pytest.raises(ProtocolError, match="slot key"):
        decode_node_message(b'{"v": 1, "type": "event", "state": "done", "ts": 1, "slot": ""}')
    # An older controller's play has no slot; an older node's receipts have no slot or offline.
    play = decode_command(json.dumps({"v": 1, "type": "play", "broadcast_id": "1", "audio": REF.to_dict(),
                                      "start_at": 1.0}))  # fmt: skip
    assert play.slot is None
    event = decode_node_message(b'{"v": 1, "type": "event", "state": "done", "ts": 1}')
    assert event.slot is None and event.offline is False and event.finished_at is None
    health = decode_node_message(
        b'{"v": 1, "type": "health", "ts": 1, "uptime_s": 1, "volume": 5, "amplifier_on": false}'
    )
    assert health.supply_v is None and health.on_backup is None and health.output_dbfs is None


# ---------------------------------------------------------------- live streams (section 12)


def test_stream_frames_round_trip_and_decode_to_the_samples() -> None:
    import array
    import math

    from speakers import adpcm

    rate = 12_000
    tone = array.array("h", (int(12_000 * math.sin(2 * math.pi * 1000 * n / rate)) for n in range(3000)))
    payload, predictor, index = adpcm.encode(tone, 0, 0)
    frame = StreamFrame(seq=7, t=1_800_000_000.125, samples=3000, rate=rate, payload=payload)
    raw = frame.encode()
    assert len(raw) == 29 + 1500  # 4 bits a sample: 48 kbps at 12 kHz
    back = StreamFrame.decode(raw)
    assert back == frame and back.end == pytest.approx(1_800_000_000.375)
    decoded = adpcm.decode(back.payload, back.samples, back.predictor, back.index)
    error = max(abs(a - b) for a, b in zip(decoded[200:], tone[200:], strict=True))
    assert error < 1500  # ADPCM follows the tone closely once its step has adapted
    # The next frame starts from the state the encoder reached: decodable on its own.
    second, _, _ = adpcm.encode(tone, predictor, index)
    alone = adpcm.decode(second, 3000, predictor, index)
    assert max(abs(a - b) for a, b in zip(alone, tone, strict=True)) < 1500
    last = StreamFrame(seq=8, t=2.0, samples=10, rate=rate, codec=0, last=True)
    assert StreamFrame.decode(last.encode()).last


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"LXA1",
        b"XXXX" + bytes(25),
        StreamFrame(seq=1, t=1.0, samples=10, rate=12000, payload=bytes(5)).encode()[:-1],
        StreamFrame(seq=1, t=1.0, samples=10, rate=12000, payload=bytes(5), codec=9).encode(),
        StreamFrame(seq=1, t=1.0, samples=10, rate=12000, payload=b"x", codec=0).encode(),
        StreamFrame(seq=1, t=float("nan"), samples=10, rate=12000, payload=bytes(5)).encode(),
        StreamFrame(seq=1, t=1.0, samples=10, rate=100, payload=bytes(5)).encode(),
    ],
)
def test_malformed_stream_frames_raise_protocol_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        StreamFrame.decode(raw)


def test_stream_commands_are_checked() -> None:
    base = {"v": 1, "type": "stream", "broadcast_id": "1", "stream": "ch1", "start_at": 10.0}
    assert decode_command(json.dumps(base)).end_at is None
    for bad in ({"stream": "a/b"}, {"end_at": 5.0}, {"kind": "music"}, {"volume": 101}, {"stream": None}):
        with pytest.raises(ProtocolError):
            decode_command(json.dumps({**base, **bad}))


def test_stream_topics_build_and_parse() -> None:
    topics = Topics("loa")
    assert topics.stream("ch3") == "loa/streams/ch3/audio"
    assert topics.parse("loa/streams/ch3/audio") == ("stream", "ch3", None)
    with pytest.raises(ProtocolError):
        topics.parse("loa/streams/+/audio")
