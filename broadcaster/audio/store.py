"""The content-addressed audio store: ``<root>/<key>.mp3`` and its ``<key>.json`` sidecar.

* The key (an ``AudioKey``) is the sha256 of what was rendered (engine, voice, normalized text,
  render settings); the sidecar's ``sha256`` is the hash of the MP3 bytes, which is the audio
  id on the wire.
* Writes are atomic: a temporary file in the same folder, fsync, ``os.replace``; the sidecar is
  written last, so a key exists only once both files are complete. A crash leaves at worst a
  ``*.tmp`` file, removed on the next start.
* Concurrent ``get_or_create`` calls for one key build once: a per-key lock in the process plus
  an ``flock`` on a lock file shared by all processes (256 lock files, by the key's first byte).
* Size bound with least-recently-used eviction: a hit touches the MP3's mtime; beyond
  ``max_bytes`` the oldest unpinned audio goes first. Pins (``<key>.pin``, one line per owner)
  keep the audio of scheduled bulletins rendered ahead.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_LOGGER = logging.getLogger(__name__)

_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
STALE_TMP_S = 3600  # a temporary file this old belongs to a crashed writer


class StoreError(Exception):
    """Bad key or an unusable store folder."""


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise StoreError(f"not an audio key: {key!r}")
    return key


class AudioStore:
    """Thread-safe and multi-process-safe store of rendered audio."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / ".locks").mkdir(exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the audio store at {self.root}: {exc}") from exc
        self._guard = threading.Lock()
        self._key_locks: dict[str, list[Any]] = {}  # key -> [lock, users]
        self._evict_lock = threading.Lock()
        self._remove_stale_tmp()

    # --- paths -----------------------------------------------------------------------------

    def path(self, key: str) -> Path:
        return self.root / f"{_check_key(key)}.mp3"

    def meta_path(self, key: str) -> Path:
        return self.root / f"{_check_key(key)}.json"

    def _pin_path(self, key: str) -> Path:
        return self.root / f"{_check_key(key)}.pin"

    # --- reading ---------------------------------------------------------------------------

    def has(self, key: str) -> bool:
        return self.meta_path(key).is_file() and self.path(key).is_file()

    def meta(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.meta_path(key).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            _LOGGER.warning("unreadable sidecar %s: %s", self.meta_path(key), exc)
            return None

    def read_bytes(self, key: str) -> bytes:
        """The MP3 bytes; KeyError when the key is not (or no longer) stored."""
        try:
            data = self.path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None
        self.touch(key)
        return data

    def touch(self, key: str) -> None:
        """Mark as recently used (LRU bookkeeping on the MP3's mtime)."""
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.path(key))

    def keys(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.json") if _KEY_RE.match(p.stem))

    # --- writing ---------------------------------------------------------------------------

    def get_or_create(
        self, key: str, build: Callable[[], tuple[bytes, dict[str, Any]]]
    ) -> tuple[Path, dict[str, Any], bool]:
        """Return ``(path, meta, hit)``. On a miss ``build()`` returns the MP3 bytes and the
        sidecar fields; ``sha256``, ``size``, ``key`` and ``created`` are added here. Whatever
        ``build`` raises propagates and nothing is stored."""
        _check_key(key)
        found = self._hit(key)
        if found is not None:
            return found
        with self._locked(key):
            found = self._hit(key)
            if found is not None:
                return found
            data, fields = build()
            if not isinstance(data, bytes | bytearray) or not data:
                raise StoreError("build() returned no audio")
            meta = {
                **fields,
                "key": key,
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            self._atomic_write(self.path(key), bytes(data))
            self._atomic_write(
                self.meta_path(key), json.dumps(meta, ensure_ascii=False, indent=1).encode("utf-8")
            )
            self._fsync_dir()
        self.evict(keep=key)
        return self.path(key), meta, False

    def _hit(self, key: str) -> tuple[Path, dict[str, Any], bool] | None:
        if not self.has(key):
            return None
        meta = self.meta(key)
        if meta is None:
            return None
        self.touch(key)
        return self.path(key), meta, True

    def delete(self, key: str) -> None:
        for path in (self.meta_path(key), self.path(key), self._pin_path(key)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        with self._guard:
            entry = self._key_locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                lock_file = self.root / ".locks" / f"{key[:2]}.lock"
                with open(lock_file, "a+b") as handle:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                    try:
                        yield
                    finally:
                        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    self._key_locks.pop(key, None)

    def _atomic_write(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _fsync_dir(self) -> None:
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _remove_stale_tmp(self) -> None:
        now = time.time()
        for tmp in self.root.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime > STALE_TMP_S:
                    tmp.unlink()

    # --- pins and eviction ------------------------------------------------------------------

    def pin(self, key: str, owner: str = "") -> None:
        """Keep ``key`` out of eviction until every owner unpins it (e.g. owner "schedule:12")."""
        with self._locked(key):
            owners = self.pins(key)
            if owner not in owners:
                owners.append(owner)
            self._atomic_write(self._pin_path(key), ("\n".join(owners) + "\n").encode("utf-8"))

    def unpin(self, key: str, owner: str = "") -> None:
        with self._locked(key):
            owners = [o for o in self.pins(key) if o != owner]
            if owners:
                self._atomic_write(self._pin_path(key), ("\n".join(owners) + "\n").encode("utf-8"))
            else:
                with contextlib.suppress(FileNotFoundError):
                    self._pin_path(key).unlink()

    def pins(self, key: str) -> list[str]:
        try:
            text = self._pin_path(key).read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")

    def is_pinned(self, key: str) -> bool:
        return self._pin_path(key).exists()

    def total_bytes(self) -> int:
        total = 0
        for entry in os.scandir(self.root):
            if entry.is_file() and entry.name.endswith((".mp3", ".json")):
                with contextlib.suppress(FileNotFoundError):
                    total += entry.stat().st_size
        return total

    def evict(self, keep: str | None = None) -> list[str]:
        """Remove least recently used unpinned audio until the store fits ``max_bytes``."""
        with self._evict_lock:
            entries: list[tuple[float, str, int]] = []
            total = 0
            for entry in os.scandir(self.root):
                name = entry.name
                if not entry.is_file() or not name.endswith((".mp3", ".json")):
                    continue
                try:
                    stat = entry.stat()
                except FileNotFoundError:
                    continue
                total += stat.st_size
                key = name.rsplit(".", 1)[0]
                if name.endswith(".mp3") and _KEY_RE.match(key):
                    sidecar = self.root / f"{key}.json"
                    size = stat.st_size + (sidecar.stat().st_size if sidecar.exists() else 0)
                    entries.append((stat.st_mtime, key, size))
            evicted: list[str] = []
            if total <= self.max_bytes:
                return evicted
            for _mtime, key, size in sorted(entries):
                if total <= self.max_bytes:
                    break
                if key == keep or self.is_pinned(key):
                    continue
                self.delete(key)
                total -= size
                evicted.append(key)
            if evicted:
                _LOGGER.info("audio store over %d bytes: evicted %d file(s)", self.max_bytes, len(evicted))
            if total > self.max_bytes:
                _LOGGER.warning(
                    "audio store holds %d bytes of pinned/fresh audio, over its %d", total, self.max_bytes
                )
            return evicted
