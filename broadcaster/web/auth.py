"""Login, logout, roles, CSRF and the login rate limit of the officer UI.

- The session cookie holds only the user id, a session token, a password stamp, a CSRF token and
  the login time. The token names a row of ``user_sessions`` (``broadcaster.web.sessions``): the
  account and that row are re-read on every request, so logging out, a password change, disabling
  the account or "log out everywhere" refuses the cookie at its next request, copies included.
- CSRF: one random token per session, sent back in a hidden ``csrf_token`` field by every form
  and in the ``X-CSRFToken`` header by every script POST; compared in constant time.
  The REST API authenticates with bearer tokens and is exempt, unless a request reaches it
  with the session cookie and no ``Authorization`` header.
- Login failures are counted three ways, each inside ``login_lock_s`` seconds: per (username,
  client address) (``login_max_failures``), per client address across usernames
  (``login_max_failures_per_address``: one machine guessing many accounts) and per username across
  addresses (``login_max_failures_per_user``: many machines guessing one account). Any of them
  reached locks for ``login_lock_s`` seconds with a clear Vietnamese message.
"""

from __future__ import annotations

import functools
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from broadcaster.models import Role
from broadcaster.web import services_of
from broadcaster.web.sessions import end_session, end_user_sessions, session_valid, start_session
from broadcaster.web.users import UserInfo, authenticate, count_users, get_user, normalize_username

_LOGGER = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

LIMITER_KEY = "loa_login_limiter"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRFToken"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
CSRF_MESSAGE = "Biểu mẫu đã hết hạn hoặc không hợp lệ. Vui lòng tải lại trang rồi thử lại."
LOGIN_REQUIRED_MESSAGE = "Vui lòng đăng nhập."
PASSWORD_STAMP = "pwv"
SESSION_TOKEN = "sid"

F = TypeVar("F", bound=Callable[..., Any])


