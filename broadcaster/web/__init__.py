"""Flask app factory. Starts nothing: no scheduler, no MQTT (the reloader would run them twice)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Flask

if TYPE_CHECKING:
    from broadcaster.services import Services
    from broadcaster.settings import Settings

EXTENSION_KEY = "loa"


def create_app(settings: Settings, services: Services, test_config: dict[str, Any] | None = None) -> Flask:
    """Build the web app around already-built services (stored in ``app.extensions["loa"]``)."""
    app = Flask(__name__)
    settings.ensure_instance()
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=50 * 1024 * 1024,  # uploads: recorded audio, .docx/.pdf documents
        JSON_AS_ASCII=False,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    if test_config:
        app.config.update(test_config)
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION_KEY] = services

    from broadcaster.web import api, ui

    app.register_blueprint(api.bp, url_prefix="/api")
    app.register_blueprint(ui.bp)
    return app


def services_of(app: Flask) -> Services:
    return app.extensions[EXTENSION_KEY]
