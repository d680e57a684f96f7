"""Fixtures of the broker tests."""
