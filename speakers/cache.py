"""The node's audio cache and the chunked transfer of one file.

:class:`AudioCache` keeps verified audio files on disk, named by their sha256, bounded in size
with least-recently-used eviction. It survives restarts: the folder is the index. Files are
written to a temporary name, fsynced and renamed, so a power cut never leaves half a file under
a real name; leftovers are removed at start. A file is checked against its name before it is
played, so a file damaged on disk is dropped and fetched again instead of being played.

Several simulated nodes may share one blob pool (``pool``): each node keeps its own folder (its
own view of what it holds), but identical files are hard links to one copy.

:class:`Transfer` collects the chunks of one file as announced by an :class:`AudioRef`, checks
each chunk's sha256 and length, and assembles and checks the whole file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speakers.protocol import AudioRef, sha256_hex

_LOGGER = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^([0-9a-f]{64})\.([a-z0-9]{1,8})$")
_FORMAT_RE = re.compile(r"^[a-z0-9]{1,8}$")


class CacheError(Exception):
    """Audio that cannot be stored (wrong bytes, disk full)."""


@dataclass(frozen=True)
class CachedFile:
    audio_id: str
    path: Path
    size: int


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


class AudioCache:
    """Verified audio files ``<sha256>.<format>`` in ``directory``, at most ``max_bytes`` in total.

    ``pinned`` ids (queued or playing) are never evicted.
    """

    def __init__(self, directory: Path, max_bytes: int, *, pool: Path | None = None) -> None:
        self.directory = Path(directory)
        self.max_bytes = int(max_bytes)
        self.pool = Path(pool) if pool is not None else None
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.pool is not None:
            self.pool.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, CachedFile] = {}
        self._used: dict[str, float] = {}
        self._pinned: dict[str, int] = {}
        self._meta: dict[str, dict[str, Any]] = {}
        self._verified: set[str] = set()  # checked since this process started
        self._scan()

    def _scan(self) -> None:
        for entry in self.directory.iterdir():
            name = entry.name
            if name.startswith(".") and name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    entry.unlink()  # a write interrupted by a crash
                continue
            match = _NAME_RE.match(name)
            if not match or match.group(2) == "json" or not entry.is_file():
                continue
            st = entry.stat()
            audio_id = match.group(1)
            self._files[audio_id] = CachedFile(audio_id, entry, st.st_size)
            self._used[audio_id] = st.st_mtime

    # ------------------------------------------------------------------------ queries

    def has(self, audio_id: str) -> bool:
        return audio_id in self._files

    def get(self, audio_id: str) -> CachedFile | None:
        """The cached file (marked as recently used), or None."""
        found = self._files.get(audio_id)
        if found is None:
            return None
        if not found.path.exists():
            self._forget(audio_id)
            return None
        self._touch(audio_id)
        return found

    def verify(self, audio_id: str) -> bool:
        """Check the file's bytes against its name (once per process); a damaged file is removed."""
        found = self._files.get(audio_id)
        if found is None:
            return False
        if audio_id in self._verified:
            return True
        try:
            data = found.path.read_bytes()
        except OSError:
            data = b""
        if sha256_hex(data) == audio_id:
            self._verified.add(audio_id)
            return True
        _LOGGER.warning("cached audio %s is damaged on disk; removing it", audio_id[:12])
        self.remove(audio_id)
        return False

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self._files.values())

    def ids(self) -> list[str]:
        return sorted(self._files, key=lambda a: self._used.get(a, 0.0))

    def __len__(self) -> int:
        return len(self._files)

    # ----------------------------------------------------------------------- changes

    def put(self, audio_id: str, data: bytes, fmt: str = "mp3") -> CachedFile:
        """Store verified bytes (atomic write); raises CacheError if they are not ``audio_id``."""
        if sha256_hex(data) != audio_id:
            raise CacheError(f"bytes do not match audio id {audio_id[:12]}")
        if not _FORMAT_RE.match(fmt):
            fmt = "bin"
        existing = self._files.get(audio_id)
        if existing is not None and existing.path.exists():
            self._touch(audio_id)
            return existing
        self._make_room(len(data))
        path = self.directory / f"{audio_id}.{fmt}"
        try:
            if self.pool is not None:
                blob = self.pool / f"{audio_id}.{fmt}"
                if not blob.exists():
                    _atomic_write_bytes(blob, data)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                os.link(blob, tmp)
                os.replace(tmp, path)
            else:
                _atomic_write_bytes(path, data)
        except OSError as exc:
            raise CacheError(f"cannot store audio {audio_id[:12]}: {exc}") from exc
        cached = CachedFile(audio_id, path, len(data))
        self._files[audio_id] = cached
        self._verified.add(audio_id)
        self._touch(audio_id)
        return cached

    def remove(self, audio_id: str) -> None:
        found = self._files.get(audio_id)
        if found is not None:
            with contextlib.suppress(FileNotFoundError):
                found.path.unlink()
        self._forget(audio_id)

    def _forget(self, audio_id: str) -> None:
        self._verified.discard(audio_id)
        with contextlib.suppress(OSError):
            (self.directory / f"{audio_id}.json").unlink()
        self._files.pop(audio_id, None)
        self._used.pop(audio_id, None)
        self._meta.pop(audio_id, None)

    def _touch(self, audio_id: str) -> None:
        now = time.time()
        self._used[audio_id] = now
        found = self._files.get(audio_id)
        if found is not None:
            # The file's mtime is the LRU clock that survives a restart.
            with contextlib.suppress(OSError):
                os.utime(found.path, (now, now))

    def pin(self, audio_id: str) -> None:
        self._pinned[audio_id] = self._pinned.get(audio_id, 0) + 1

    def unpin(self, audio_id: str) -> None:
        count = self._pinned.get(audio_id, 0) - 1
        if count > 0:
            self._pinned[audio_id] = count
        else:
            self._pinned.pop(audio_id, None)

    def _make_room(self, incoming: int) -> None:
        total = self.total_bytes
        if total + incoming <= self.max_bytes:
            return
        for audio_id in sorted(self._files, key=lambda a: self._used.get(a, 0.0)):
            if total + incoming <= self.max_bytes:
                break
            if audio_id in self._pinned:
                continue
            total -= self._files[audio_id].size
            _LOGGER.info("cache full: evicting %s", audio_id[:12])
            self.remove(audio_id)
        if total + incoming > self.max_bytes:
            _LOGGER.warning(
                "cache over its limit (%s + %s > %s bytes) because of pinned audio",
                total,
                incoming,
                self.max_bytes,
            )

    # ------------------------------------------------------------------- measurements

    def meta(self, audio_id: str) -> dict[str, Any] | None:
        """Measurements stored next to the file (``<sha256>.json``), if any."""
        if audio_id in self._meta:
            return self._meta[audio_id]
        found = self._files.get(audio_id)
        if found is None:
            return None
        try:
            meta = json.loads((self.directory / f"{audio_id}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        self._meta[audio_id] = meta
        return meta

    def set_meta(self, audio_id: str, meta: dict[str, Any]) -> None:
        self._meta[audio_id] = meta
        with contextlib.suppress(OSError):
            _atomic_write_bytes(self.directory / f"{audio_id}.json", json.dumps(meta).encode("utf-8"))


class ChunkPool:
    """Shares identical verified chunk bytes between transfers (the simulator's many nodes)."""

    def __init__(self) -> None:
        self._chunks: dict[str, list[Any]] = {}

    def intern(self, chunk_hash: str, data: bytes) -> bytes:
        entry = self._chunks.get(chunk_hash)
        if entry is None:
            self._chunks[chunk_hash] = [data, 1]
            return data
        entry[1] += 1
        return entry[0]  # type: ignore[no-any-return]

    def release(self, chunk_hash: str) -> None:
        entry = self._chunks.get(chunk_hash)
        if entry is not None:
            entry[1] -= 1
            if entry[1] <= 0:
                del self._chunks[chunk_hash]

    def __len__(self) -> int:
        return len(self._chunks)


class Transfer:
    """The chunks received so far of the file described by ``ref``."""

    def __init__(self, ref: AudioRef, pool: ChunkPool | None = None) -> None:
        self.ref = ref
        self.pool = pool
        self._chunks: dict[int, bytes] = {}
        self.bad_chunks = 0
        self.duplicates = 0
        self.requests = 0
        self.last_progress = time.monotonic()

    @property
    def missing(self) -> list[int]:
        return [i for i in range(self.ref.chunk_count) if i not in self._chunks]

    @property
    def complete(self) -> bool:
        return len(self._chunks) == self.ref.chunk_count

    @property
    def received(self) -> int:
        return len(self._chunks)

    def add(self, index: int, data: bytes) -> bool:
        """Keep chunk ``index`` if its length and sha256 match the manifest; True if it was new."""
        if index in self._chunks:
            self.duplicates += 1
            return False
        if not self.ref.chunk_ok(index, data):
            self.bad_chunks += 1
            _LOGGER.warning(
                "chunk %s of %s failed verification; it will be asked again", index, self.ref.id[:12]
            )
            return False
        if self.pool is not None:
            data = self.pool.intern(self.ref.chunk_hashes[index], data)
        self._chunks[index] = data
        self.last_progress = time.monotonic()
        return True

    def assemble(self) -> bytes | None:
        """The whole file if every chunk is here and the file's sha256 matches; else None (and the
        chunks are dropped so they are fetched again)."""
        if not self.complete:
            return None
        data = b"".join(self._chunks[i] for i in range(self.ref.chunk_count))
        if len(data) == self.ref.size and sha256_hex(data) == self.ref.id:
            return data
        _LOGGER.warning("audio %s: chunks verified but the whole file did not; refetching", self.ref.id[:12])
        self.reset()
        self.bad_chunks += 1
        return None

    def reset(self) -> None:
        if self.pool is not None:
            for index in self._chunks:
                self.pool.release(self.ref.chunk_hashes[index])
        self._chunks.clear()

    def close(self) -> None:
        self.reset()
