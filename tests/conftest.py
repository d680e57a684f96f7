"""Shared pytest set-up. Fixtures live in per-area modules registered here."""

pytest_plugins = [
    "tests.fixtures_broker",
    "tests.fixtures_speech",
    "tests.fixtures_controller",
    "tests.fixtures_web",
    "tests.fixtures_live",
    "tests.fixtures_postgres",
]
