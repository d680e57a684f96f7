"""The lexicon page with per-voice entries, the phonetic hint and «Nghe thử» (issue 12, item 4):
the officer adds and edits a scoped entry, a bad engine or hint is refused in Vietnamese, an
editor's proposal carries the new fields to the approver, and a word or a sentence is read with
the chosen voice (the real espeak-ng engine of the web harness) and played in the page."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from broadcaster.models import LexiconEntry
from tests.fixtures_web import login
from tests.test_web import post, wait_job


def _entries(web_services: Any) -> list[tuple[str, str, str, str, str | None]]:
    with web_services.sessions() as session:
        rows = session.scalars(select(LexiconEntry).order_by(LexiconEntry.id))
        return [(e.term, e.engine, e.voice, e.reading, e.hint) for e in rows]


def test_an_officer_adds_and_edits_an_entry_for_one_voice_with_a_hint(client: Any, web_services: Any) -> None:
    login(client, "approver")  # an approver's change applies at once
    page = client.get("/lexicon").get_data(as_text=True)
    for label in ("Giọng đọc", "Cách đọc", "Gợi ý phát âm (IPA)", "Mọi giọng đọc", "Nghe thử"):
        assert label in page, label
    assert post(client, "/lexicon", {"term": "UBND", "reading": "ủy ban nhân dân"}).status_code == 302
    saved = post(
        client,
        "/lexicon",
        {
            "term": "UBND",
            "reading": "ủy ban",
            "engine": "espeak-ng",
            "voice": "vi-vn-x-south",
            "hint": "'uj b'an",
        },
    )
    assert saved.status_code == 302
    assert _entries(web_services) == [
        ("UBND", "", "", "ủy ban nhân dân", None),
        ("UBND", "espeak-ng", "vi-vn-x-south", "ủy ban", "'uj b'an"),
    ]
    page = client.get("/lexicon").get_data(as_text=True)
    assert "giọng «" in page and 'data-voice="vi-vn-x-south"' in page and "&#39;uj b&#39;an" in page
    # The inline edit of one row changes its reading and hint, not its scope.
    with web_services.sessions() as session:
        scoped_id = session.scalar(select(LexiconEntry.id).where(LexiconEntry.engine == "espeak-ng"))
    post(client, "/lexicon", {"id": str(scoped_id), "term": "UBND", "reading": "ủy ban xã"})
    assert _entries(web_services)[1] == ("UBND", "espeak-ng", "vi-vn-x-south", "ủy ban xã", "'uj b'an")
    # Rendering reads the entry of the voice that reads.
    readings = web_services.services.lexicon.overrides()
    assert readings.for_engine("espeak-ng", "vi-vn-x-south")["UBND"] == "ủy ban xã"
    assert readings.for_engine("espeak-ng", "vi")["UBND"] == "ủy ban nhân dân"


def test_a_bad_engine_voice_or_hint_is_refused_and_nothing_is_saved(client: Any, web_services: Any) -> None:
    login(client, "approver")
    cases = [
        ({"engine": "festival"}, "Không có giọng đọc này trên máy chủ"),
        ({"engine": "espeak-ng", "voice": "klingon"}, "không có kiểu giọng này"),
        ({"voice": "vi"}, "Vui lòng chọn giọng đọc trước"),
        ({"hint": '<phoneme ph="x">'}, "Gợi ý phát âm không được chứa"),
        ({"engine": "espeak-ng", "hint": "kɔ"}, "ký hiệu âm"),
    ]
    for fields, message in cases:
        reply = post(client, "/lexicon", {"term": "HTX", "reading": "hợp tác xã", **fields})
        html = reply.get_data(as_text=True)
        assert reply.status_code == 400 and message in html, fields
        assert 'value="hợp tác xã"' in html  # the officer's input is kept
    assert _entries(web_services) == []


def test_an_editors_scoped_proposal_reaches_the_approver_with_its_hint(
    client: Any, web_app: Any, web_services: Any
) -> None:
    lexicon = web_services.services.lexicon
    login(client, "editor")  # approval is required: an editor proposes
    fields = {"term": "COVID", "reading": "cô vít", "engine": "espeak-ng", "hint": "k'o v'it"}
    assert post(client, "/lexicon", fields).status_code == 302
    assert _entries(web_services) == []
    approver = web_app.test_client()
    login(approver, "approver")
    page = approver.get("/approvals").get_data(as_text=True)
    assert "Từ điển cách đọc: «COVID»" in page and "Gợi ý phát âm (IPA): [k&#39;o v&#39;it]" in page
    change = lexicon.proposals()[0]
    assert (change.engine, change.voice, change.hint) == ("espeak-ng", "", "k'o v'it")
    assert post(approver, f"/approvals/lexicon/{change.id}/approve").status_code == 302
    assert _entries(web_services) == [("COVID", "espeak-ng", "", "cô vít", "k'o v'it")]


def test_nghe_thu_reads_a_word_with_the_chosen_voice(client: Any, web_services: Any) -> None:
    login(client, "editor")
    web_services.services.lexicon.save("UBND", "ủy ban", by="t", engine="espeak-ng", voice="vi-vn-x-south")
    page = client.get("/lexicon").get_data(as_text=True)
    assert 'id="lexicon-try-audio"' in page and "lexicon.js" in page
    reply = post(
        client, "/lexicon/preview", {"text": "UBND", "engine": "espeak-ng", "voice": "vi-vn-x-south"}
    )
    assert reply.status_code == 200
    done = wait_job(client, reply.get_json()["status_url"])
    assert done["state"] == "done", done
    assert (done["engine"], done["voice"]) == ("espeak-ng", "vi-vn-x-south")
    assert done["normalized_text"] == "ủy ban"  # the voice's own entry
    with client.get(done["audio_url"]) as audio:
        assert audio.status_code == 200 and audio.mimetype == "audio/mpeg" and len(audio.data) > 1000
    # Another voice reads the entry for every voice (here: none, so the shipped reading).
    other = wait_job(
        client,
        post(client, "/lexicon/preview", {"text": "UBND", "engine": "espeak-ng"}).get_json()["status_url"],
    )
    assert other["voice"] == "vi" and other["normalized_text"] != "ủy ban"


def test_nghe_thu_refuses_long_text_unknown_voices_and_forged_requests(client: Any) -> None:
    login(client, "editor")
    long = post(client, "/lexicon/preview", {"text": "a" * 301})
    assert long.status_code == 400 and "tối đa 300 ký tự" in long.get_json()["errors"]["text"]
    empty = post(client, "/lexicon/preview", {"text": " "})
    assert empty.get_json()["errors"]["text"] == "Vui lòng nhập từ hoặc câu cần nghe thử."
    bad = post(client, "/lexicon/preview", {"text": "UBND", "engine": "festival"})
    assert bad.status_code == 400 and "Không có giọng đọc này" in bad.get_json()["errors"]["engine"]
    forged = client.post("/lexicon/preview", data={"text": "UBND"})  # no CSRF token
    assert forged.status_code in (400, 403)
    anonymous = client.application.test_client()
    assert anonymous.post("/lexicon/preview", data={"text": "UBND"}).status_code in (302, 400, 401, 403)
