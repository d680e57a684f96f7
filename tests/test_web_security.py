"""Review fixes of the officer UI's security: no open redirect through a form's ``back``, login
limits per address and per username (besides per pair), sessions that end on a password change.

Flask test client over the web fixtures (real SQLite, real users module)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from broadcaster.models import User
from broadcaster.web.auth import LIMITER_KEY, LoginGuard, safe_next
from tests.fixtures_web import PASSWORD, csrf, login


def post(client: Any, path: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    return client.post(path, data={"csrf_token": csrf(client, "/"), **(data or {})}, **kwargs)


def login_from(client: Any, username: str, address: str, password: str = PASSWORD) -> Any:
    token = csrf(client)
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token},
        environ_base={"REMOTE_ADDR": address},
    )


# --- open redirect -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/x", "//evil.example/x", "http:/evil.example", "/\\evil.example", "javascript:alert(1)",
     "/log\r\nSet-Cookie: x=1"],
)  # fmt: skip
def test_safe_next_refuses_anything_but_a_local_path(web_app: Any, target: str) -> None:
    with web_app.test_request_context():
        assert safe_next(target, default="/fallback") == "/fallback"
        assert safe_next("/log?from=2026-01-01", default="/fallback") == "/log?from=2026-01-01"
        assert safe_next(None) == "/"


def test_cancel_back_field_cannot_send_the_officer_elsewhere(client: Any, web_services: Any) -> None:
    login(client, "approver")
    form = {"title": "Họp", "text": "Mời bà con họp.", "tier": "normal", "targets": ["all"], "repeat": "1",
            "action": "now", "when": "once"}  # fmt: skip
    assert post(client, "/compose", form).status_code == 302
    broadcast_id = web_services.submitted()[0].id
    evil = post(client, f"/broadcasts/{broadcast_id}/cancel", {"back": "https://evil.example/phish"})
    assert evil.status_code == 302
    assert evil.headers["Location"] == f"/broadcasts/{broadcast_id}"
    assert web_services.cancelled() == [broadcast_id]
    local = post(client, f"/broadcasts/{broadcast_id}/cancel", {"back": "/log"})
    assert local.headers["Location"] == "/log"


# --- login limits ----------------------------------------------------------------------------------


def test_login_limits_are_wired_from_settings(web_app: Any) -> None:
    guard = web_app.extensions[LIMITER_KEY]
    assert isinstance(guard, LoginGuard)
    assert (guard.pair.max_failures, guard.address.max_failures, guard.user.max_failures) == (5, 20, 10)


def test_one_address_guessing_many_usernames_is_locked(web_app: Any) -> None:
    clock = [1000.0]
    web_app.extensions[LIMITER_KEY] = LoginGuard(
        per_pair=5, per_address=6, per_user=50, lock_s=300, clock=lambda: clock[0]
    )
    attacker = web_app.test_client()
    for i in range(5):  # one failure per username: the pair limit never trips
        assert login_from(attacker, f"khong-co-{i}", "10.0.0.66", "sai").status_code == 401
    sixth = login_from(attacker, "khong-co-5", "10.0.0.66", "sai")
    assert sixth.status_code == 429
    text = sixth.get_data(as_text=True)
    assert "đăng nhập sai quá nhiều lần" in text and "máy này" in text and "5 phút" in text
    # Locked for every username from that address, even with the right password...
    assert login_from(attacker, "admin", "10.0.0.66").status_code == 429
    assert attacker.get("/").status_code == 302
    # ...but another address is not affected.
    assert login_from(web_app.test_client(), "admin", "10.0.0.7").status_code == 302
    clock[0] += 301
    assert login_from(attacker, "admin", "10.0.0.66").status_code == 302


def test_many_addresses_guessing_one_username_lock_that_username(web_app: Any) -> None:
    clock = [1000.0]
    web_app.extensions[LIMITER_KEY] = LoginGuard(
        per_pair=5, per_address=50, per_user=4, lock_s=300, clock=lambda: clock[0]
    )
    for i in range(3):
        assert login_from(web_app.test_client(), "editor", f"10.1.0.{i}", "sai").status_code == 401
    fourth = login_from(web_app.test_client(), "editor", "10.1.0.3", "sai")
    assert fourth.status_code == 429 and "tài khoản này tạm khóa" in fourth.get_data(as_text=True)
    # The username is locked from a fresh address too, even with the right password...
    assert login_from(web_app.test_client(), "editor", "10.2.0.1").status_code == 429
    # ...other usernames from those addresses still log in.
    assert login_from(web_app.test_client(), "approver", "10.1.0.3").status_code == 302
    clock[0] += 301
    assert login_from(web_app.test_client(), "editor", "10.2.0.1").status_code == 302


def test_a_success_does_not_reset_the_address_count(web_app: Any) -> None:
    """A valid account must not let its holder reset the address limit between guesses at others."""
    web_app.extensions[LIMITER_KEY] = LoginGuard(per_pair=5, per_address=3, per_user=50, lock_s=300)
    client = web_app.test_client()
    assert login_from(client, "admin", "10.3.0.1", "sai").status_code == 401
    assert login_from(client, "approver", "10.3.0.1", "sai").status_code == 401
    assert login_from(client, "editor", "10.3.0.1").status_code == 302
    post(client, "/logout")
    assert login_from(client, "admin", "10.3.0.1", "sai").status_code == 429


# --- sessions end on a password change ---------------------------------------------------------------


def _uid(web_services: Any, username: str) -> int:
    with web_services.sessions() as session:
        return int(session.scalar(select(User.id).where(User.username == username)))


def test_own_password_change_ends_other_sessions_but_keeps_this_one(web_app: Any) -> None:
    here, elsewhere = web_app.test_client(), web_app.test_client()
    assert login(here, "editor").status_code == 302 and login(elsewhere, "editor").status_code == 302
    assert elsewhere.get("/").status_code == 200
    reply = post(
        here, "/account", {"current": PASSWORD, "new": "mat-khau-moi-9", "confirm": "mat-khau-moi-9"}
    )
    assert reply.status_code == 302
    assert here.get("/").status_code == 200  # the session that changed it stays
    stale = elsewhere.get("/")
    assert stale.status_code == 302 and stale.headers["Location"].startswith("/login")
    assert elsewhere.get("/").status_code == 302  # and stays out (the stale cookie was cleared)


def test_admin_password_reset_ends_the_users_sessions(web_app: Any, web_services: Any) -> None:
    admin, editor = web_app.test_client(), web_app.test_client()
    login(admin, "admin")
    login(editor, "editor")
    assert editor.get("/").status_code == 200
    uid = _uid(web_services, "editor")
    reply = post(admin, f"/users/{uid}", {"password": "mat-khau-dat-lai", "role": "editor", "active": "on",
                                         "display_name": "Nguyễn Văn Biên"})  # fmt: skip
    assert reply.status_code == 302
    assert editor.get("/").status_code == 302
    assert admin.get("/").status_code == 200
    assert login(editor, "editor", "mat-khau-dat-lai").status_code == 302
    assert editor.get("/").status_code == 200


def test_a_cookie_from_before_the_change_is_refused_even_if_replayed(web_app: Any, web_services: Any) -> None:
    """The old cookie, saved by an attacker, does not work after the password changed."""
    from broadcaster.web.users import set_password

    victim = web_app.test_client()
    login(victim, "approver")
    cookie = victim.get_cookie("loa_session")
    assert cookie is not None
    set_password(web_services.sessions, _uid(web_services, "approver"), "mat-khau-khac-1")
    thief = web_app.test_client()
    thief.set_cookie("loa_session", cookie.value)
    assert thief.get("/").status_code == 302
