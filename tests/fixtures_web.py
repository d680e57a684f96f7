"""Fixtures of the web tests."""
