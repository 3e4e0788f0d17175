"""Tool runtimes."""
