"""The voice picker's "Nghe thử": a fixed short sentence read with one voice, on the job runner
(cache hits come back at once), so the officer hears a voice before choosing it."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request, url_for

from broadcaster.web.auth import current_user, login_required
from broadcaster.web.ui import bp, engine_choices, services
from broadcaster.web.ui.jobs import jobs, render_result_json

# Short, with the sounds that tell voices apart (tones, a number, a name), and the same for every
# voice so the officer compares like with like.
SAMPLE_TEXT = "Kính thưa bà con, đây là giọng đọc thử của đài truyền thanh xã, phát lúc bảy giờ sáng."


def _engine_of(voice: str) -> str | None:
    for engine in engine_choices():
        if engine["available"] and any(v["id"] == voice for v in engine["voices"]):
            return str(engine["name"])
    return None


@bp.route("/voices/sample", methods=["POST"])
@login_required
def voice_sample() -> Any:
    """Render the sample with ``engine``/``voice`` (both optional: the default voice) on a worker;
    poll ``status_url`` for the audio."""
    engine = (request.form.get("engine") or "").strip() or None
    voice = (request.form.get("voice") or "").strip() or None
    if voice and not engine:
        engine = _engine_of(voice)
    engines = {e["name"]: e for e in engine_choices()}
    if engine is not None and (engine not in engines or not engines[engine]["available"]):
        return jsonify(errors={"voice": "Giọng đọc này không dùng được trên máy chủ này."}), 400
    if voice is not None and (engine is None or voice not in {v["id"] for v in engines[engine]["voices"]}):
        return jsonify(errors={"voice": "Không có giọng đọc này. Vui lòng chọn giọng khác."}), 400
    speech = services().speech

    def render() -> dict[str, Any]:
        result = speech.render(
            SAMPLE_TEXT, engine=engine, voice=voice, repeat=1, chime=False, strict=engine is not None
        )
        return render_result_json(result)

    user = current_user()
    assert user is not None
    job_id = jobs().submit(user.id, "voice-sample", render)
    return jsonify(job=job_id, status_url=url_for("ui.job_status", job_id=job_id))
