"""REST API blueprint (placeholder until the API lands)."""

from flask import Blueprint

bp = Blueprint("api", __name__)
