"""The outbound-request policy: what the server may connect to when it fetches on a client's behalf.

- `policy.py`: the config (`server.outbound`), the address rules and `OutboundPolicy`.
- `transport.py`: httpx / httpx2 clients whose every connection is checked at connect time.
"""

from ..errors import OutboundRefusedError
from .policy import (
    ENV_SETTING,
    SETTING,
    AllowRule,
    OutboundConfig,
    OutboundPolicy,
    classify,
)

__all__ = [
    "ENV_SETTING",
    "SETTING",
    "AllowRule",
    "OutboundConfig",
    "OutboundPolicy",
    "OutboundRefusedError",
    "classify",
]
