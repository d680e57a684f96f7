"""Sessions end on the server (issue 13, item 10) and huge ids are 404 (item 11).

A cookie copied before logout (another browser, a stolen copy) must be refused after the logout,
after a password change, after the account is disabled, and after "log out everywhere". Flask test
client over the web fixtures (real SQLite, the real users and sessions modules)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures_web import PASSWORD, csrf, login

COOKIE = "loa_session"


def post(client: Any, path: str, data: dict[str, Any] | None = None) -> Any:
    return client.post(path, data={"csrf_token": csrf(client, "/"), **(data or {})})


def copy_of(client: Any, app: Any) -> Any:
    """Another browser holding a copy of ``client``'s session cookie."""
    thief = app.test_client()
    thief.set_cookie(COOKIE, client.get_cookie(COOKIE).value)
    return thief


def logged_in(client: Any) -> bool:
    return client.get("/").status_code == 200


def test_a_cookie_copied_before_logout_is_refused_after_it(client: Any, web_app: Any) -> None:
    login(client, "editor")
    thief = copy_of(client, web_app)
    assert logged_in(thief)  # the copy works while the session lives
    assert post(client, "/logout").status_code == 302
    assert not logged_in(client)
    refused = thief.get("/")
    assert refused.status_code == 302 and "/login" in refused.headers["Location"]
    assert thief.get("/dashboard.json", headers={"Accept": "application/json"}).status_code == 401


def test_a_password_change_ends_the_other_sessions_and_keeps_this_one(client: Any, web_app: Any) -> None:
    login(client, "editor")
    other = web_app.test_client()
    login(other, "editor")
    thief = copy_of(other, web_app)
    changed = post(
        client, "/account", {"current": PASSWORD, "new": "mat-khau-moi-1", "confirm": "mat-khau-moi-1"}
    )
    assert changed.status_code == 302
    assert logged_in(client)  # the officer who changed it stays
    assert not logged_in(other) and not logged_in(thief)


def test_disabling_an_account_ends_its_sessions(client: Any, web_app: Any, web_services: Any) -> None:
    from broadcaster.web.users import list_users

    editor = web_app.test_client()
    login(editor, "editor")
    thief = copy_of(editor, web_app)
    login(client, "admin")
    editor_id = next(u.id for u in list_users(web_services.sessions) if u.username == "editor")
    assert post(client, f"/users/{editor_id}", {"role": "editor", "display_name": "Biên"}).status_code == 302
    assert not logged_in(editor) and not logged_in(thief)
    # Enabled again, the old cookie still does not come back to life: the session row is gone.
    post(client, f"/users/{editor_id}", {"role": "editor", "active": "on", "display_name": "Biên"})
    assert not logged_in(thief)


def test_log_out_everywhere(client: Any, web_app: Any, web_services: Any) -> None:
    phone = web_app.test_client()
    login(phone, "approver")
    login(client, "approver")
    thief = copy_of(phone, web_app)
    page = client.get("/account").get_data(as_text=True)
    assert "Đăng xuất khỏi mọi nơi" in page
    done = post(client, "/account/logout-everywhere")
    assert done.status_code == 302 and done.headers["Location"].startswith("/login")
    assert not logged_in(client) and not logged_in(phone) and not logged_in(thief)
    # An admin can do it for someone else.
    login(phone, "approver")
    admin = web_app.test_client()
    login(admin, "admin")
    from broadcaster.web.users import list_users

    approver_id = next(u.id for u in list_users(web_services.sessions) if u.username == "approver")
    assert "1 nơi" in admin.get("/users").get_data(as_text=True)
    assert post(admin, f"/users/{approver_id}/logout").status_code == 302
    assert not logged_in(phone) and logged_in(admin)


def test_an_admin_changing_their_own_password_stays_logged_in(client: Any, web_services: Any) -> None:
    from broadcaster.web.users import list_users

    login(client, "admin")
    admin_id = next(u.id for u in list_users(web_services.sessions) if u.username == "admin")
    done = post(client, f"/users/{admin_id}", {"role": "admin", "active": "on", "password": "mat-khau-moi-2"})
    assert done.status_code == 302
    assert logged_in(client)


# --- item 11: ids of 2^63 or more ------------------------------------------------------------------

HUGE = [2**63, 2**63 + 1, 10**19, 10**25]


@pytest.mark.parametrize("number", HUGE)
def test_huge_ids_on_the_web_pages_are_404(client: Any, number: int) -> None:
    login(client, "admin")
    for path in (f"/broadcasts/{number}", f"/schedule/{number}"):
        assert client.get(path).status_code == 404, path
    for path in (f"/broadcasts/{number}/cancel", f"/approvals/{number}/approve",
                 f"/approvals/schedule/{number}/approve", f"/schedule/{number}/delete",
                 f"/schedule/{number}", f"/lexicon/{number}/delete", f"/users/{number}",
                 f"/users/{number}/logout"):  # fmt: skip
        response = post(client, path, {"role": "editor"})
        assert response.status_code in (404, 302) and response.status_code != 500, path
        if path.startswith(("/broadcasts", "/approvals", "/schedule", "/lexicon")):
            assert response.status_code == 404, path
    # An id in the lexicon form is checked like one in the URL.
    edit = post(client, "/lexicon", {"id": str(number), "term": "UBND", "reading": "ủy ban"})
    assert edit.status_code == 404


@pytest.mark.parametrize("number", HUGE)
def test_huge_ids_in_the_api_are_404(tmp_path: Any, number: int) -> None:
    from tests.test_api import Api

    api = Api(tmp_path)
    try:
        for path in (f"/api/schedules/{number}", f"/api/broadcasts/{number}"):
            for method in ("get", "delete", "patch"):
                response = getattr(api.client, method)(path, headers=api.auth, json={"title": "x"})
                if method == "patch" and path.startswith("/api/broadcasts"):
                    assert response.status_code in (404, 405), (method, path)  # no such operation
                    continue
                assert response.status_code == 404, (method, path, response.status_code)
                assert response.is_json and response.get_json()["error"]["code"] == "not_found"
    finally:
        api.manager.stop()
        api.engine.dispose()
