"""Safety providers."""
