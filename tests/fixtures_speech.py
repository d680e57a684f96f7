"""Fixtures of the speech tests."""
