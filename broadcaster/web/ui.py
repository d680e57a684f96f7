"""Officer web UI blueprint (placeholder until the UI lands)."""

from flask import Blueprint

bp = Blueprint("ui", __name__)
