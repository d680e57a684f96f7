"""The content-addressed store: sidecars, atomic writes, build-once under concurrency (threads and
processes), LRU eviction, pins."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from broadcaster.audio.store import AudioStore, StoreError


def key_of(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def wait_until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def files(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_file())


def test_miss_builds_and_writes_mp3_and_sidecar(tmp_path: Path) -> None:
    store = AudioStore(tmp_path, max_bytes=10_000)
    key = key_of("a")
    path, meta, hit = store.get_or_create(key, lambda: (b"ID3audio", {"text": "Thông báo", "engine": "x"}))
    assert not hit
    assert path == tmp_path / f"{key}.mp3" and path.read_bytes() == b"ID3audio"
    sidecar = json.loads((tmp_path / f"{key}.json").read_text(encoding="utf-8"))
    assert sidecar == meta
    assert sidecar["text"] == "Thông báo"  # UTF-8, not \\u escapes
    assert "Thông báo" in (tmp_path / f"{key}.json").read_text(encoding="utf-8")
    assert sidecar["sha256"] == hashlib.sha256(b"ID3audio").hexdigest()
    assert sidecar["size"] == 8 and sidecar["key"] == key and sidecar["created"].endswith("+00:00")
    assert store.has(key) and store.read_bytes(key) == b"ID3audio" and store.meta(key) == meta
    assert store.keys() == [key]


def test_hit_does_not_build(tmp_path: Path) -> None:
    store = AudioStore(tmp_path, max_bytes=10_000)
    key = key_of("a")
    store.get_or_create(key, lambda: (b"one", {}))

    def boom() -> tuple[bytes, dict]:
        raise AssertionError("built twice")

    path, meta, hit = store.get_or_create(key, boom)
    assert hit and path.read_bytes() == b"one" and meta["size"] == 3


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    store = AudioStore(tmp_path, max_bytes=10_000)
    key = key_of("a")

    def fails() -> tuple[bytes, dict]:
        raise RuntimeError("engine died")

    with pytest.raises(RuntimeError, match="engine died"):
        store.get_or_create(key, fails)
    assert not store.has(key)
    assert files(tmp_path) == []
    _, _, hit = store.get_or_create(key, lambda: (b"ok", {}))
    assert not hit


def test_interrupted_write_leaves_no_partial_file(tmp_path: Path) -> None:
    """A write that dies half-way (here: the bytes cannot be written) leaves neither the target
    nor its temporary file."""
    store = AudioStore(tmp_path, max_bytes=10_000)
    key = key_of("a")

    with pytest.raises(TypeError):
        store._atomic_write(store.path(key), "not bytes")  # type: ignore[arg-type]
    assert files(tmp_path) == []
    assert not store.has(key)


def test_stale_temporary_files_are_cleaned_at_start(tmp_path: Path) -> None:
    stale = tmp_path / ".abc.mp3.x1.tmp"
    fresh = tmp_path / ".abc.mp3.x2.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    AudioStore(tmp_path, max_bytes=10_000)
    assert not stale.exists() and fresh.exists()


def test_bad_keys_are_refused(tmp_path: Path) -> None:
    store = AudioStore(tmp_path, max_bytes=10_000)
    for bad in ["../../etc/passwd", "ABC", key_of("a").upper(), ""]:
        with pytest.raises(StoreError):
            store.path(bad)
    with pytest.raises(KeyError):
        store.read_bytes(key_of("missing"))
    assert store.meta(key_of("missing")) is None


def test_concurrent_callers_of_one_key_build_once(tmp_path: Path) -> None:
    store = AudioStore(tmp_path, max_bytes=10_000)
    key = key_of("same")
    gate = threading.Event()
    builds: list[int] = []
    results: list[tuple[Path, dict, bool]] = []

    def build() -> tuple[bytes, dict]:
        builds.append(1)
        assert gate.wait(10)
        return b"audio", {}

    def worker() -> None:
        results.append(store.get_or_create(key, build))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    # Every caller is inside get_or_create, contending for the key, before the build ends.
    wait_until(lambda: key in store._key_locks and store._key_locks[key][1] == 6)
    gate.set()
    for t in threads:
        t.join(10)
    assert len(builds) == 1
    assert sorted(hit for _, _, hit in results) == [False, True, True, True, True, True]
    assert key not in store._key_locks


def test_other_keys_are_not_blocked_by_a_slow_build(tmp_path: Path) -> None:
    store = AudioStore(tmp_path, max_bytes=10_000)
    gate = threading.Event()
    slow_key = "00" + key_of("slow")[2:]
    fast_key = "ff" + key_of("fast")[2:]  # another lock file (first byte differs)
    slow = threading.Thread(target=store.get_or_create, args=(slow_key, lambda: (gate.wait(10) and b"s", {})))
    slow.start()
    wait_until(lambda: slow_key in store._key_locks)
    _, _, hit = store.get_or_create(fast_key, lambda: (b"f", {}))
    assert not hit and store.has(fast_key) and not store.has(slow_key)
    gate.set()
    slow.join(10)
    assert store.has(slow_key)


_CHILD = """
import sys
from pathlib import Path
from broadcaster.audio.store import AudioStore
store = AudioStore(Path(sys.argv[1]), 10_000)
def build():
    Path(sys.argv[1], "child-built").write_text("yes")
    return b"child", {}
