"""The outbound policy and its guarded HTTP clients, against real sockets on 127.0.0.1.

A refused address must never see a connection: the listeners here are non-blocking sockets whose
accept queue is checked after each refused request."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llamastack.stack.config import parse_run_config
from llamastack.stack.errors import ConfigError
from llamastack.stack.outbound import (
    AllowRule,
    OutboundConfig,
    OutboundPolicy,
    OutboundRefusedError,
    classify,
)

from conftest import LoopbackWeb, free_port


@pytest.fixture()
def listener() -> Iterator[socket.socket]:
    """An open port on 127.0.0.1 that records, without answering, whether anything connected."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def _connected(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


@pytest.fixture()
def web() -> Iterator[LoopbackWeb]:
    server = LoopbackWeb({"/doc": (200, {"Content-Type": "text/plain"}, b"hello")})
    yield server
    server.close()


def _policy(*allow: str, private: bool = False) -> OutboundPolicy:
    return OutboundPolicy(OutboundConfig(allow_hosts=list(allow), allow_private_networks=private))


async def _get(policy: OutboundPolicy, url: str) -> httpx.Response:
    async with policy.async_client(timeout=5, follow_redirects=True) as client:
        return await client.get(url)


# --- which addresses are public ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("::ffff:192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("100.64.0.1", "shared (carrier-grade NAT)"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "private"),
    ],
)
def test_non_public_addresses(address: str, kind: str) -> None:
    assert classify(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses(address: str) -> None:
    assert classify(ipaddress.ip_address(address)) is None


# --- refused URLs: no connection, same answer whether the port is open or not ---------------------


@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.1:{port}/",
        "http://localhost:{port}/",  # a hostname that resolves to loopback
        "http://2130706433:{port}/",  # 127.0.0.1 as one decimal number
        "http://0x7f.1:{port}/",  # and in hex, shortened
        "http://[::ffff:127.0.0.1]:{port}/",  # IPv4-mapped IPv6
        "http://0.0.0.0:{port}/",  # reaches loopback on Linux
        "http://0:{port}/",  # and so does 0
    ],
)
async def test_loopback_in_any_spelling_is_refused_without_connecting(
    template: str, listener: socket.socket
) -> None:
    url = template.format(port=listener.getsockname()[1])
    with pytest.raises(OutboundRefusedError, match="is not a public address") as refused:
        await _get(OutboundPolicy(), url)
    assert refused.value.status_code == 400
    assert "server.outbound.allow_hosts" in refused.value.detail
    assert "LLAMA_STACK_OUTBOUND_ALLOW" in refused.value.detail
    assert not _connected(listener)


@pytest.mark.parametrize("template", ["http://0177.0.0.1:{port}/", "http://127.0.0.1.:{port}/"])
async def test_spellings_that_do_not_parse_or_resolve_fail_without_connecting(
    template: str, listener: socket.socket
) -> None:
    with pytest.raises((httpx.InvalidURL, httpx.ConnectError)):  # octal: invalid; trailing dot: no name
        await _get(OutboundPolicy(), template.format(port=listener.getsockname()[1]))
    assert not _connected(listener)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://10.0.0.1/",
        "http://192.168.0.1:8080/",
        "http://[::1]/",
        "http://[fe80::1]/",
        "http://100.64.0.1/",
        "https://127.0.0.1/",
    ],
)
async def test_private_link_local_and_metadata_addresses_are_refused(url: str) -> None:
    host = httpx.URL(url).host
    with pytest.raises(OutboundRefusedError, match=f"Refused to connect to {host} port"):
        await _get(OutboundPolicy(), url)


async def test_open_and_closed_ports_answer_alike(listener: socket.socket) -> None:
    open_port = listener.getsockname()[1]
    closed_port = free_port()
    answers = []
    for port in (open_port, closed_port):
        with pytest.raises(OutboundRefusedError) as refused:
            await _get(OutboundPolicy(), f"http://127.0.0.1:{port}/v1/providers")
        answers.append(refused.value.detail.replace(str(port), "PORT"))
    assert answers[0] == answers[1]
    assert not _connected(listener)


