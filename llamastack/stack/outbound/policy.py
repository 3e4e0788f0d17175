"""Which addresses the server may connect to when it fetches something on a client's behalf.

Documents by URL, MCP endpoints and web APIs are reached by the server, so without a policy a client
could make it reach what only the server can: its own loopback services, the private network, a
cloud's metadata endpoint (and, from the answers, map which ports are open). The policy refuses
every address that is not public unless the run config allows it (`server.outbound`). It judges
resolved IP addresses; `transport.py` applies it to the exact address each connection is opened to.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import OutboundRefusedError

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Where the setting lives, for error messages.
SETTING = "server.outbound.allow_hosts"
ENV_SETTING = "LLAMA_STACK_OUTBOUND_ALLOW"

# Instance metadata services hand out cloud credentials: refused even with allow_private_networks.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean
        "169.254.170.2",  # AWS ECS task credentials
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: not reachable from the internet
# Not global, though some Python versions' is_global say otherwise.
_RESERVED = (ipaddress.ip_network("192.0.0.0/24"), ipaddress.ip_network("64:ff9b:1::/48"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the IPv4 address is in the last 32 bits
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64), which is where it leads."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def effective_address(ip: IPAddress) -> IPAddress:
    return _embedded_ipv4(ip) or ip


def classify(ip: IPAddress) -> str | None:
    """Why `ip` is not a public address ("loopback", "private", ...), or None when it is public."""
    ip = effective_address(ip)
    if ip in METADATA_ADDRESSES:
        return "cloud metadata"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "shared (carrier-grade NAT)"
    if ip.is_private or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local):
        return "private"
    if ip.is_reserved or not ip.is_global or any(ip.version == n.version and ip in n for n in _RESERVED):
        return "reserved"
    return None


def parse_ip(text: str) -> IPAddress | None:
    """`text` as an IP address in its standard notation (an IPv6 zone suffix dropped), or None."""
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class AllowRule:
    """One allow_hosts entry: a hostname, an IP address or a CIDR network, optionally with a port."""

    text: str
    hostname: str | None = None
    network: IPNetwork | None = None
    port: int | None = None

    @classmethod
    def parse(cls, entry: str) -> AllowRule:
        text = entry.strip().lower()
        if not text:
            raise ValueError("empty entry")
        if "://" in text:
            raise ValueError(f"'{entry}': give a host, host:port, IP, [IPv6]:port or CIDR, not a URL")
        port: int | None = None
        host = text
        if text.startswith("["):
            match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", text)
            if match is None:
                raise ValueError(f"'{entry}': a bracketed IPv6 address is written [addr] or [addr]:port")
            host, port = match.group(1), _port(match.group(2), entry)
        elif text.count(":") == 1:
            host, _, raw_port = text.partition(":")
            port = _port(raw_port, entry)
        if _is_network(host):
            try:
                return cls(text, network=ipaddress.ip_network(host, strict=False), port=port)
            except ValueError:
                raise ValueError(f"'{entry}': not a valid IP address or CIDR network") from None
        if ":" in host:
            raise ValueError(f"'{entry}': not a valid IPv6 address (write [addr]:port to give a port)")
        host = host.rstrip(".")
        if not _HOSTNAME.fullmatch(host):
            raise ValueError(f"'{entry}': not a valid hostname")
        return cls(text, hostname=host, port=port)

    def matches(self, host: str, ip: IPAddress | None, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.hostname is not None:
            return host.lower().rstrip(".") == self.hostname
        if ip is None or self.network is None:
            return False
        return any(
            a.version == self.network.version and a in self.network for a in {ip, effective_address(ip)}
        )


def _is_network(text: str) -> bool:
    return bool(re.fullmatch(r"[0-9.]+(/\d+)?|[0-9a-f:.]*:[0-9a-f:.]*(/\d+)?", text))


def _port(raw: str | None, entry: str) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"'{entry}': the port must be a number from 1 to 65535")
    return int(raw)


class OutboundConfig(BaseModel):
    """`server.outbound` in a run config: what the server may connect to on a client's behalf."""

    model_config = ConfigDict(extra="forbid")

    allow_private_networks: bool = Field(
        default=False,
        description=(
            "Allow loopback, private, link-local and other non-public addresses (cloud metadata "
            "addresses stay refused unless listed in allow_hosts). For single-user machines only."
        ),
    )
    allow_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "Hosts allowed although not public: 'host', 'host:port', an IP, '[IPv6]:port' or a CIDR "
            "network ('10.0.0.0/8'); a string is split at commas."
        ),
    )

    @field_validator("allow_hosts", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            return [part for part in re.split(r"[,\s]+", value) if part]
        return value

    @field_validator("allow_hosts")
    @classmethod
    def _check(cls, value: list[str]) -> list[str]:
        for entry in value:
            AllowRule.parse(entry)
        return value


class OutboundPolicy:
    """The server's outbound policy; providers receive it from the stack (`ProviderDeps.outbound`)."""

    def __init__(self, config: OutboundConfig | None = None) -> None:
        self.config = config or OutboundConfig()
        self.rules = tuple(AllowRule.parse(entry) for entry in self.config.allow_hosts)

    def widened(self, *, allow_private_networks: bool) -> OutboundPolicy:
        """This policy, with private networks allowed too when asked (a provider's own opt-in)."""
        if not allow_private_networks or self.config.allow_private_networks:
            return self
        return OutboundPolicy(self.config.model_copy(update={"allow_private_networks": True}))

    def refusal(self, host: str, ip: IPAddress, port: int) -> str | None:
        """Why connecting to `ip` (resolved from `host`) on `port` is refused, or None if allowed."""
        if any(rule.matches(host, ip, port) for rule in self.rules):
            return None
        reason = classify(ip)
        if reason is None:
            return None
        if reason in ("cloud metadata", "unspecified", "multicast"):
            return reason  # not something allow_private_networks is meant to open
        return None if self.config.allow_private_networks else reason

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for `host`: those it resolves to that the policy allows, in the
        resolver's order. Raises `OutboundRefusedError` when there are none, and OSError when `host`
        does not resolve."""
        import anyio

        literal = parse_ip(host)
        if literal is not None:
            resolved: Sequence[str] = [host]
        else:
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            resolved = list(dict.fromkeys(str(info[4][0]) for info in infos))
        allowed: list[str] = []
        refused: list[tuple[str, str]] = []
        for text in resolved:
            ip = parse_ip(text)
            if ip is None:
                continue
            reason = self.refusal(host, ip, port)
            if reason is None:
                allowed.append(text)
            else:
                refused.append((text, reason))
        if not allowed:
            log.warning(
                "Refused an outbound connection to %s port %d: %s",
                host,
                port,
                ", ".join(f"{a} is {r}" for a, r in refused) or "no addresses",
            )
            raise OutboundRefusedError(self.refusal_message(host, port, [r for _, r in refused], literal))
        return allowed

    def refusal_message(self, host: str, port: int, reasons: Iterable[str], literal: IPAddress | None) -> str:
        what = ", ".join(dict.fromkeys(reasons)) or "none usable"
        entry = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        subject = (
            f"{host} is not a public address ({what})"
            if literal
            else f"{host} is not a public address (it resolves only to {what} addresses)"
        )
        return (
            f"Refused to connect to {host} port {port}: {subject}. This server does not connect to "
            "loopback, private, link-local or cloud-metadata addresses on a client's behalf; if this "
            f"host is meant to be reachable, add '{entry}' to {SETTING} in the run config "
            f"({ENV_SETTING} in the bundled distributions)."
        )

    # --- HTTP clients ----------------------------------------------------------------------------

    def async_client(self, *, verify: Any = True, **kwargs: Any) -> httpx.AsyncClient:
        """An httpx AsyncClient whose every connection, redirects included, goes through this policy.
        Takes httpx.AsyncClient's arguments (no proxies: a proxy would be the address connected to)."""
        from .transport import guarded_async_client

        client: httpx.AsyncClient = guarded_async_client(self, "httpx", verify=verify, **kwargs)
        return client

    def async_client_httpx2(self, *, verify: Any = True, **kwargs: Any) -> Any:
        """The same for httpx2 (the HTTP library of the `mcp` SDK)."""
        from .transport import guarded_async_client

        return guarded_async_client(self, "httpx2", verify=verify, **kwargs)
