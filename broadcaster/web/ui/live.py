"""«Phát trực tiếp»: an approver (or admin) speaks into the browser's microphone and the clusters
play it live. The page's script (static/live.js) sends 16 kHz PCM in small POSTs; the item ends
with «Kết thúc», when the button is released (hold-to-talk), or by itself when the browser sends
nothing for a few seconds (``live.idle_s``). Editors cannot use it. Browsers open the microphone
only on secure pages: HTTPS (``web.https``) or localhost."""

from __future__ import annotations

import logging
from typing import Any

from flask import jsonify, render_template, request

from broadcaster.broadcasts import AnnouncementInvalid, BroadcastError
from broadcaster.domain import Tier
from broadcaster.models import Role
from broadcaster.web.auth import roles_required
from broadcaster.web.ui import bp, services, user_name, zones_with_speakers

_LOGGER = logging.getLogger(__name__)

# One POST carries at most this much PCM (16 kHz s16le: 2 s); the script sends ~0.25 s at a time.
MAX_CHUNK_BYTES = 64_000
_NOT_FOR_EDITORS = "Chỉ người phê duyệt và quản trị được phát trực tiếp."


@bp.route("/live")
@roles_required(Role.APPROVER.value, message=_NOT_FOR_EDITORS)
def live_page() -> str:
    return render_template("live.html", zones=zones_with_speakers(), tiers=[t.value for t in Tier])


@bp.route("/live/start", methods=["POST"])
@roles_required(Role.APPROVER.value, message=_NOT_FOR_EDITORS)
def live_start() -> Any:
    data = request.get_json(silent=True) or {}
    validator = services().validator
    try:
        tier = Tier(data.get("tier", Tier.NORMAL.value))
        targets = validator.check_targets(data.get("targets") or ["all"])
        broadcast_id = services().broadcasts.start_live(tier=tier, targets=targets, author=user_name())
    except ValueError:
        return jsonify(error="Mức ưu tiên không hợp lệ."), 422
    except AnnouncementInvalid as exc:
        return jsonify(error=exc.message, field=exc.field), 422
    except BroadcastError as exc:
        return jsonify(error=exc.message), 422
    _LOGGER.info("live %s started by %s (%s) to %s", broadcast_id, user_name(), tier.value, ",".join(targets))
    return jsonify(
        id=broadcast_id, audio_url=f"/live/{broadcast_id}/audio", end_url=f"/live/{broadcast_id}/end"
    )


@bp.route("/live/<int:broadcast_id>/audio", methods=["POST"])
@roles_required(Role.APPROVER.value, message=_NOT_FOR_EDITORS)
def live_audio(broadcast_id: int) -> Any:
    data = request.get_data(cache=False)
    if len(data) > MAX_CHUNK_BYTES:
        return jsonify(error="Gói âm thanh quá lớn."), 413
    if not services().broadcasts.feed_live(broadcast_id, data):
        return jsonify(error="Buổi phát trực tiếp đã kết thúc.", ended=True), 410
    return jsonify(ok=True)


@bp.route("/live/<int:broadcast_id>/end", methods=["POST"])
@roles_required(Role.APPROVER.value, message=_NOT_FOR_EDITORS)
def live_end(broadcast_id: int) -> Any:
    ended = services().broadcasts.end_live(broadcast_id)
    return jsonify(ended=ended, url=f"/broadcasts/{broadcast_id}")
