"""Agents providers."""
