"""Fixtures shared by the core tests."""
