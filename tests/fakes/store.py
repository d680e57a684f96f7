"""The audio store (AudioStorePort, and the parts of ``AudioStore`` the speech pipeline uses) kept
in memory: ``path`` points into ``root`` but nothing is written. ``put`` stores audio directly,
for tests of code that only sends stored audio."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


class MemoryStore:
    def __init__(self, root: Path = Path("/nonexistent-audio-store"), max_bytes: int = 1 << 40) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._data: dict[str, bytes] = {}
        self._meta: dict[str, dict[str, Any]] = {}
        self.pinned: dict[str, set[str]] = {}  # key -> owners
        self._lock = threading.Lock()
        self.builds = 0

    def put(self, key: str, data: bytes, meta: dict[str, Any] | None = None) -> dict[str, Any]:
        full = {**(meta or {}), "key": key, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        with self._lock:
            self._data[key], self._meta[key] = data, full
        return full

    def has(self, key: str) -> bool:
        return key in self._data

    def keys(self) -> set[str]:
        with self._lock:
            return set(self._data)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.mp3"

    def read_bytes(self, key: str) -> bytes:
        return self._data[key]

    def meta(self, key: str) -> dict[str, Any] | None:
        return self._meta.get(key)

    def touch(self, key: str) -> None:
        pass

    def get_or_create(
        self, key: str, build: Callable[[], tuple[bytes, dict[str, Any]]]
    ) -> tuple[Path, dict[str, Any], bool]:
        with self._lock:
            if key in self._data:
                return self.path(key), self._meta[key], True
            data, fields = build()
            self.builds += 1
        return self.path(key), self.put(key, data, fields), False

    def pin(self, key: str, owner: str = "") -> None:
        with self._lock:
            self.pinned.setdefault(key, set()).add(owner)

    def unpin(self, key: str, owner: str = "") -> None:
        with self._lock:
            self.pinned.setdefault(key, set()).discard(owner)

    def pins(self, key: str) -> list[str]:
        with self._lock:
            return sorted(self.pinned.get(key, set()))

    def is_pinned(self, key: str) -> bool:
        return bool(self.pinned.get(key))

    def total_bytes(self) -> int:
        return sum(len(d) for d in self._data.values())