async def test_metadata_stays_refused_with_private_networks_allowed(web: LoopbackWeb) -> None:
    private = _policy(private=True)
    assert (await _get(private, f"http://127.0.0.1:{web.port}/doc")).text == "hello"
    with pytest.raises(OutboundRefusedError, match="cloud metadata"):
        await _get(private, "http://169.254.169.254/latest/meta-data/")
    # Only an explicit entry allows a metadata address.
    assert _policy("169.254.169.254:80").refusal("x", ipaddress.ip_address("169.254.169.254"), 80) is None


# --- the allowlist ---------------------------------------------------------------------------------


async def test_allowing_one_port_allows_that_port_only(web: LoopbackWeb, listener: socket.socket) -> None:
    policy = _policy(f"127.0.0.1:{web.port}")
    assert (await _get(policy, f"http://127.0.0.1:{web.port}/doc")).text == "hello"
    # The same address in other spellings is the same allowed destination.
    assert (await _get(policy, f"http://[::ffff:127.0.0.1]:{web.port}/doc")).text == "hello"
    assert (await _get(policy, f"http://localhost:{web.port}/doc")).text == "hello"
    with pytest.raises(OutboundRefusedError):
        await _get(policy, f"http://127.0.0.1:{listener.getsockname()[1]}/doc")
    assert not _connected(listener)


async def test_hostname_and_network_entries(web: LoopbackWeb) -> None:
    by_name = _policy(f"localhost:{web.port}")
    assert (await _get(by_name, f"http://localhost:{web.port}/doc")).text == "hello"
    with pytest.raises(OutboundRefusedError):  # the name is allowed, not the address
        await _get(by_name, f"http://127.0.0.1:{web.port}/doc")
    assert (await _get(_policy("127.0.0.0/8"), f"http://127.0.0.1:{web.port}/doc")).text == "hello"
    with pytest.raises(OutboundRefusedError):
        await _get(_policy("10.0.0.0/8"), f"http://127.0.0.1:{web.port}/doc")


