"""Volume of the clusters from the dashboard ("Âm lượng", approver/admin, CSRF) and from
``POST /api/volume`` (bearer token, JSON errors). The broadcast manager is the web fake with the real
``set_volume`` contract; the end-to-end path to the nodes is the broadcasts part's test."""

from __future__ import annotations

from typing import Any

import pytest

from broadcaster.web.tokens import create_token
from tests.fixtures_web import csrf, login


def post(client: Any, path: str, data: dict[str, Any] | None = None) -> Any:
    return client.post(path, data={"csrf_token": csrf(client, "/"), **(data or {})})


# --- dashboard -----------------------------------------------------------------------------------


def test_approver_sets_volume_of_a_zone_and_of_all(client: Any, web_services: Any) -> None:
    login(client, "approver")
    page = client.get("/").get_data(as_text=True)
    assert '<h2 id="volume-h">Âm lượng</h2>' in page and "Đặt âm lượng" in page
    assert (
        '<option value="thon-1">Thôn 1</option>' in page and '<option value="all" selected>Tất cả loa' in page
    )
    reply = post(client, "/volume", {"target": "thon-1", "volume": "40"})
    assert reply.status_code == 302 and reply.headers["Location"] == "/"
    assert web_services.log("volume") == ["Đặt âm lượng 40% cho 2 cụm loa (thon-1) bởi approver"]
    assert "Đã gửi lệnh đặt âm lượng 40% tới 2 cụm loa (Thôn 1)." in client.get("/").get_data(as_text=True)
    post(client, "/volume", {"target": "all", "volume": "100"})
    assert web_services.log("volume")[-1] == "Đặt âm lượng 100% cho 3 cụm loa (all) bởi approver"


def test_admin_may_set_volume_editor_may_not(client: Any, web_app: Any, web_services: Any) -> None:
    login(client, "editor")
    assert "Đặt âm lượng" not in client.get("/").get_data(as_text=True)
    refused = post(client, "/volume", {"target": "all", "volume": "50"})
    assert refused.status_code == 403 and "Chỉ người phê duyệt" in refused.get_data(as_text=True)
    admin = web_app.test_client()
    login(admin, "admin")
    assert post(admin, "/volume", {"target": "all", "volume": "0"}).status_code == 302
    assert web_services.log("volume") == ["Đặt âm lượng 0% cho 3 cụm loa (all) bởi admin"]


def test_volume_form_needs_csrf(client: Any, web_services: Any) -> None:
    login(client, "approver")
    reply = client.post("/volume", data={"target": "all", "volume": "50"})
    assert reply.status_code == 400
    assert web_services.log("volume") == []


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"target": "all", "volume": "101"}, "từ 0 đến 100"),
        ({"target": "all", "volume": "-1"}, "từ 0 đến 100"),
        ({"target": "all", "volume": "năm mươi"}, "từ 0 đến 100"),
        ({"target": "all", "volume": ""}, "từ 0 đến 100"),
        ({"target": "thon-9", "volume": "50"}, "Vui lòng chọn nơi đặt âm lượng"),
        ({"target": "loa-1a", "volume": "50"}, "Vui lòng chọn nơi đặt âm lượng"),  # zones or all only
    ],
)
def test_bad_volume_input_is_explained_and_kept(
    client: Any, web_services: Any, form: dict[str, str], message: str
) -> None:
    login(client, "approver")
    reply = post(client, "/volume", form)
    html = reply.get_data(as_text=True)
    assert reply.status_code == 400 and message in html
    assert f'value="{form["volume"]}"' in html  # what was typed is still there
    assert web_services.log("volume") == []


def test_a_manager_refusal_is_shown_in_vietnamese(client: Any, web_services: Any) -> None:
    from broadcaster.models import Speaker

    with web_services.sessions.begin() as session:
        for sid in ("loa-2a",):
            session.get(Speaker, sid).enabled = False
    login(client, "approver")
    reply = post(client, "/volume", {"target": "thon-2", "volume": "30"})
    assert reply.status_code == 400
    assert "Không đặt được âm lượng: Không có cụm loa nào đang hoạt động" in reply.get_data(as_text=True)


# --- REST API ------------------------------------------------------------------------------------


@pytest.fixture
def bearer(web_services: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(web_services.sessions, 'tram-xa')}"}


def test_api_sets_volume_and_names_the_clusters(
    client: Any, web_services: Any, bearer: dict[str, str]
) -> None:
    reply = client.post("/api/volume", json={"targets": ["thon-1", "loa-2a"], "volume": 65}, headers=bearer)
    assert reply.status_code == 200, reply.get_data(as_text=True)
    assert reply.get_json() == {
        "volume": 65,
        "targets": ["thon-1", "loa-2a"],
        "speakers": ["loa-1a", "loa-1b", "loa-2a"],
    }
    assert web_services.log("volume") == ["Đặt âm lượng 65% cho 3 cụm loa (thon-1, loa-2a) bởi api:tram-xa"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"targets": ["all"], "volume": 101}, "volume"),
        ({"targets": ["all"], "volume": "50"}, "volume"),
        ({"targets": ["all"], "volume": True}, "volume"),
        ({"targets": ["all"], "volume": 50.5}, "volume"),
        ({"targets": ["all"]}, "volume"),
        ({"volume": 50}, "targets"),
        ({"targets": [], "volume": 50}, "targets"),
        ({"targets": ["khong-co"], "volume": 50}, "targets"),
        ({"targets": ["all"], "volume": 50, "loud": True}, "loud"),
    ],
)
def test_api_volume_refuses_bad_input_with_json_errors(
    client: Any, web_services: Any, bearer: dict[str, str], body: dict[str, Any], field: str
) -> None:
    reply = client.post("/api/volume", json=body, headers=bearer)
    assert reply.status_code == 422 and reply.is_json
    assert reply.get_json()["error"]["field"] == field
    assert web_services.log("volume") == []


def test_api_volume_needs_a_token_and_json(client: Any, web_services: Any, bearer: dict[str, str]) -> None:
    assert client.post("/api/volume", json={"targets": ["all"], "volume": 50}).status_code == 401
    not_json = client.post("/api/volume", data="targets=all", headers=bearer,
                           content_type="application/x-www-form-urlencoded")  # fmt: skip
    assert not_json.status_code == 415 and not_json.get_json()["error"]["code"] == "unsupported_media_type"
    assert web_services.log("volume") == []


def test_api_volume_reports_a_broker_failure_as_503(
    client: Any, web_services: Any, bearer: dict[str, str]
) -> None:
    web_services.transport.fail_publishes = 100  # the broker refuses every command
    reply = client.post("/api/volume", json={"targets": ["all"], "volume": 50}, headers=bearer)
    assert reply.status_code == 503 and reply.get_json()["error"]["code"] == "unavailable"
    assert "Không gửi được lệnh âm lượng" in reply.get_json()["error"]["message"]
