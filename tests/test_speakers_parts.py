"""The agent's parts on their own: cache, transfer, analysis, players, amplifier, health, power,
config, TLS messages, the receipt outbox."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from speakers.amplifier import AmplifierControl, AmplifierError, SysfsGpioAmplifier, make_amplifier
from speakers.cache import AudioCache, CacheError, ChunkPool, Transfer
from speakers.config import AgentConfig, ConfigError, QuietHours, load_config
from speakers.health import HostProbe, Source, parse_backup, parse_signal, read_cpu_temp_c
from speakers.mqtt import MqttUrlError, parse_mqtt_url
from speakers.player import (
    Analysis,
    Analyzer,
    FilePlayer,
    NullPlayer,
    PlayerError,
    PlayItem,
    RealPlayer,
    analyze,
    make_player,
)
from speakers.protocol import AudioRef, sha256_hex
from speakers.receipts import ReceiptOutbox
from speakers.tls import client_context, explain_connect_error
from tests.fakes import FakeAmplifier
from tests.mini_controller import SINE_DBFS, make_tone_mp3, run


@pytest.fixture(scope="module")
def tone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tone") / "tone.mp3"
    make_tone_mp3(path, 1.0)
    return path


@pytest.fixture(scope="module")
def pki_pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real CA certificate (the config loads it into an SSL context)."""
    folder = tmp_path_factory.mktemp("ca")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=Loa test CA"],
        cwd=folder, check=True, capture_output=True,
    )  # fmt: skip
    return (folder / "ca.crt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def long_tone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Long enough that its decoded PCM overfills a pipe and the reader's buffer."""
    path = tmp_path_factory.mktemp("tone") / "long.mp3"
    make_tone_mp3(path, 6.0)
    return path


# --------------------------------------------------------------------------------- cache


def test_cache_stores_verified_files_atomically_and_survives_restart(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path, max_bytes=10_000)
    data = b"a" * 1000
    audio_id = sha256_hex(data)
    with pytest.raises(CacheError):
        cache.put(audio_id, b"b" * 1000)  # bytes that are not that file
    assert not cache.has(audio_id)
    cached = cache.put(audio_id, data, "mp3")
    assert cached.path == tmp_path / f"{audio_id}.mp3" and cached.path.read_bytes() == data
    cache.set_meta(audio_id, {"analysis": {"duration_s": 1.0}})
    (tmp_path / f".{audio_id}.mp3.123.tmp").write_bytes(b"half a file")  # crash leftover
    again = AudioCache(tmp_path, max_bytes=10_000)
    assert again.has(audio_id) and again.total_bytes == 1000 and len(again) == 1
    assert again.meta(audio_id) == {"analysis": {"duration_s": 1.0}}
    assert not (tmp_path / f".{audio_id}.mp3.123.tmp").exists()
    assert again.verify(audio_id)


def test_cache_drops_a_file_damaged_on_disk(tmp_path: Path) -> None:
    data = b"x" * 500
    audio_id = sha256_hex(data)
    AudioCache(tmp_path, 10_000).put(audio_id, data)
    (tmp_path / f"{audio_id}.mp3").write_bytes(b"y" * 500)
    cache = AudioCache(tmp_path, 10_000)
    assert cache.has(audio_id)
    assert not cache.verify(audio_id)
    assert not cache.has(audio_id) and not (tmp_path / f"{audio_id}.mp3").exists()


def test_cache_evicts_least_recently_used_but_never_pinned(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path, max_bytes=2500)
    files = [bytes([i]) * 1000 for i in range(4)]
    ids = [sha256_hex(f) for f in files]
    cache.put(ids[0], files[0])
    cache.put(ids[1], files[1])
    cache.pin(ids[0])
    cache.get(ids[1])
    cache.put(ids[2], files[2])  # 3000 > 2500: the oldest unpinned goes (ids[1])
    assert cache.has(ids[0]) and not cache.has(ids[1]) and cache.has(ids[2])
    cache.unpin(ids[0])
    cache.get(ids[2])
    cache.put(ids[3], files[3])
    assert not cache.has(ids[0]) and cache.has(ids[2]) and cache.has(ids[3])
    assert cache.total_bytes <= 2500
    # LRU order survives a restart (file mtimes).
    assert AudioCache(tmp_path, 2500).ids() == [ids[2], ids[3]]


def test_shared_pool_hard_links_one_copy(tmp_path: Path) -> None:
    data = b"z" * 4096
    audio_id = sha256_hex(data)
    a = AudioCache(tmp_path / "a", 10_000, pool=tmp_path / "pool")
    b = AudioCache(tmp_path / "b", 10_000, pool=tmp_path / "pool")
    a.put(audio_id, data)
    b.put(audio_id, data)
    assert os.stat(a.get(audio_id).path).st_ino == os.stat(b.get(audio_id).path).st_ino
    a.remove(audio_id)
    assert b.get(audio_id).path.read_bytes() == data


def test_transfer_keeps_only_verified_chunks(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    ref = AudioRef.for_bytes(data, chunk_size=3000)
    pool = ChunkPool()
    transfer = Transfer(ref, pool)
    assert transfer.missing == [0, 1, 2, 3]
    assert not transfer.add(1, b"\x00" + ref.chunk_of(data, 1)[1:])  # corrupt
    assert not transfer.add(3, ref.chunk_of(data, 3) + b"!")  # too long
    assert not transfer.add(9, b"")  # no such chunk
    assert transfer.bad_chunks == 3 and transfer.missing == [0, 1, 2, 3]
    for i in (0, 2, 3):
        assert transfer.add(i, ref.chunk_of(data, i))
    assert not transfer.add(0, ref.chunk_of(data, 0)) and transfer.duplicates == 1
    assert transfer.assemble() is None and transfer.missing == [1]
    assert transfer.add(1, ref.chunk_of(data, 1))
    assert transfer.assemble() == data
    # A second transfer of the same file shares the chunk bytes.
    other = Transfer(ref, pool)
    other.add(0, bytes(ref.chunk_of(data, 0)))
    assert other._chunks[0] is transfer._chunks[0]
    transfer.close()
    other.close()
    assert len(pool) == 0


def test_transfer_refetches_when_the_whole_file_does_not_verify() -> None:
    data = b"abcdef"
    good = AudioRef.for_bytes(data, chunk_size=3)
    lying = AudioRef(id=sha256_hex(b"other"), size=6, chunk_hashes=good.chunk_hashes, chunk_size=3)
    transfer = Transfer(lying)
    transfer.add(0, b"abc")
    transfer.add(1, b"def")
    assert transfer.complete
    assert transfer.assemble() is None
    assert transfer.missing == [0, 1]


# ------------------------------------------------------------------------------ analysis


def test_analysis_measures_duration_and_level(tone: Path) -> None:
    analysis = run(analyze(tone))
    assert analysis.duration_s == pytest.approx(1.0, abs=0.08)
    assert analysis.rms_dbfs() == pytest.approx(SINE_DBFS, abs=1.0)
    assert analysis.rms_dbfs(volume=50) == pytest.approx(SINE_DBFS - 6.02, abs=1.0)
    assert analysis.rms_dbfs(0.0) == -120.0 and analysis.rms_dbfs(volume=0) == -120.0
    assert Analysis.from_json(json.loads(json.dumps(analysis.to_json()))) == analysis


def test_level_of_the_part_played() -> None:
    # One loud second (mean square 0.25 = -6 dBFS), then silence.
    analysis = Analysis(duration_s=2.0, window_s=0.1, mean_squares=(0.25,) * 10 + (0.0,) * 10)
    assert analysis.rms_dbfs(1.0) == pytest.approx(-6.02, abs=0.01)
    assert analysis.rms_dbfs() == pytest.approx(-9.03, abs=0.01)


def test_analysis_rejects_what_does_not_decode(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"this is not audio" * 100)
    with pytest.raises(PlayerError, match="does not decode"):
        run(analyze(junk))


def test_analyzer_decodes_each_file_once(tone: Path, tmp_path: Path) -> None:
    analyzer = Analyzer()

    async def many() -> list[Analysis]:
        return await asyncio.gather(*(analyzer.get("same-id", tone) for _ in range(20)))

    results = run(many())
    assert all(r is results[0] for r in results)
    assert analyzer.known("same-id") is results[0]


# ------------------------------------------------------------------------------- players


def _item(path: Path, duration: float = 1.0, volume: int = 100) -> PlayItem:
    return PlayItem("b1", sha256_hex(path.read_bytes()), path, time.time(), duration, volume, title="Thử")


def test_null_player_records_and_takes_the_duration(tone: Path) -> None:
    player = NullPlayer()
    item = _item(tone, duration=0.3)

    async def go() -> float:
        t0 = time.monotonic()
        await player.prepare(item)
        await player.play(item)
        return time.monotonic() - t0

    assert run(go()) >= 0.3
    [entry] = player.timeline
    assert entry["broadcast_id"] == "b1" and entry["duration"] == 0.3 and entry["title"] == "Thử"


def test_file_player_writes_what_was_played(tone: Path, tmp_path: Path) -> None:
    player = FilePlayer(tmp_path / "out")
    item = _item(tone, duration=1.0, volume=50)

    async def go() -> None:
        task = asyncio.create_task(player.play(item))
        await asyncio.sleep(0.4)  # let it "play" a while, then cut it as a stop would
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await player.release(item)

    run(go())
    [wav] = list((tmp_path / "out").glob("*.wav"))
    written = run(analyze(wav))
    assert 0.3 < written.duration_s < 0.8  # cut where playback was cut
    assert written.rms_dbfs() == pytest.approx(SINE_DBFS - 6.02, abs=1.0)  # at the volume played
    [line] = (tmp_path / "out" / "played.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["title"] == "Thử"


@pytest.mark.skipif(shutil.which("ffplay") is None, reason="needs ffplay")
def test_real_player_plays_through_an_output_program_and_stops_at_once(tone: Path) -> None:
    # SDL's dummy audio driver consumes samples in real time without a sound card.
    command = ["ffplay", "-nodisp", "-autoexit", "-loglevel", "error", "-f", "s16le", "-ar", "48000",
               "-ch_layout", "stereo", "-i", "-"]  # fmt: skip
    player = RealPlayer(command, env={"SDL_AUDIODRIVER": "dummy"})
    item = _item(tone)

    async def whole() -> float:
        await player.prepare(item)
        t0 = time.monotonic()
        await player.play(item)
        elapsed = time.monotonic() - t0
        await player.release(item)
        return elapsed

    assert run(whole()) >= 0.8  # it really took the audio's time

    async def cut() -> tuple[int | None, int | None]:
        await player.prepare(item)
        decoder, proc, first = player._prepared[id(item)]
        # Streamed, not decoded whole into memory: a running decoder and one block in hand.
        assert len(first) <= player.block_bytes() and decoder.returncode is None
        task = asyncio.create_task(player.play(item))
        await asyncio.sleep(0.2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await player.release(item)
        return proc.returncode, decoder.returncode

    output_rc, decoder_rc = run(cut())
    assert output_rc == -9  # the output program was killed, not left to finish
    assert decoder_rc is not None  # and the decoder does not outlive the cut


@pytest.mark.parametrize(
    "script",
    [
        "echo 'no sound card' >&2; exit 3",
        # Fails later, once the decoder has filled its pipe and sits there unread: releasing the
        # item must still end the decoder (Python 3.11's wait() needs every pipe drained).
        "sleep 0.5; echo 'no sound card' >&2; exit 3",
    ],
)
def test_real_player_reports_a_failing_output(long_tone: Path, script: str) -> None:
    player = RealPlayer(["sh", "-c", script])
    item = _item(long_tone)

    async def same_item() -> None:
        await player.prepare(item)
        try:
            await player.play(item)
        finally:
            await player.release(item)

    with pytest.raises(PlayerError, match="no sound card"):
        run(same_item(), timeout=20)


def test_real_player_measures_the_level_it_sends_to_the_output(tone: Path) -> None:
    player = RealPlayer(["sh", "-c", "cat > /dev/null"])  # takes the samples as fast as they come

    async def level(volume: int) -> tuple[float | None, float | None, float | None]:
        item = _item(tone, volume=volume)
        before = player.output_dbfs(item)
        await player.prepare(item)
        await player.play(item)
        measured = player.output_dbfs(item)
        await player.release(item)
        return before, measured, player.output_dbfs(item)

    before, full, after = run(level(100))
    assert before is None and after is None  # nothing sent yet / released
    # The samples sent: the mono tone upmixed to stereo (ffmpeg mixes mono at -3 dB per channel).
    assert full is not None and SINE_DBFS - 4.5 < full < SINE_DBFS + 0.5
    assert run(level(50))[1] == pytest.approx(full - 6.02, abs=0.5)


def test_level_between_two_instants() -> None:
    analysis = Analysis(duration_s=2.0, window_s=0.1, mean_squares=(0.25,) * 10 + (0.0,) * 10)
    assert analysis.level_between(0.0, 1.0) == pytest.approx(-6.02, abs=0.01)
    assert analysis.level_between(0.5, 1.5) == pytest.approx(-9.03, abs=0.01)
    assert analysis.level_between(1.0, 2.0) == -120.0
    assert analysis.level_between(0.0, 1.0, volume=50) == pytest.approx(-12.04, abs=0.01)


def test_the_player_uses_the_configured_alsa_device() -> None:
    command = RealPlayer(device="plughw:CARD=Device").command
    if command[0] == "aplay":
        assert command[1:3] == ["-D", "plughw:CARD=Device"]
    elif command[0] == "ffplay":
        assert RealPlayer(device="hw:1").env["AUDIODEV"] == "hw:1"


def test_make_player() -> None:
    assert make_player("null").name == "null"
    with pytest.raises(PlayerError, match="output folder"):
        make_player("file")
    with pytest.raises(PlayerError, match="unknown player"):
        make_player("bluetooth")


# ----------------------------------------------------------------------------- amplifier


def test_sysfs_amplifier_writes_the_gpio_files(tmp_path: Path) -> None:
    root = tmp_path / "gpio"
    root.mkdir()
    (root / "export").write_text("")
    (root / "gpio17").mkdir()  # what the kernel creates on export
    amp = SysfsGpioAmplifier(17, active_low=True, root=root)
    run(amp.set(True))
    assert amp.is_on
    assert (root / "export").read_text() == ""  # already exported: not exported again
    assert (root / "gpio17" / "direction").read_text() == "out\n"
    assert (root / "gpio17" / "value").read_text() == "0\n"  # active low: on = 0
    run(amp.set(False))
    assert (root / "gpio17" / "value").read_text() == "1\n" and not amp.is_on
    broken = SysfsGpioAmplifier(5, root=tmp_path / "missing")
    with pytest.raises(AmplifierError, match="GPIO 5"):
        run(broken.set(True))


def test_amplifier_control_switches_off_after_idle() -> None:
    fake = FakeAmplifier()
    control = AmplifierControl(fake, lead_s=0.1, idle_off_s=0.1)

    async def go() -> None:
        await control.ensure_on()
        control.idle()
        await control.ensure_on()  # playback again before the idle time: stays on
        await asyncio.sleep(0.15)
        assert fake.is_on
        control.idle()
        while fake.is_on:
            await asyncio.sleep(0.01)
        await control.close()

    run(go(), timeout=5)
    assert [on for _, on in fake.switches] == [True, False]
    failing = AmplifierControl(FakeAmplifier(fail=True))
    run(failing.ensure_on())  # does not raise: the announcement must still play
    assert failing.last_error == "relay does not answer"


def test_make_amplifier_needs_a_line() -> None:
    assert make_amplifier("none").name == "none"
    with pytest.raises(AmplifierError, match="line"):
        make_amplifier("gpioset")


# -------------------------------------------------------------------------------- health


def test_host_readings(tmp_path: Path) -> None:
    thermal = tmp_path / "thermal"
    for i, milli in enumerate(("48500", "61000", "garbage")):
        (thermal / f"thermal_zone{i}").mkdir(parents=True)
        (thermal / f"thermal_zone{i}" / "temp").write_text(milli)
    assert read_cpu_temp_c(thermal) == 61.0
    assert read_cpu_temp_c(tmp_path / "none") is None
    assert parse_signal("Signal: RSSI -71 dBm") == -71.0
    assert parse_signal("no number") is None
    probe = HostProbe(tmp_path, signal_command="echo rssi -85.5", thermal_root=thermal)
    readings = run(probe.read())
    assert readings.signal_dbm == -85.5 and readings.cpu_temp_c == 61.0 and readings.disk_free_bytes > 0
    assert (
        run(HostProbe(tmp_path, signal_command="false-command-that-does-not-exist").read()).signal_dbm is None
    )


def test_power_readings_from_files_and_commands(tmp_path: Path) -> None:
    volts = tmp_path / "in_voltage0_input"
    volts.write_text("12450\n")
    probe = HostProbe(
        tmp_path,
        voltage=Source(file=volts),
        voltage_scale=0.001,
        backup=Source(command="echo battery"),
    )
    readings = run(probe.read())
    assert readings.supply_v == 12.45 and readings.on_backup is True
    mains = HostProbe(
        tmp_path, voltage=Source(command="echo 'Vin: 5.1 V'"), backup=Source(file=tmp_path / "gpio")
    )
    (tmp_path / "gpio").write_text("1\n")
    inverted = HostProbe(tmp_path, backup=Source(file=tmp_path / "gpio"), backup_invert=True)
    assert run(mains.read()).supply_v == 5.1 and run(mains.read()).on_backup is True
    assert run(inverted.read()).on_backup is False  # the pin says 1 on mains
    unset = run(HostProbe(tmp_path).read())
    assert unset.supply_v is None and unset.on_backup is None
    broken = HostProbe(
        tmp_path, voltage=Source(command="sh -c 'exit 2'"), backup=Source(file=tmp_path / "none")
    )
    assert run(broken.read()).supply_v is None and run(broken.read()).on_backup is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", True), ("battery\n", True), ("Discharging", True), ("0", False), ("mains", False),
     ("online", False), ("", None), ("maybe", None)],
)  # fmt: skip
def test_backup_state_words(text: str, expected: bool | None) -> None:
    assert parse_backup(text) is expected
    assert parse_backup(text, invert=True) is (None if expected is None else not expected)


# -------------------------------------------------------------------------------- config


def test_config_file_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "id: loa-01\nzone: thon-1\nmqtt:\n  url: mqtt://loa-01:pw@10.0.0.1:1883\n"
        "amplifier:\n  kind: gpioset\n  line: 17\nvolume:\n  quiet_hours: {start: '21:30', end: '05:30', volume: 40}\n",
        encoding="utf-8",
    )
    config = load_config(path, {"player": {"kind": "null"}, "health": {"interval_s": None}})
    assert config.id == "loa-01" and config.amplifier.line == 17 and config.player.kind == "null"
    assert config.health.interval_s == 30
    assert config.cache_dir().name == "loa-01"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("id: loa-01\ncolour: red\n", "colour: Extra inputs are not permitted"),
        ("id: 'bad id'\n", "id: 'bad id' is not a valid id"),
        ("id: loa-01\nmqtt: {url: 'http://x'}\n", "mqtt.url: MQTT URL must start with mqtt://"),
        ("id: loa-01\namplifier: {kind: gpioset}\n", "needs 'line'"),
        ("id: loa-01\nvolume: {default: 150}\n", "volume.default"),
        ("id: loa-01\nvolume: {timezone: Mars/Olympus}\n", "unknown time zone"),
        ("id: loa-01\nvolume: {quiet_hours: {start: '25:00', end: '06:00', volume: 10}}\n", "HH:MM"),
        ("zone: thon-1\n", "id: Field required"),
        ("- just\n- a list\n", "must hold a mapping"),
        ("id: [unclosed\n", "cannot read config file"),
    ],
)
def test_config_errors_are_readable(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert expected in str(err.value)
    assert "Traceback" not in str(err.value)


CA_PEM = """-----BEGIN CERTIFICATE-----
MIIBcTCCARegAwIBAgIUGKJ7Lzqk5x3VZGn0m1lGgN3kQqQwCgYIKoZIzj0EAwIw
-----END CERTIFICATE-----
"""


def test_the_enrollment_file_needs_nothing_else(tmp_path: Path, pki_pem: str) -> None:
    path = tmp_path / "agent.yaml"
    ca = "\n".join(f"  {line}" for line in pki_pem.strip().splitlines())
    path.write_text(
        f"id: loa-01\nzone: thon-1\nmqtt_url: mqtts://broker.xa.vn:8883\npassword: 'p@ss w:rd'\n"
        f"ca_pem: |\n{ca}\ncache_dir: {tmp_path / 'cache'}\naudio:\n  device: hw:1,0\n"
        "power:\n  voltage_file: /sys/x\n  backup_command: ups-state\n",
        encoding="utf-8",
    )
    config = load_config(path)
    url = config.broker_url()
    assert (url.host, url.port, url.tls, url.username, url.password) == (
        "broker.xa.vn", 8883, True, "loa-01", "p@ss w:rd",
    )  # fmt: skip
    assert config.mqtt.ca_pem == pki_pem and config.cache_dir() == tmp_path / "cache"
    assert config.audio.device == "hw:1,0" and config.power.backup_command == "ups-state"
    context = config.tls_context()
    assert context is not None and context.check_hostname and context.minimum_version.name == "TLSv1_2"
    assert len(context.get_ca_certs()) == 1  # pinned: only the enrolled CA, not the system's
    # The nested spellings are the same settings; the URL may carry its own user.
    nested = AgentConfig.model_validate(
        {"id": "loa-02", "mqtt": {"url": "mqtts://node7@h", "password": "x", "ca_pem": pki_pem}}
    )
    assert nested.broker_url().username == "node7" and nested.broker_url().password == "x"
    assert AgentConfig.model_validate({"id": "a", "mqtt_url": "mqtt://h"}).tls_context() is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "id: a\nmqtt_url: mqtt://h\nmqtt: {url: 'mqtt://g'}\n",
            "'mqtt_url' and 'mqtt.url' are the same setting",
        ),
        ("id: a\ncache_dir: /x\naudio: {cache_dir: /y}\n", "'cache_dir' and 'audio.cache_dir'"),
        ("id: a\nmqtt_url: mqtt://h\nca_pem: CA\n", "ca_pem: ca_pem is not a PEM certificate"),
        (
            f"id: a\nmqtt_url: mqtt://h\nca_pem: |\n  {CA_PEM.strip().replace(chr(10), chr(10) + '  ')}\n",
            "ca_pem",
        ),
        ("id: a\nmqtt_url: mqtt://u:p@h\npassword: q\n", "the password is both in the URL and in 'password'"),
        ("id: a\nmqtt_url: 'http://h'\n", "mqtt_url: MQTT URL must start with mqtt://"),
        ("id: a\npower: {voltage_scale: 0}\n", "power.voltage_scale"),
        ("id: a\nlookahead: {offline_after_s: -1}\n", "lookahead.offline_after_s"),
    ],
)
def test_enrollment_config_errors_are_readable(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert expected in str(err.value)


def test_flags_override_the_enrollment_keys(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "id: loa-01\nmqtt_url: mqtts://broker:8883\npassword: pw\ncache_dir: /var/lib/loa/audio\n"
    )
    config = load_config(
        path, {"mqtt": {"url": "mqtt://127.0.0.1:1883"}, "audio": {"cache_dir": str(tmp_path)}}
    )
    assert config.broker_url().host == "127.0.0.1" and config.broker_url().password == "pw"
    assert config.cache_dir() == tmp_path


def test_ca_pem_needs_tls(pki_pem: str) -> None:
    with pytest.raises(ValueError, match="ca_pem is set but the URL is not mqtts://"):
        AgentConfig.model_validate({"id": "a", "mqtt_url": "mqtt://h", "ca_pem": pki_pem})
    with pytest.raises(ValueError, match="not a PEM"):
        client_context("garbage")


# ----------------------------------------------------------------------------- TLS words


def _verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    exc.verify_code = code
    exc.verify_message = message
    return exc


@pytest.mark.parametrize(
    ("exc", "code", "expected"),
    [
        (_verify_error(10, "certificate has expired"), None, "TLS: the broker's certificate has expired"),
        (_verify_error(9, "certificate is not yet valid"), None, "check this computer's clock"),
        (
            _verify_error(19, "self-signed certificate in certificate chain"),
            None,
            "not signed by the trusted CA",
        ),
        (_verify_error(20, "unable to get local issuer certificate"), None, "check ca_pem"),
        (_verify_error(62, "Hostname mismatch"), None, "is not for host 'h'"),
        (
            ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
            None,
            "is it the broker's TLS port?",
        ),
        (ConnectionRefusedError(111, "Connection refused"), None, "refused the connection at h:8883"),
        (socket.gaierror(-2, "Name or service not known"), None, "cannot resolve the broker's host name 'h'"),
        (TimeoutError("timed out"), None, "no answer from h:8883"),
        (OSError(113, "No route to host"), None, "cannot reach h:8883: No route to host"),
        (RuntimeError("x"), 134, "login refused: wrong user name or password"),
        (RuntimeError("x"), 135, "login refused: not authorized"),
        (RuntimeError("x"), 5, "login refused: not authorized"),
        (RuntimeError("x"), 138, "banned"),
    ],
)
def test_connection_failures_in_plain_words(exc: BaseException, code: int | None, expected: str) -> None:
    assert expected in explain_connect_error(exc, "h", 8883, code)


# ------------------------------------------------------------------------- receipt outbox


def test_the_receipt_outbox_survives_a_restart_until_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "receipts-outbox.jsonl"
    outbox = ReceiptOutbox(path)
    first = outbox.add('{"state":"playing","title":"Bản tin"}'.encode())
    second = outbox.add(b'{"state":"done"}')
    outbox.remove(first)
    path.write_text(path.read_text(encoding="utf-8") + "damaged line\n", encoding="utf-8")
    again = ReceiptOutbox(path)
    assert again.pending() == [(second, b'{"state":"done"}')]
    assert again.add(b'{"state":"x"}') > second  # numbers keep increasing
    for n, _ in again.pending():
        again.remove(n)
    assert not path.exists() and len(ReceiptOutbox(path)) == 0


def test_quiet_hours_over_midnight() -> None:
    import datetime as dt

    quiet = QuietHours(start="21:30", end="05:30", volume=30)
    assert quiet.contains(dt.time(23, 0)) and quiet.contains(dt.time(2, 0))
    assert not quiet.contains(dt.time(12, 0)) and not quiet.contains(dt.time(5, 30))
    day = QuietHours(start="12:00", end="13:00", volume=30)
    assert day.contains(dt.time(12, 30)) and not day.contains(dt.time(13, 0))


def test_mqtt_urls() -> None:
    url = parse_mqtt_url("mqtt://loa%2D01:p%40ss%3Aw@broker.local:1884")
    assert (url.host, url.port, url.username, url.password, url.tls) == (
        "broker.local",
        1884,
        "loa-01",
        "p@ss:w",
        False,
    )
    assert parse_mqtt_url("mqtts://h").port == 8883 and parse_mqtt_url("mqtt://h").port == 1883
    assert "p@ss" not in url.redacted()
    for bad in ("http://h", "mqtt://", "mqtt://h:99999"):
        with pytest.raises(MqttUrlError):
            parse_mqtt_url(bad)


def test_the_agent_needs_nothing_of_the_controller() -> None:
    """``pip install .[agent]`` has no Flask: the agent's modules must not pull in the controller."""
    import subprocess
    import sys

    code = (
        "import sys, speakers.__main__, speakers.agent, speakers.simulator, speakers.player,"
        " speakers.service, speakers.checks, speakers.lookahead;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('broadcaster', 'flask', 'sqlalchemy', 'waitress', 'apscheduler', 'pydub', 'gtts'));"
        "print(','.join(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
