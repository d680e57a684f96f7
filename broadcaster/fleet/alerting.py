"""Which alerts a cluster should have, from its live state; the record sent to alert listeners.

Pure: no database, no threads. The fleet worker keeps one :class:`LiveState` per cluster, feeds it
every status, health report and receipt (``note_health``, ``note_receipt``), and asks
:func:`evaluate` for the alert changes; it writes them and then tells the alert listeners (the
notifier) with one :class:`AlertChange` per raised or resolved alert.

Kinds:

- ``offline``: the retained status says offline (the last will), or the cluster was never heard of;
- ``stale``: nothing received for ``stale_factor`` health intervals;
- ``amplifier``: a report taken while playing says the amplifier is off;
- ``error``: the cluster reports an error;
- ``backup_power``: the cluster runs on its backup battery (``on_backup``);
- ``low_voltage``: ``supply_v`` below ``thresholds.supply_v_min`` (clears above it plus a margin);
- ``no_sound``: a report taken while playing measures the output below ``output_dbfs_min``, or a
  ``done`` receipt reports a level below ``receipt_rms_dbfs_min``; it clears only when sound is
  heard again (a loud report while playing or a loud receipt), never because playback ended;
- ``disk_low``: ``disk_free_bytes`` below ``disk_free_min_bytes`` (clears above 1.1 times it).

One kind is about no cluster but the controller itself (``sources.py``): ``source_stalled``, a relay
source that went silent and is being reconnected (its alert row has no ``speaker_id``).

The alerts judged from health hold while the cluster is offline: nothing is known about them then,
and a "resolved" message because the battery ran flat would be a lie. A field the cluster does not
report (``None``) holds its alert the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from broadcaster.fleet.config import AlertThresholds, FleetConfig
from speakers.protocol import Event

ALERT_MESSAGES = {
    "offline": "Cụm loa mất kết nối",
    "never": "Cụm loa chưa kết nối từ khi bộ điều khiển khởi động",
    "stale": "Cụm loa không gửi tình trạng quá {s:.0f} giây",
    "amplifier": "Âm ly đang tắt trong khi cụm loa phát bản tin",
    "error": "Lỗi báo từ cụm loa: {e}",
    "backup_power": "Cụm loa đang chạy bằng nguồn dự phòng (mất điện lưới)",
    "low_voltage": "Điện áp nguồn thấp: {v} V (ngưỡng {min} V)",
    "no_sound": "Cụm loa không phát ra tiếng khi đang phát bản tin",
    "disk_low": "Bộ nhớ cụm loa sắp đầy: chỉ còn trống {free}",
    "source_stalled": "Nguồn tiếp sóng «{name}» mất tín hiệu ({detail}); đang kết nối lại",
}
SOURCE_STALLED = "source_stalled"

# Short names of the kinds, for subjects and digests (what an officer reads).
ALERT_KIND_LABELS = {
    "offline": "Mất kết nối",
    "stale": "Lâu không báo cáo",
    "amplifier": "Âm ly tắt",
    "error": "Lỗi",
    "backup_power": "Chạy nguồn dự phòng",
    "low_voltage": "Điện áp thấp",
    "no_sound": "Không có tiếng",
    "disk_low": "Bộ nhớ sắp đầy",
}

ALERT_KINDS = tuple(ALERT_KIND_LABELS)  # a cluster's kinds
# Controller-level kinds (no cluster): their subject is a relay source.
SOURCE_ALERT_KINDS = frozenset({SOURCE_STALLED})
ALERT_KIND_LABELS[SOURCE_STALLED] = "Nguồn tiếp sóng mất tín hiệu"
# Judged from the cluster's own reports: held while it is offline.
_HEALTH_KINDS = {"amplifier", "error", "backup_power", "low_voltage", "no_sound", "disk_low"}
# A new text for these is a new alert (another error); the others keep the text they were raised with
# (a voltage reading changes with every report and must not raise and clear the alert each time).
_NEW_TEXT_IS_NEW_ALERT = {"offline", "stale", "amplifier", "error"}
# The disk-low alert clears only above this multiple of the threshold (no flapping).
_DISK_CLEAR_FACTOR = 1.1

AlertOp = tuple[str, str, str, bool]  # (speaker, kind, message, raise?)


@dataclass(frozen=True)
class AlertChange:
    """One alert raised or resolved, as committed to the ``alerts`` table (``alert_id``).

    ``raised_at`` is when the alert was raised (for a resolved one too); ``cleared_at`` is set on a
    resolved one. ``speaker_name``, ``zone`` (id) and ``zone_name`` come from the registry (None for a
    cluster that is not registered)."""

    state: Literal["raised", "resolved"]
    alert_id: int | None
    speaker: str
    kind: str
    message: str
    raised_at: datetime
    cleared_at: datetime | None = None
    speaker_name: str | None = None
    zone: str | None = None
    zone_name: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.speaker, self.kind)


@dataclass
class LiveState:
    """What the fleet knows of one cluster right now."""

    status_online: bool | None = None  # None: no status seen yet
    status_at: float | None = None
    last_seen: float | None = None
    health: dict[str, Any] | None = None
    health_at: float | None = None
    playing: str | None = None  # broadcast id (str, as on the wire)
    zone_reported: str | None = None
    stale: bool = False
    silent: bool | None = None  # no_sound: None unknown, True silent, False sound heard
    alerts: dict[str, tuple[int | None, str]] = field(default_factory=dict)  # kind -> (alert id, message)

    def online(self) -> bool:
        return bool(self.status_online) and not self.stale


def note_health(live: LiveState, data: dict[str, Any], thresholds: AlertThresholds) -> None:
    """A health report arrived (``data`` already stored in ``live.health``): judge the output level."""
    level = data.get("output_dbfs")
    if thresholds.output_dbfs_min is None or level is None or not data.get("playing"):
        return
    if data.get("volume") == 0:
        return  # silence an officer chose
    live.silent = level < thresholds.output_dbfs_min


def note_receipt(live: LiveState, event: Event, thresholds: AlertThresholds) -> None:
    """A receipt arrived: a ``done`` one carries the level that was played."""
    if event.state != "done" or event.rms_dbfs is None or thresholds.receipt_rms_dbfs_min is None:
        return
    if live.health is not None and live.health.get("volume") == 0:
        return
    live.silent = event.rms_dbfs < thresholds.receipt_rms_dbfs_min


def evaluate(speaker: str, live: LiveState, config: FleetConfig) -> list[AlertOp]:
    """The alert changes that bring ``live.alerts`` to what the state calls for (and apply them to
    ``live.alerts``; the alert ids are filled in once written)."""
    want = _wanted(live, config)
    ops: list[AlertOp] = []
    for kind in ALERT_KINDS:
        current = live.alerts.get(kind)
        wanted = want.get(kind)
        if wanted is not None and current is None:
            live.alerts[kind] = (None, wanted)
            ops.append((speaker, kind, wanted, True))
        elif wanted is not None and current is not None and current[1] != wanted:
            if kind not in _NEW_TEXT_IS_NEW_ALERT:
                continue
            ops.append((speaker, kind, current[1], False))
            live.alerts[kind] = (None, wanted)
            ops.append((speaker, kind, wanted, True))
        elif wanted is None and current is not None:
            if kind == "offline" and current[1] == ALERT_MESSAGES["never"] and live.status_online is None:
                continue
            del live.alerts[kind]
            ops.append((speaker, kind, current[1], False))
    return ops


def _wanted(live: LiveState, config: FleetConfig) -> dict[str, str]:
    want: dict[str, str] = {}
    if live.status_online is False:
        want["offline"] = ALERT_MESSAGES["offline"]
    if live.stale:
        want["stale"] = ALERT_MESSAGES["stale"].format(s=config.stale_after_s)
    if not live.online() or live.health is None:
        # Nothing new is known: the alerts judged from reports stay as they are.
        for kind in _HEALTH_KINDS & live.alerts.keys():
            want[kind] = live.alerts[kind][1]
        return want
    health = live.health
    # Judge the amplifier only by one report: "playing" and "amplifier_on" taken at the same
    # instant. A report from before playback (amplifier still off) read against a later
    # "playing" receipt raised a false alarm on every cluster.
    if health.get("playing") and health.get("amplifier_on") is False:
        want["amplifier"] = ALERT_MESSAGES["amplifier"]
    error = health.get("last_error")
    if error:
        want["error"] = ALERT_MESSAGES["error"].format(e=error)
    thresholds = config.thresholds
    held = {kind: message for kind, (_, message) in live.alerts.items()}
    on_backup = health.get("on_backup")
    if on_backup or (on_backup is None and "backup_power" in held):
        want["backup_power"] = ALERT_MESSAGES["backup_power"]
    supply = health.get("supply_v")
    if thresholds.supply_v_min is not None:
        if supply is None:
            if "low_voltage" in held:
                want["low_voltage"] = held["low_voltage"]
        else:
            limit = thresholds.supply_v_min + (thresholds.supply_v_margin if "low_voltage" in held else 0.0)
            if supply < limit:
                want["low_voltage"] = ALERT_MESSAGES["low_voltage"].format(
                    v=_decimal(supply), min=_decimal(thresholds.supply_v_min)
                )
    if live.silent or (live.silent is None and "no_sound" in held):
        want["no_sound"] = ALERT_MESSAGES["no_sound"]
    free = health.get("disk_free_bytes")
    if thresholds.disk_free_min_bytes is not None:
        if free is None:
            if "disk_low" in held:
                want["disk_low"] = held["disk_low"]
        else:
            factor = _DISK_CLEAR_FACTOR if "disk_low" in held else 1.0
            if free < thresholds.disk_free_min_bytes * factor:
                want["disk_low"] = ALERT_MESSAGES["disk_low"].format(free=format_bytes(free))
    return want


def _decimal(value: float) -> str:
    """``11.25`` -> ``"11,3"``: one decimal, with the Vietnamese decimal comma."""
    return f"{value:.1f}".replace(".", ",")


def format_bytes(size: int) -> str:
    """A disk size as an officer reads it: ``"120 MB"``, ``"1,5 GB"``."""
    if size >= 1024**3:
        return f"{_decimal(size / 1024**3)} GB"
    return f"{size / 1024**2:.0f} MB"
