"""Clusters keep working when the centre does not (docs/protocol.md section 11).

The controller keeps a retained ``lookahead`` for each node: its scheduled airings (slots) of the
next hours. The node fetches each slot's audio ahead, pins it in its cache, and keeps the last
lookahead on disk. When a slot's time comes:

* if the link to the broker is up, the node does nothing on its own: the controller's play
  command (which names the slot) rules;
* if the broker has been unreachable for ``offline_after_s``, the node airs the slot from its
  cache at ``max(start_at, outage start + offline_after_s)`` on its own clock estimate, until the
  slot's ``valid_until``; receipts say ``slot`` and ``offline: true`` and are kept on disk until
  the broker has them.

A slot is aired at most once: every slot that reached ``playing`` (offline, or through a play
command) is recorded on disk, and a later play command for it is answered with the recorded
receipts (under the command's broadcast id) instead of being played again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from speakers.cache import AudioCache
from speakers.clocksync import ClockSync
from speakers.config import AgentConfig
from speakers.fetcher import AudioFetcher, Holder
from speakers.playout import TERMINAL_STATES, Job, Playout
from speakers.protocol import AudioRef, Event, Lookahead, PlayCommand, ProtocolError, Slot, decode_lookahead

_LOGGER = logging.getLogger(__name__)

# A record of an aired slot is kept this long after the slot's start: longer than a lookahead's
# horizon (48 h) plus any valid_until, so a late play command for the slot is still recognised.
AIRED_KEEP_S = 4 * 86400
# Queue an offline slot this much before its start on top of the player's and amplifier's lead,
# so that it can start on the dot.
_QUEUE_MARGIN_S = 0.5


class _Link(Protocol):
    connected: asyncio.Event
    down_since: float | None


@dataclass
class Aired:
    """A slot that reached ``playing`` on this node, with the receipts it sent about it."""

    slot: str
    audio_id: str
    offline: bool
    state: str  # "playing", then the final state
    receipts: list[dict[str, Any]] = field(default_factory=list)
    started_at: float = 0.0

    def events(self) -> list[Event]:
        out = []
        for data in self.receipts:
            with contextlib.suppress(ProtocolError):
                out.append(Event.from_dict(data))
        return out


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class LookaheadKeeper:
    """The node's scheduled slots: held ahead, aired offline, never aired twice."""

    def __init__(
        self,
        name: str,
        config: AgentConfig,
        *,
        sync: ClockSync,
        link: _Link,
        cache: AudioCache,
        fetcher: AudioFetcher,
        playout: Playout,
        spawn: Callable[[Any, str], asyncio.Task[Any]],
    ) -> None:
        self.name = name
        self.config = config
        self.sync = sync
        self.link = link
        self.cache = cache
        self.fetcher = fetcher
        self.playout = playout
        self.spawn = spawn
        folder = config.cache_dir()
        self._lookahead_file = folder / "lookahead.json"
        self._aired_file = folder / "slots-aired.json"
        self.slots: dict[str, Slot] = {}
        self.generated_at: float | None = None
        self.aired: dict[str, Aired] = {}
        self.claims: dict[str, Job] = {}  # slot -> the job of the play command that names it
        self.offline_jobs: dict[str, Job] = {}  # slot -> the job airing it offline
        self.lapsed: set[str] = set()  # slots whose window passed without airing here
        self.pinned: set[str] = set()
        self._retry_at: dict[str, float] = {}  # audio id -> monotonic time of the next fetch
        self._payload: bytes | None = None
        self.wake = asyncio.Event()
        playout.watch(self)
        if config.lookahead.enabled:
            self._load()

    # ---------------------------------------------------------------------- persistence

    def _load(self) -> None:
        if self._lookahead_file.exists():
            try:
                payload = self._lookahead_file.read_bytes()
                self._set(decode_lookahead(payload), payload)
            except (OSError, ProtocolError) as exc:
                _LOGGER.warning("%s: ignoring the saved lookahead: %s", self.name, exc)
        if self._aired_file.exists():
            try:
                data = json.loads(self._aired_file.read_text(encoding="utf-8"))
                self.aired = {k: Aired(**v) for k, v in data.items()}
            except (OSError, ValueError, TypeError, AttributeError) as exc:
                _LOGGER.warning("%s: ignoring the saved record of aired slots: %s", self.name, exc)
        for record in self.aired.values():
            if record.state == "playing":
                self._interrupted(record)

    def _interrupted(self, record: Aired) -> None:
        """A slot was playing when the agent died (power cut): it counts as aired, and gets the
        final receipt it never sent."""
        record.state = "stopped"
        events = record.events()
        if not events:
            return
        final = dataclasses.replace(
            events[0], state="stopped", ts=self.sync.controller_now(), reason="agent restarted while airing"
        )
        record.receipts.append(final.to_dict())
        self.playout.receipts.send(final, persist=True)
        self._save_aired()

    def _save_aired(self) -> None:
        horizon = self.sync.controller_now() - AIRED_KEEP_S
        self.aired = {k: r for k, r in self.aired.items() if r.started_at >= horizon}
        data = {k: dataclasses.asdict(r) for k, r in self.aired.items()}
        try:
            _atomic_write(self._aired_file, json.dumps(data, ensure_ascii=False).encode("utf-8"))
        except OSError as exc:
            _LOGGER.error("%s: cannot save the record of aired slots: %s", self.name, exc)

    # ------------------------------------------------------------------------- messages

    def on_message(self, payload: bytes) -> None:
        """A (retained) lookahead arrived. Raises ProtocolError when malformed (the previous one
        is kept)."""
        if payload == self._payload:
            return  # the retained message again, at a reconnect
        lookahead = decode_lookahead(payload)
        self._set(lookahead, payload)
        try:
            _atomic_write(self._lookahead_file, payload)
        except OSError as exc:
            _LOGGER.error("%s: cannot save the lookahead: %s", self.name, exc)
        _LOGGER.info("%s: lookahead with %d slot(s)", self.name, len(self.slots))
        self.refresh()

    def _set(self, lookahead: Lookahead, payload: bytes) -> None:
        self._payload = payload
        self.generated_at = lookahead.generated_at
        self.slots = {s.slot: s for s in lookahead.slots}
        for key in [
            k for k, job in self.claims.items() if k not in self.slots and not self.playout.active(job)
        ]:
            del self.claims[key]

    # --------------------------------------------------------------------- audio ahead

    def _deadline(self, slot: Slot) -> float:
        if slot.valid_until is not None:
            return slot.valid_until
        return slot.start_at + self.config.player.max_late_s

    def _pending(self) -> list[Slot]:
        """Slots that may still have to be aired here."""
        now = self.sync.controller_now()
        return [
            s
            for s in self.slots.values()
            if s.slot not in self.aired and s.slot not in self.lapsed and now <= self._deadline(s)
        ]

    def refresh(self) -> None:
        """Pin the audio of pending slots (unpin the rest); fetch what is missing while online."""
        pending = self._pending()
        wanted = {s.audio.id: s.audio for s in pending}
        for audio_id in self.pinned - wanted.keys():
            self.cache.unpin(audio_id)
        for audio_id in wanted.keys() - self.pinned:
            self.cache.pin(audio_id)
        self.pinned = set(wanted)
        if self.link.connected.is_set():
            now = time.monotonic()
            for ref in wanted.values():
                if self._retry_at.get(ref.id, 0.0) <= now:
                    self._get(ref, pending)
        self.wake.set()

    def _get(self, ref: AudioRef, pending: list[Slot]) -> None:
        if self.fetcher.fetching(ref.id) or (self.cache.has(ref.id) and self.cache.verify(ref.id)):
            return
        slots = [s for s in pending if s.audio.id == ref.id]
        self._retry_at.pop(ref.id, None)  # set again if this attempt fails

        def give_up(state: str, reason: str) -> None:
            _LOGGER.warning(
                "%s: could not fetch the audio of slot %s ahead: %s", self.name, slots[0].slot, reason
            )
            self._retry_at[ref.id] = time.monotonic() + self.config.lookahead.refetch_s
            self.wake.set()

        def ready() -> None:
            _LOGGER.info("%s: audio of slot %s held ahead", self.name, slots[0].slot)

        self.fetcher.fetch(
            ref,
            Holder(
                key=f"lookahead:{ref.id}",
                valid_until=max(s.start_at for s in slots),
                ready=ready,
                give_up=give_up,
                alive=lambda: ref.id in self.pinned,
                request={"slot": slots[0].slot},
            ),
        )

    # ------------------------------------------------------------------- offline airing

    async def run(self) -> None:
        """Decide, slot by slot, whether the node airs it on its own."""
        self.refresh()  # pin the audio of a lookahead loaded from disk
        while True:
            self.wake.clear()
            delay = self._tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), delay)

    def _tick(self) -> float | None:
        """Queue the offline airings that are due; return seconds until the next decision."""
        connected = self.link.connected.is_set()
        mono = time.monotonic()
        waits: list[float] = []
        if connected:
            if any(t <= mono for t in self._retry_at.values()):
                self.refresh()
            waits += [t - mono for t in self._retry_at.values() if t > mono]
        now = self.sync.controller_now()
        lead = max(self.config.player.prepare_lead_s, self.config.amplifier.lead_s) + _QUEUE_MARGIN_S
        down_since = self.link.down_since if self.link.down_since is not None else mono
        offline_from = now - (mono - down_since) + self.config.lookahead.offline_after_s
        for slot in sorted(self.slots.values(), key=lambda s: s.start_at):
            key = slot.slot
            if key in self.aired or key in self.claims or key in self.offline_jobs or key in self.lapsed:
                continue
            deadline = self._deadline(slot)
            if now > deadline:
                self.lapsed.add(key)
                self.refresh()
                continue
            if connected:
                continue  # the controller's play command rules; decided again if the link drops
            start = max(slot.start_at, offline_from)
            if start > deadline:
                waits.append(deadline - now)
            elif start - now <= lead:
                self._air(slot, start, deadline)
            else:
                waits.append(start - now - lead)
        return max(0.01, min(waits)) if waits else None

    def _air(self, slot: Slot, start: float, deadline: float) -> None:
        cmd = PlayCommand(
            broadcast_id=f"slot:{slot.slot}",
            audio=slot.audio,
            start_at=start,
            tier=slot.tier,
            volume=slot.volume,
            valid_until=deadline,
            title=slot.title,
            slot=slot.slot,
        )
        job = Job(cmd=cmd, seq=self.playout.next_seq(), valid_until=deadline, offline=True)
        if not (self.cache.has(slot.audio.id) and self.cache.verify(slot.audio.id)):
            self.lapsed.add(slot.slot)
            if self.playout.add(job):
                self.playout.finish(
                    job, "failed", reason="broker unreachable and the audio is not in the cache"
                )
            _LOGGER.error("%s: slot %s due offline but its audio was never fetched", self.name, slot.slot)
            return
        _LOGGER.warning(
            "%s: broker unreachable; airing slot %s (%s) from the cache on the node's own clock",
            self.name,
            slot.slot,
            slot.title,
        )
        self.offline_jobs[slot.slot] = job
        if self.playout.add(job):
            self.spawn(self.playout.ready(job), f"ready-{job.key}")

    # --------------------------------------------------------------- playout watcher

    def may_start(self, job: Job) -> bool:
        if job.offline and self.offline_jobs.get(job.slot or "") is job and self.link.connected.is_set():
            # The broker is back before the start: the controller's play command rules.
            _LOGGER.info("%s: link back before slot %s; leaving it to the controller", self.name, job.slot)
            del self.offline_jobs[job.slot or ""]
            self.playout.drop(job, "link back before the offline start")
            self.wake.set()
            return False
        return True

    def on_receipt(self, job: Job, event: Event) -> None:
        slot = job.slot
        if slot is None:
            return
        if event.state == "playing":
            self.aired[slot] = Aired(
                slot,
                job.cmd.audio.id,
                job.offline,
                "playing",
                [event.to_dict()],
                event.started_at or event.ts,
            )
            self._save_aired()
            self.refresh()
        elif event.state in TERMINAL_STATES:
            record = self.aired.get(slot)
            if record is not None and record.state == "playing":
                record.state = event.state
                record.receipts.append(event.to_dict())
                self._save_aired()
            if self.offline_jobs.get(slot) is job:
                del self.offline_jobs[slot]

    # ------------------------------------------------------------ play commands for slots

    def claim(self, job: Job) -> None:
        """A play command for ``job.slot`` is now the one that airs it."""
        if job.slot is not None:
            self.claims[job.slot] = job

    def answer_play(self, cmd: PlayCommand) -> bool:
        """A play command names a slot. True when it was answered here (the slot was or is being
        aired: the receipts go out under the command's broadcast id, nothing plays again)."""
        slot = cmd.slot or ""
        live = self.offline_jobs.get(slot) or self.claims.get(slot)
        if live is not None and not self.playout.active(live):
            live = None
        if live is not None:
            if live.key == cmd.broadcast_id:
                return False  # a redelivery of the claiming play: the usual duplicate rules
            if live.offline and live.started_at is None:
                # Queued offline and the controller's play arrives first: the play rules.
                del self.offline_jobs[slot]
                self.playout.drop(live, "the controller's play command arrived")
                return False
            if cmd.broadcast_id not in live.aliases:
                live.aliases.append(cmd.broadcast_id)
            if live.last_event is not None:
                self.playout.receipts.send(
                    dataclasses.replace(live.last_event, broadcast_id=cmd.broadcast_id), count=False
                )
            return True
        record = self.aired.get(slot)
        if record is None:
            return False
        _LOGGER.info(
            "%s: slot %s already aired; answering %s with its receipts", self.name, slot, cmd.broadcast_id
        )
        for event in record.events():
            self.playout.receipts.send(dataclasses.replace(event, broadcast_id=cmd.broadcast_id), count=False)
        return True

    # --------------------------------------------------------------------------- views

    def snapshot(self) -> dict[str, Any]:
        return {
            "slots": sorted(self.slots),
            "aired": {k: r.state for k, r in self.aired.items()},
            "offline": sorted(self.offline_jobs),
            "lapsed": sorted(self.lapsed),
            "pinned": sorted(self.pinned),
        }