async def test_an_allowed_closed_port_is_an_ordinary_connect_error() -> None:
    port = free_port()
    with pytest.raises(httpx.ConnectError):
        await _get(_policy(f"127.0.0.1:{port}"), f"http://127.0.0.1:{port}/")


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("http://10.0.0.1", "not a URL"),
        ("10.0.0.1:99999", "port"),
        ("2130706433", "not a valid IP"),
        ("[::1", "bracketed"),
        ("-bad-", "not a valid hostname"),
    ],
)
def test_bad_allow_entries_stop_start_up(entry: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        AllowRule.parse(entry)
    raw = {"image_name": "x", "providers": {}, "server": {"outbound": {"allow_hosts": "${env.ALLOW}"}}}
    with pytest.raises(ConfigError, match=r"server\.outbound\.allow_hosts"):
        parse_run_config(raw, {"ALLOW": f"127.0.0.1:9000,{entry}"})


def test_allow_hosts_from_one_environment_variable() -> None:
    raw = {"image_name": "x", "providers": {}, "server": {"outbound": {"allow_hosts": "${env.ALLOW:=}"}}}
    config = parse_run_config(raw, {"ALLOW": "127.0.0.1:9000, 10.0.0.0/8,[::1]:8080"})
    assert config.server.outbound.allow_hosts == ["127.0.0.1:9000", "10.0.0.0/8", "[::1]:8080"]
    assert parse_run_config(raw, {}).server.outbound.allow_hosts == []
    default = parse_run_config({"image_name": "x", "providers": {}}).server.outbound
    assert (default.allow_private_networks, default.allow_hosts) == (False, [])


# --- every hop, and the address connected to ------------------------------------------------------


async def test_a_redirect_to_a_refused_address_is_refused(web: LoopbackWeb, listener: socket.socket) -> None:
    hidden = listener.getsockname()[1]
    web.routes["/jump"] = (302, {"Location": f"http://127.0.0.1:{hidden}/secret"}, b"")
    web.routes["/jump-by-name"] = (302, {"Location": f"http://localhost:{hidden}/secret"}, b"")
    policy = _policy(f"127.0.0.1:{web.port}")  # the first hop is allowed, the second is not
    for path in ("/jump", "/jump-by-name"):
        with pytest.raises(OutboundRefusedError, match=f"port {hidden}"):
            await _get(policy, f"http://127.0.0.1:{web.port}{path}")
    assert [p for p, _ in web.requests] == ["/jump", "/jump-by-name"]
    assert not _connected(listener)


async def test_the_checked_address_is_the_one_connected_to(
    web: LoopbackWeb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name is resolved by the policy, once per connection, and the connection goes to that very
    address: a name server that answers differently later (DNS rebinding) gets its new answer
    checked, never connected to unchecked."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def rebinding(host: object, *args: object, **kwargs: object) -> list:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name != "rebind.test":
            return real(name, *args, **kwargs)  # type: ignore[arg-type]
        asked.append(name)
        # First answer: the allowed fixture address; afterwards a private one.
        address = "127.0.0.1" if len(asked) == 1 else "10.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, web.port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    policy = _policy(f"127.0.0.1:{web.port}")
    async with policy.async_client(timeout=5) as client:
        response = await client.get(f"http://rebind.test:{web.port}/doc")
        assert response.text == "hello"
        assert asked == ["rebind.test"]  # resolved once: by the policy, not again to connect
        # The request reached the checked address with the URL's own Host header.
        assert web.requests[-1] == ("/doc", f"rebind.test:{web.port}")
        # The fixture closes each connection (HTTP/1.0), so the next request resolves afresh.
        with pytest.raises(OutboundRefusedError, match=r"resolves only to private addresses"):
            await client.get(f"http://rebind.test:{web.port}/doc")
    assert len(web.requests) == 1


def _self_signed(hostname: str) -> tuple[bytes, bytes]:
    """A certificate (PEM) for `hostname` and its key."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


async def test_tls_verifies_and_sends_sni_for_the_hostname(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connecting by IP keeps TLS about the URL's hostname: the certificate is checked against it and
    it is the SNI the server sees."""
    pytest.importorskip("cryptography", reason="generating a test certificate needs cryptography")
    import ssl

    cert_pem, key_pem = _self_signed("docs.test")
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    sni: list[str | None] = []
    server_context.sni_callback = lambda _sock, name, _ctx: sni.append(name)  # type: ignore[assignment]
    tls = LoopbackWeb({"/doc": (200, {"Content-Type": "text/plain"}, b"over tls")})
    tls.httpd.socket = server_context.wrap_socket(tls.httpd.socket, server_side=True)

    real = socket.getaddrinfo

    def resolve(host: object, *args: object, **kwargs: object) -> list:
        if host in ("docs.test", b"docs.test"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", tls.port))]
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    trust = ssl.create_default_context(cadata=cert_pem.decode())
    try:
        policy = _policy(f"127.0.0.1:{tls.port}")
        async with policy.async_client(timeout=5, verify=trust) as client:
            assert (await client.get(f"https://docs.test:{tls.port}/doc")).text == "over tls"
    finally:
        tls.close()
    assert sni == ["docs.test"]
    assert tls.requests == [("/doc", f"docs.test:{tls.port}")]


async def test_httpx2_clients_are_guarded_too(listener: socket.socket, web: LoopbackWeb) -> None:
    policy = _policy(f"127.0.0.1:{web.port}")
    async with policy.async_client_httpx2(timeout=5) as client:
        assert (await client.get(f"http://127.0.0.1:{web.port}/doc")).text == "hello"
        with pytest.raises(OutboundRefusedError):
            await client.get(f"http://127.0.0.1:{listener.getsockname()[1]}/")
    assert not _connected(listener)


def test_guarded_clients_take_no_other_route() -> None:
    for route in ({"proxy": "http://127.0.0.1:3128"}, {"transport": httpx.AsyncHTTPTransport()}):
        with pytest.raises(TypeError, match="transport"):
            OutboundPolicy().async_client(**route)
