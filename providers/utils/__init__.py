"""Helpers shared by providers."""