class LoginLimiter:
    """Counts failed logins per key; a key with ``max_failures`` failures inside ``lock_s``
    seconds is locked for ``lock_s`` seconds from the last failure. Thread-safe, in memory
    (one controller process serves the UI)."""

    # Bound on remembered keys, so a flood of random usernames cannot grow memory without end.
    MAX_KEYS = 10_000

    def __init__(self, max_failures: int, lock_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.lock_s = lock_s
        self.clock = clock
        self._failures: dict[Hashable, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: Hashable, now: float) -> list[float]:
        times = [t for t in self._failures.get(key, []) if now - t < self.lock_s]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def locked_for(self, key: Hashable) -> float:
        """Seconds this key stays locked (0 when it may try)."""
        with self._lock:
            now = self.clock()
            times = self._recent(key, now)
            if len(times) < self.max_failures:
                return 0.0
            return max(0.0, times[-1] + self.lock_s - now)

    def failed(self, key: Hashable) -> None:
        with self._lock:
            now = self.clock()
            if len(self._failures) >= self.MAX_KEYS:
                for old in [k for k, v in self._failures.items() if not v or now - v[-1] >= self.lock_s]:
                    del self._failures[old]
                if len(self._failures) >= self.MAX_KEYS:  # still full: forget the oldest
                    oldest = min(self._failures, key=lambda k: self._failures[k][-1])
                    del self._failures[oldest]
            self._recent(key, now)
            self._failures.setdefault(key, []).append(now)

    def succeeded(self, key: Hashable) -> None:
        with self._lock:
            self._failures.pop(key, None)


class LoginGuard:
    """The three login limits: per (username, address), per address, per username.

    A success clears the pair's and the username's count, not the address's: otherwise an attacker
    holding one valid account could reset the address limit between guesses at others."""

    def __init__(
        self,
        *,
        per_pair: int,
        per_address: int,
        per_user: int,
        lock_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pair = LoginLimiter(per_pair, lock_s, clock)
        self.address = LoginLimiter(per_address, lock_s, clock)
        self.user = LoginLimiter(per_user, lock_s, clock)

    @property
    def clock(self) -> Callable[[], float]:
        return self.pair.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:  # tests move time forward
        for limiter in (self.pair, self.address, self.user):
            limiter.clock = clock

    def locked_for(self, username: str, address: str) -> tuple[float, str]:
        """(seconds locked, which limit: "pair", "address" or "user"); (0, "") when it may try."""
        for scope, limiter, key in (
            ("pair", self.pair, (username, address)),
            ("address", self.address, address),
            ("user", self.user, username),
        ):
            wait = limiter.locked_for(key)
            if wait > 0:
                return wait, scope
        return 0.0, ""

    def failed(self, username: str, address: str) -> None:
        self.pair.failed((username, address))
        self.address.failed(address)
        self.user.failed(username)

    def succeeded(self, username: str, address: str) -> None:
        self.pair.succeeded((username, address))
        self.user.succeeded(username)


def limiter_of(app: Flask) -> LoginGuard:
    return app.extensions[LIMITER_KEY]


# --- CSRF ---


def csrf_token() -> str:
    """The session's CSRF token (created on first use)."""
    token = session.get("_csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["_csrf"] = token
    return token


def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return (
        best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]
    )


def check_csrf() -> None:
    """before_request hook: reject a state-changing request without the session's token."""
    if request.method in _SAFE_METHODS:
        return
    if request.blueprint == "api" and ("Authorization" in request.headers or "uid" not in session):
        return  # bearer-token API: no ambient credentials to forge
    if "uid" not in session and request.endpoint != "auth.login":
        return  # nobody logged in: the view refuses (and sends the officer to the login page)
    expected = session.get("_csrf")
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD)
    if not expected or not sent or not hmac.compare_digest(str(sent), str(expected)):
        _LOGGER.warning(
            "CSRF check failed for %s %s from %s", request.method, request.path, request.remote_addr
        )
        abort(400, description=CSRF_MESSAGE)


# --- current user and roles ---


def load_user() -> None:
    """before_request hook: g.user is the logged-in, active account or None."""
    g.user = None
    uid = session.get("uid")
    if uid is None:
        return
    sessions = services_of(current_app).sessions
    user = get_user(sessions, int(uid))
    if (
        user is None
        or not user.active
        or session.get(PASSWORD_STAMP) != user.password_stamp
        or not session_valid(sessions, session.get(SESSION_TOKEN), user.id)
    ):
        # Deactivated, deleted, the password changed, logged out (this cookie may be a copy):
        # the session is over.
        session.clear()
        return
    g.user = user


def remember_password(user: UserInfo) -> None:
    """Keep the current session valid after its own user changed the password; every other
    session of that user ends at once."""
    session[PASSWORD_STAMP] = user.password_stamp
    end_user_sessions(services_of(current_app).sessions, user.id, keep=session.get(SESSION_TOKEN))


def end_all_sessions(user_id: int) -> int:
    """ "Log out everywhere": every session of ``user_id`` ends, this one too if it is theirs."""
    return end_user_sessions(services_of(current_app).sessions, user_id)


def current_user() -> UserInfo | None:
    return g.get("user")


def has_role(user: UserInfo | None, *roles: str) -> bool:
    """Admins may do everything; others only what their role allows."""
    if user is None:
        return False
    return user.role == Role.ADMIN.value or user.role in roles


def login_required(view: F) -> F:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            if _wants_json():
                return jsonify(error=LOGIN_REQUIRED_MESSAGE), 401
            if request.method in _SAFE_METHODS:
                back = request.full_path.rstrip("?")
            else:  # a form sent after the session ended: back to the page it came from
                referrer = urlsplit(request.referrer or "")
                back = referrer.path if referrer.netloc == request.host and referrer.path else None
                flash("Phiên làm việc đã hết hạn. Vui lòng đăng nhập lại.", "warn")
            return redirect(url_for("auth.login", next=back))
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def roles_required(*roles: str, message: str | None = None) -> Callable[[F], F]:
    """Login plus one of ``roles`` (admin always passes); 403 with a Vietnamese message otherwise."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not has_role(current_user(), *roles):
                abort(403, description=message or "Tài khoản của bạn không có quyền dùng chức năng này.")
            return view(*args, **kwargs)

        return login_required(wrapped)  # type: ignore[return-value]

    return decorate


def safe_next(target: str | None, default: str | None = None) -> str:
    """Only same-site relative paths, so a form's ``next``/``back`` cannot redirect elsewhere;
    anything else (or nothing) gives ``default`` (the dashboard when None)."""
    fallback = default or url_for("ui.dashboard")
    if not target:
        return fallback
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 32 for c in target)
    ):
        return fallback
    return target


def _client_address() -> str:
    return request.remote_addr or "?"


_LOCK_SCOPE_VI = {
    "pair": "tài khoản này tạm khóa trên máy này",
    "address": "máy này tạm không được đăng nhập",
    "user": "tài khoản này tạm khóa",
}


def _lock_message(seconds: float, scope: str = "pair") -> str:
    minutes = max(1, int(seconds + 59) // 60)
    return (
        f"Bạn đã đăng nhập sai quá nhiều lần. Vì an toàn, {_LOCK_SCOPE_VI.get(scope, _LOCK_SCOPE_VI['pair'])} "
        f"trong {minutes} phút. Vui lòng thử lại sau."
    )


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    services = services_of(current_app)
    error = None
    username = ""
    status = 200
    if request.method == "POST":
        username = normalize_username(request.form.get("username", ""))[:100]
        password = request.form.get("password", "")
        address = _client_address()
        limiter = limiter_of(current_app)
        wait, scope = limiter.locked_for(username, address)
        if wait > 0:
            error, status = _lock_message(wait, scope), 429
        elif not username or not password:
            error, status = "Vui lòng nhập tên đăng nhập và mật khẩu.", 400
        else:
            user = authenticate(services.sessions, username, password)
            if user is None:
                limiter.failed(username, address)
                _LOGGER.warning("failed login for %s from %s", username, address)
                wait, scope = limiter.locked_for(username, address)
                if wait > 0:
                    _LOGGER.warning("login locked (%s) for %s from %s", scope, username, address)
                error = _lock_message(wait, scope) if wait > 0 else "Tên đăng nhập hoặc mật khẩu không đúng."
                status = 429 if wait > 0 else 401
            else:
                limiter.succeeded(username, address)
                session.clear()  # a fresh session (and CSRF token) on every login: no fixation
                session.permanent = True
                session["uid"] = user.id
                session[PASSWORD_STAMP] = user.password_stamp
                session[SESSION_TOKEN] = start_session(
                    services.sessions, user.id, current_app.permanent_session_lifetime, address
                )
                session["login_at"] = int(time.time())
                _LOGGER.info("user %s logged in from %s", user.username, _client_address())
                return redirect(safe_next(request.args.get("next")))
    elif current_user() is not None:
        return redirect(safe_next(request.args.get("next")))
    no_users = count_users(services.sessions) == 0
    return (
        render_template("login.html", error=error, username=username, no_users=no_users),
        status,
    )


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    user = current_user()
    end_session(services_of(current_app).sessions, session.get(SESSION_TOKEN))
    session.clear()
    if user is not None:
        _LOGGER.info("user %s logged out", user.username)
    return redirect(url_for("auth.login"))