path, meta, hit = store.get_or_create(sys.argv[2], build)
print("hit" if hit else "miss", path.read_bytes().decode())
"""


def _waits_on_flock(pid: int) -> bool:
    """/proc/locks lists a blocked flock() as "N: -> FLOCK ADVISORY WRITE <pid> ..."."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and "FLOCK" in fields and str(pid) in fields:
            return True
    return False


def test_another_process_waits_for_the_build_and_then_hits(tmp_path: Path) -> None:
    store = AudioStore(tmp_path, max_bytes=10_000)
    key = key_of("shared")
    gate = threading.Event()
    inside = threading.Event()

    def build() -> tuple[bytes, dict]:
        inside.set()
        assert gate.wait(30)
        return b"parent", {}

    builder = threading.Thread(target=store.get_or_create, args=(key, build))
    builder.start()
    assert inside.wait(10)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path), key],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        # The child blocks on the lock file (visible in /proc/locks as a waiter).
        wait_until(lambda: _waits_on_flock(child.pid) or child.poll() is not None, timeout=30)
        assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
        gate.set()
        out, err = child.communicate(timeout=30)
    finally:
        gate.set()
        builder.join(10)
    assert out.decode().split() == ["hit", "parent"], err.decode()
    assert not (tmp_path / "child-built").exists()


def _put(store: AudioStore, name: str, size: int, age_s: float) -> str:
    key = key_of(name)
    store.get_or_create(key, lambda: (b"x" * size, {"name": name}))
    then = time.time() - age_s
    os.utime(store.path(key), (then, then))
    return key


def test_lru_eviction_keeps_recently_used(tmp_path: Path) -> None:
    store = AudioStore(tmp_path, max_bytes=1_000_000)
    a = _put(store, "a", 3000, age_s=300)
    b = _put(store, "b", 3000, age_s=200)
    c = _put(store, "c", 3000, age_s=100)
    sidecar = store.meta_path(a).stat().st_size
    store.max_bytes = 3 * 3000 + 3 * sidecar + 3000  # room for one more entry, not two
    store.get_or_create(a, lambda: (b"", {}))  # a hit makes "a" the most recently used
    d = _put(store, "d", 3000, age_s=0)
    assert store.has(a) and store.has(c) and store.has(d)
    assert not store.has(b)  # the least recently used went
    assert not store.path(b).exists() and not store.meta_path(b).exists()
    e = _put(store, "e", 3000, age_s=0)
    assert not store.has(c) and store.has(e)
    assert store.total_bytes() <= store.max_bytes


def test_read_bytes_counts_as_use(tmp_path: Path) -> None:
    store = AudioStore(tmp_path, max_bytes=1_000_000)
    a = _put(store, "a", 3000, age_s=300)
    b = _put(store, "b", 3000, age_s=200)
    store.read_bytes(a)
    store.max_bytes = store.total_bytes() + 100
    _put(store, "c", 3000, age_s=0)
    assert store.has(a) and not store.has(b)


def test_pinned_audio_is_never_evicted(tmp_path: Path) -> None:
    store = AudioStore(tmp_path, max_bytes=1_000_000)
    a = _put(store, "a", 3000, age_s=300)
    b = _put(store, "b", 3000, age_s=200)
    store.pin(a, "schedule:1")
    store.pin(a, "schedule:2")
    store.max_bytes = 4000  # only room for one
    c = _put(store, "c", 3000, age_s=0)
    assert store.has(a) and store.has(c) and not store.has(b)  # over the bound, but a is pinned
    store.unpin(a, "schedule:1")
    assert store.is_pinned(a) and store.pins(a) == ["schedule:2"]
    assert store.evict(keep=c) == []
    assert store.has(a)
    store.unpin(a, "schedule:2")
    assert not store.is_pinned(a)
    assert store.evict(keep=c) == [a]
    assert store.has(c) and not store.has(a)


def test_the_fresh_entry_survives_even_when_alone_over_the_bound(tmp_path: Path) -> None:
    store = AudioStore(tmp_path, max_bytes=100)
    key = _put(store, "big", 5000, age_s=0)
    assert store.has(key)
