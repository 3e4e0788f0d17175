"""Files API providers."""
