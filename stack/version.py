"""Version of this server and of the wire contract it speaks."""

from importlib.metadata import PackageNotFoundError, version

API_CONTRACT_VERSION = "0.2.12"

try:
    __version__ = version("llamastack")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"
