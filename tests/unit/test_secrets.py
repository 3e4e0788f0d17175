"""Secrets are typed, shown as ******** by every serialisation, and scrubbed from upstream errors."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest
from pydantic import BaseModel, SecretStr

from llamastack.providers.tool_runtime.web.config import BraveSearchConfig, WolframAlphaConfig
from llamastack.providers.tool_runtime.web.provider import WolframAlpha
from llamastack.stack.apis.tools import ToolGroup
from llamastack.stack.config import parse_run_config
from llamastack.stack.errors import ConfigError, UpstreamError
from llamastack.stack.outbound import OutboundConfig, OutboundPolicy
from llamastack.stack.secrets import REDACTED, Secret, is_secret_key, redact

KEY = "sk-live-0123456789abcdef"


def test_secret_fields_never_serialise_their_value() -> None:
    config = BraveSearchConfig(api_key=KEY)
    assert isinstance(config.api_key, SecretStr)
    assert config.api_key.get_secret_value() == KEY
    for shown in (
        config.model_dump_json(),
        json.dumps(config.model_dump(mode="json")),
        str(config.model_dump()),
        repr(config),
        str(config),
        str(config.api_key),
    ):
        assert KEY not in shown
        assert REDACTED in shown
    assert config.model_dump(mode="json")["api_key"] == REDACTED
    assert BraveSearchConfig().model_dump(mode="json")["api_key"] is None  # unset stays visible as unset


def test_redact_masks_typed_secrets_secret_keys_and_url_passwords() -> None:
    class Config(BaseModel):
        typed: Secret
        plain: SecretStr
        headers: dict[str, dict[str, str]]
        url: str
        max_tokens: int
        tokenizer: str

    config = Config(
        typed=KEY,
        plain=KEY,
        headers={"http://mcp/": {"Authorization": f"Bearer {KEY}", "Accept": "text/plain"}},
        url=f"https://user:{KEY}@chroma.internal:8000/db",
        max_tokens=512,
        tokenizer="llama3",
    )
    shown = redact(config)
    assert KEY not in json.dumps(shown)
    assert shown["typed"] == shown["plain"] == REDACTED
    assert shown["headers"] == {"http://mcp/": {"Authorization": REDACTED, "Accept": "text/plain"}}
    assert shown["url"] == f"https://user:{REDACTED}@chroma.internal:8000/db"
    assert (shown["max_tokens"], shown["tokenizer"]) == (512, "llama3")  # look-alike names are kept


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("api_key", True),
        ("brave_search_api_key", True),
        ("X-Subscription-Token", True),
        ("apiKey", True),
        ("Authorization", True),
        ("password", True),
        ("aws_secret_access_key", True),
        ("max_tokens", False),
        ("tokenizer", False),
        ("key", False),
        ("mcp_headers", False),
        ("db_path", False),
    ],
)
def test_secret_key_names(name: str, secret: bool) -> None:
    assert is_secret_key(name) is secret


def test_auth_keys_accept_a_comma_separated_string_and_never_show_in_errors() -> None:
    raw = {
        "image_name": "t",
        "providers": {},
        "server": {"auth": {"api_keys": "${env.KEYS}", "admin_keys": "${env.ADMIN:=}"}},
    }
    config = parse_run_config(raw, {"KEYS": " k1 , k2,,"})
    assert [k.get_secret_value() for k in config.server.auth.api_keys] == ["k1", "k2"]
    assert config.server.auth.admin_keys == [] and config.server.auth.enabled
    assert "k1" not in config.model_dump_json() and "k1" not in repr(config)
    assert not parse_run_config({**raw, "server": {}}, {}).server.auth.enabled
    with pytest.raises(ConfigError) as err:
        parse_run_config(raw, {"KEYS": "good,has space-in-it"})
    assert "key #2" in err.value.detail and "space-in-it" not in err.value.detail


@pytest.fixture()
def echoing_upstream() -> Iterator[str]:
    """An upstream that fails and echoes the request line, key included (as some APIs do)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"bad request: {self.path}".encode()
            self.send_response(500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/wolfram"
    server.shutdown()


async def test_upstream_errors_echoing_the_key_are_scrubbed(echoing_upstream: str) -> None:
    # The upstream is a loopback fixture: the outbound policy must allow it, and only it.
    port = echoing_upstream.rsplit(":", 1)[1].split("/")[0]
    loopback = OutboundPolicy(OutboundConfig(allow_hosts=[f"127.0.0.1:{port}"]))
    tool = WolframAlpha(WolframAlphaConfig(api_key=KEY, base_url=echoing_upstream), outbound=loopback)
    group = ToolGroup(identifier="builtin::wolfram_alpha", provider_id="w")
    with pytest.raises(UpstreamError) as err:
        await tool.invoke("wolfram_alpha", {"query": "2+2"}, group, None)
    assert "appid=" in err.value.detail  # the upstream's answer is still shown...
    assert KEY not in err.value.detail  # ...without the key it echoed
    with pytest.raises(UpstreamError) as err:
        await tool.invoke(
            "wolfram_alpha", {"query": "2+2"}, group, {"wolfram_alpha_api_key": "per-request-9"}
        )
    assert "per-request-9" not in err.value.detail
