"""Flask app factory. Starts nothing: no scheduler, no MQTT (the reloader would run them twice).

The officer UI (``ui``), login (``auth``) and the REST API (``api``, under /api) share one app.
Security wiring lives here: session cookie flags, CSRF hook, per-request user, security
headers (a strict Content-Security-Policy on the UI: scripts and styles only from /static),
and error pages that speak Vietnamese (JSON for the API and for script requests).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from flask import Flask, has_request_context, jsonify, render_template, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter
from werkzeug.wrappers import Response

if TYPE_CHECKING:
    from broadcaster.services import Services
    from broadcaster.settings import Settings

_LOGGER = logging.getLogger(__name__)

EXTENSION_KEY = "loa"
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)

_ERROR_TITLES_VI = {
    400: "Yêu cầu không hợp lệ",
    401: "Cần đăng nhập",
    403: "Không có quyền",
    404: "Không tìm thấy trang",
    405: "Thao tác không được phép",
    413: "Tệp quá lớn",
    429: "Thử lại sau",
    500: "Lỗi hệ thống",
    503: "Tạm thời không dùng được",
}
_ERROR_TEXT_VI = {
    404: "Trang bạn tìm không tồn tại hoặc đã bị xóa.",
    405: "Thao tác này không được phép trên trang này.",
    413: "Tệp tải lên quá lớn.",
    500: "Đã có lỗi xảy ra. Vui lòng thử lại; nếu vẫn lỗi, báo cho quản trị viên.",
}


# Database ids are signed 64-bit integers: a larger number in a URL names nothing (404), it must
# never reach the database driver (which raises OverflowError: a 500).
MAX_ID = 2**63 - 1


class IdConverter(BaseConverter):
    """``<id:name>`` in a route: a database id. Up to 19 digits match; a number past MAX_ID (or 0)
    becomes 0, which no row has, so the view answers 404 like for any unknown id. (A converter
    that refused the value would make werkzeug answer 404 or 405 before the blueprint's own error
    handling, in HTML under /api.) Longer numbers do not match the route at all: 404."""

    regex = r"\d{1,19}"
    weight = 50  # like werkzeug's integer converter: before string segments

    def to_python(self, value: str) -> int:
        number = int(value)
        return number if 0 < number <= MAX_ID else 0

    def to_url(self, value: Any) -> str:
        return str(int(value))


class _SessionInterface(SecureCookieSessionInterface):
    """Secure cookie when configured so, or (unset) whenever the request came over https."""

    def get_cookie_secure(self, app: Flask) -> bool:
        configured = app.config.get("SESSION_COOKIE_SECURE")
        if configured is None:
            return bool(has_request_context() and request.is_secure)
        return bool(configured)


def create_app(settings: Settings, services: Services, test_config: dict[str, Any] | None = None) -> Flask:
    """Build the web app around already-built services (stored in ``app.extensions["loa"]``)."""
    from broadcaster.web import auth

    app = Flask(__name__)
    settings.ensure_instance()
    web = settings.web
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=web.max_upload_mb * 1024 * 1024,  # uploads: recorded audio, .docx/.pdf documents
        JSON_AS_ASCII=False,
        SESSION_COOKIE_NAME="loa_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=web.cookie_secure,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=web.session_hours),
        TEMPLATES_AUTO_RELOAD=False,
    )
    if test_config:
        app.config.update(test_config)
    app.session_interface = _SessionInterface()
    app.url_map.converters["id"] = IdConverter
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION_KEY] = services
    app.extensions[auth.LIMITER_KEY] = auth.LoginGuard(
        per_pair=web.login_max_failures,
        per_address=web.login_max_failures_per_address,
        per_user=web.login_max_failures_per_user,
        lock_s=web.login_lock_s,
    )
    if web.trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = web.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_prefix=n)  # type: ignore[method-assign]

    app.before_request(auth.load_user)
    app.before_request(auth.check_csrf)
    app.after_request(_security_headers)
    for code in _ERROR_TITLES_VI:
        app.register_error_handler(code, _error_page)

    from broadcaster.web import api, federation, ui

    app.register_blueprint(api.bp, url_prefix="/api")
    app.register_blueprint(federation.bp, url_prefix="/federation/v1")  # unit tokens, docs/federation.md
    app.register_blueprint(auth.bp)
    app.register_blueprint(ui.bp)
    return app


def services_of(app: Flask) -> Services:
    return app.extensions[EXTENSION_KEY]


def shutdown_app(app: Flask) -> None:
    """Stop the app's own workers (previews, uploads, lexicon re-renders): running jobs finish,
    queued ones are dropped, the threads are joined. Call it when the server has stopped serving
    and before ``services.stop()`` (the jobs use the services). Safe to call twice."""
    from broadcaster.web.ui.jobs import JOBS_KEY

    runner = app.extensions.get(JOBS_KEY)
    if runner is not None:
        runner.shutdown()


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.blueprint not in ("api", "federation"):
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Content-Security-Policy", _CSP)
        if response.mimetype == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")
    return response


def _error_page(exc: Exception) -> Any:
    code = exc.code if isinstance(exc, HTTPException) and exc.code else 500
    if code == 500:
        _LOGGER.exception("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    title = _ERROR_TITLES_VI.get(code, "Lỗi")
    description = exc.description if isinstance(exc, HTTPException) else None
    # werkzeug's default English descriptions are replaced by ours; ours (Vietnamese) pass through.
    if not description or description == type(exc).description:
        description = _ERROR_TEXT_VI.get(code, title)
    wants_json = (
        request.blueprint == "api"
        or request.accept_mimetypes.best_match(["application/json", "text/html"]) == "application/json"
        and request.accept_mimetypes["application/json"] > request.accept_mimetypes["text/html"]
    )
    if wants_json:
        return jsonify(error=description), code
    return render_template("error.html", code=code, title=title, message=description), code
