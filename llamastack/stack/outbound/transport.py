"""HTTP clients that connect only where the outbound policy allows.

httpcore (under httpx; httpcore2 under httpx2) opens every connection through a network backend's
``connect_tcp(host, port)``. The guarded backend resolves the host itself, keeps the addresses the
policy allows and connects to one of exactly those, so the address checked is the address connected
to: there is no second DNS lookup for a rebinding name server to answer differently. TLS is
unaffected: httpcore verifies the certificate and sends SNI for the URL's hostname, taken from the
request rather than the socket, and the Host header is the request's. A redirect is a new request
through the same connection pool, so every hop is checked; a refused address is never connected to.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING, Any

from ..errors import OutboundRefusedError

if TYPE_CHECKING:
    from .policy import OutboundPolicy

# The HTTP libraries this module can guard, with their httpcore.
_CORE = {"httpx": "httpcore", "httpx2": "httpcore2"}
_TRANSPORT_ARGS = ("cert", "http1", "http2", "limits", "retries")
# Arguments that would route connections around the guarded transport.
_REFUSED_ARGS = ("transport", "mounts", "proxy", "proxies", "app", "uds")


class GuardedBackend:
    """An httpcore network backend that connects only to addresses the policy allows."""

    def __init__(self, policy: OutboundPolicy, core: Any) -> None:
        self.policy = policy
        self._inner = core.AnyIOBackend()
        self._connect_error: type[Exception] = core.ConnectError
        self._connect_timeout: type[Exception] = core.ConnectTimeout

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> Any:
        import anyio

        try:
            with anyio.fail_after(timeout):
                addresses = await self.policy.addresses(host, port)
        except TimeoutError:
            raise self._connect_timeout(f"Timed out resolving {host}.") from None
        except OSError as exc:  # the name does not resolve
            raise self._connect_error(f"Cannot resolve {host}: {exc.strerror or exc}.") from None
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except self._connect_error as exc:
                failure = exc
        assert failure is not None  # addresses() never returns an empty list
        raise failure

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> Any:
        raise OutboundRefusedError("Outbound requests do not use Unix sockets.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@functools.cache
def _transport_class(library: str) -> type:
    """`library`.AsyncHTTPTransport with its connection pool opening connections through
    GuardedBackend; everything else (request mapping, errors, streaming) is the library's own."""
    http = importlib.import_module(library)
    core = importlib.import_module(_CORE[library])

    class GuardedTransport(http.AsyncHTTPTransport):  # type: ignore[name-defined,misc]
        def __init__(
            self,
            policy: OutboundPolicy,
            *,
            verify: Any = True,
            cert: Any = None,
            http1: bool = True,
            http2: bool = False,
            limits: Any = None,
            retries: int = 0,
        ) -> None:
            limits = limits or http.Limits(max_connections=100, max_keepalive_connections=20)
            ssl_context = http.create_ssl_context(verify=verify, cert=cert)
            super().__init__(verify=ssl_context, http1=http1, http2=http2, limits=limits, retries=retries)
            # The library keeps its httpcore pool in `_pool` and offers no network_backend argument;
            # refuse to run unguarded if that ever changes rather than connect unchecked.
            pool_class: Any = core.AsyncConnectionPool
            guardable = type(getattr(self, "_pool", None)) is pool_class
            if not guardable:
                raise RuntimeError(f"{library} {http.__version__} is not supported by the outbound guard.")
            self.backend = GuardedBackend(policy, core)
            self._pool = pool_class(
                ssl_context=ssl_context,
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                http1=http1,
                http2=http2,
                retries=retries,
                network_backend=self.backend,
            )

    GuardedTransport.__qualname__ = GuardedTransport.__name__ = f"Guarded{library.capitalize()}Transport"
    return GuardedTransport


def guarded_transport(policy: OutboundPolicy, library: str = "httpx", **kwargs: Any) -> Any:
    return _transport_class(library)(policy, **kwargs)


def guarded_async_client(policy: OutboundPolicy, library: str = "httpx", **kwargs: Any) -> Any:
    """`library`.AsyncClient(**kwargs) over a guarded transport. Environment proxies and .netrc are
    ignored (trust_env=False): through a proxy, the proxy would be the address checked."""
    refused = [name for name in _REFUSED_ARGS if name in kwargs]
    if refused:
        raise TypeError(f"guarded clients choose their own transport; drop {', '.join(refused)}")
    http = importlib.import_module(library)
    transport_kwargs = {name: kwargs.pop(name) for name in (*_TRANSPORT_ARGS, "verify") if name in kwargs}
    transport = guarded_transport(policy, library, **transport_kwargs)
    return http.AsyncClient(transport=transport, trust_env=False, **kwargs)
