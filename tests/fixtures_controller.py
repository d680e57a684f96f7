"""Fixtures of the controller tests."""
