"""The container tests: a package, so that their conftest.py does not shadow tests/conftest.py."""
