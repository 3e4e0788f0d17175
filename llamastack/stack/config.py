"""Run config: YAML with ``${env.NAME}``, ``${env.NAME:=default}`` and ``${env.NAME:+value}``.

- ``${env.NAME}``: the variable must be set; otherwise start-up fails naming it.
- ``${env.NAME:=default}``: the variable, or ``default`` when unset or empty.
- ``${env.NAME:+value}``: ``value`` when the variable is set and non-empty, else empty.

A value that is only a substitution and comes out empty becomes ``null``, so optional
settings can be switched off from the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .outbound import OutboundConfig
from .secrets import Secret

_START = "${env."
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _closing_brace(text: str, start: int) -> int:
    """Index of the '}' that closes the '${' at ``start`` (references may nest in defaults)."""
    depth = 0
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _expand(text: str, env: Mapping[str, str], where: str) -> str:
    out: list[str] = []
    pos = 0
    while (start := text.find(_START, pos)) >= 0:
        end = _closing_brace(text, start)
        name_match = _NAME.match(text, start + len(_START))
        if end < 0 or name_match is None:
            break  # not a reference: leave the rest as it is
        out.append(text[pos:start])
        body = text[name_match.end() : end]
        name, current = name_match.group(), env.get(name_match.group())
        if body.startswith(":="):
            out.append(current if current else _expand(body[2:], env, where))
        elif body.startswith(":+"):
            out.append(_expand(body[2:], env, where) if current else "")
        elif body == "":
            if current is None:
                raise ConfigError(
                    f"Environment variable '{name}' is not set (needed by '{where or 'config'}'). "
                    f"Set it, e.g. `--env {name}=...` or `export {name}=...`."
                )
            out.append(current)
        else:
            out.append(text[start : end + 1])  # unknown operator: keep verbatim
        pos = end + 1
    out.append(text[pos:])
    return "".join(out)


def substitute_env(value: Any, env: Mapping[str, str] | None = None, *, where: str = "") -> Any:
    """Replaces ``${env...}`` references in every string of a parsed YAML tree."""
    env = os.environ if env is None else env
    if isinstance(value, dict):
        return {
            k: substitute_env(v, env, where=f"{where}.{k}" if where else str(k)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [substitute_env(v, env, where=f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or _START not in value:
        return value
    result = _expand(value, env, where)
    is_only_reference = value.startswith(_START) and _closing_brace(value, 0) == len(value) - 1
    return None if result == "" and is_only_reference else result


class ProviderConfig(BaseModel):
    """A provider to run; an entry whose provider_id comes out empty is skipped."""

    model_config = ConfigDict(extra="forbid")

    provider_id: str | None
    provider_type: str
    config: dict[str, Any] = Field(default_factory=dict)


class KVStoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = "sqlite"
    db_path: str | None = None
    namespace: str | None = None


DATABASE_URL_ENV = "LLAMA_STACK_DATABASE_URL"


def _parse_database_url(url: str) -> dict[str, Any]:
    """The long form of a database URL. The password goes into a Secret field, so the URL itself is
    never kept (nor shown): `sqlite:///relative.db`, `sqlite:////absolute.db`, `sqlite:///~/home.db`,
    `postgresql://user:password@host:5432/database?sslmode=require`."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError("expected sqlite:///<path> or postgresql://user:password@host:port/database")
    if scheme == "sqlite":
        path = rest[1:] if rest.startswith("/") else rest
        if not path:
            raise ValueError("sqlite:///<path> needs a path (e.g. sqlite:////var/lib/llamastack/state.db)")
        return {"type": "sqlite", "db_path": path}
    if scheme not in ("postgres", "postgresql"):
        raise ValueError(f"unsupported scheme '{scheme}' (use sqlite:/// or postgresql://)")
    try:
        parts = urlsplit(f"postgresql://{rest}")
        port = parts.port
    except ValueError as exc:  # the message names the part, never the password
        raise ValueError(f"not a valid postgresql:// URL ({exc})") from None
    query = dict(item.partition("=")[::2] for item in parts.query.split("&") if item)
    unknown = set(query) - {"sslmode"}
    if unknown:
        raise ValueError(f"unsupported URL parameter(s): {', '.join(sorted(unknown))} (supported: sslmode)")
    out: dict[str, Any] = {
        "type": "postgres",
        "host": unquote(parts.hostname or "") or "localhost",
        "port": port or 5432,
        "database": unquote(parts.path.lstrip("/")) or "llamastack",
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password is not None else None,
    }
    if "sslmode" in query:
        out["sslmode"] = query["sslmode"]
    return out


class StorageConfig(BaseModel):
    """Where all the stack's state lives: registries, agents and sessions, file metadata, vector
    store records, stored chat completions and responses. ``url`` is the short form
    (``LLAMA_STACK_DATABASE_URL``); it is parsed into the fields below and not kept."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["sqlite", "postgres"] = "sqlite"
    # sqlite: the database file (default: <state_dir>/registry.db).
    db_path: str | None = None
    # postgres
    host: str = "localhost"
    port: int = Field(default=5432, ge=1, le=65535)
    database: str = "llamastack"
    user: str | None = None
    password: Secret | None = None
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = None
    # 0: no connections are kept open for their own sake (none to restore while the database is away).
    pool_min_size: int = Field(default=0, ge=0)
    pool_max_size: int = Field(default=10, ge=1)
    # How long a request waits for the database before it gets 503 with Retry-After.
    connect_timeout_s: float = Field(default=5.0, gt=0)
    command_timeout_s: float = Field(default=30.0, gt=0)
    # With replicas: a replica that has not renewed its lease for this long is taken for dead, and
    # the agent turns and file ingestions it was running for interrupted (renewed every third of it).
    replica_lease_s: float = Field(default=10.0, ge=1.0, le=600.0)

    @model_validator(mode="before")
    @classmethod
    def _from_url(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "url" not in data:
            return data
        data = dict(data)
        url = data.pop("url")
        if url is None or url == "":
            return data
        if not isinstance(url, str):
            raise ValueError("url must be a string")
        parsed = _parse_database_url(url)
        clashing = sorted(k for k in parsed if k in data and data[k] != parsed[k])
        if clashing:
            raise ValueError(f"url and {', '.join(clashing)} are both set; give one or the other")
        return {**data, **parsed}

    def describe(self) -> str:
        """Where the store is, for logs and messages: never the password."""
        if self.type == "sqlite":
            return f"sqlite at {self.db_path}"
        who = f"{self.user}@" if self.user else ""
        return f"postgresql://{who}{self.host}:{self.port}/{self.database}"


class ModelInput(BaseModel):
    """A model to register at start-up; an entry whose model_id comes out empty is skipped."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_id: str | None
    provider_id: str | None = None
    provider_model_id: str | None = None
    model_type: str = "llm"
    metadata: dict[str, Any] = Field(default_factory=dict)


class ShieldInput(BaseModel):
    """A shield to register at start-up; an entry whose shield_id comes out empty is skipped."""

    model_config = ConfigDict(extra="forbid")

    shield_id: str | None
    provider_id: str | None = None
    provider_shield_id: str | None = None
    params: dict[str, Any] | None = None


class ToolGroupInput(BaseModel):
    """A tool group to register at start-up; an entry whose toolgroup_id comes out empty is skipped."""

    model_config = ConfigDict(extra="forbid")

    toolgroup_id: str | None
    provider_id: str
    mcp_endpoint: dict[str, str] | None = None
    args: dict[str, Any] | None = None


def _string_list(value: Any) -> Any:
    """Lists may also be written as one comma-separated string (what ``${env.NAME}`` gives)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class AuthConfig(BaseModel):
    """API keys. With any key set, every route but /v1/health needs ``Authorization: Bearer <key>``."""

    model_config = ConfigDict(extra="forbid")

    api_keys: list[Secret] = Field(default_factory=list)
    # Admin keys see every key's agents, files, vector dbs and stores, and may change run-config ones.
    admin_keys: list[Secret] = Field(default_factory=list)

    _split = field_validator("api_keys", "admin_keys", mode="before")(_string_list)

    @field_validator("api_keys", "admin_keys")
    @classmethod
    def _sendable(cls, keys: list[Any]) -> list[Any]:
        for i, key in enumerate(keys):
            value = key.get_secret_value()
            if not value.isascii() or not value.isprintable() or " " in value:
                # The message names the position only: a key never appears in output.
                raise ValueError(f"key #{i + 1} must be printable ASCII without spaces")
        return keys

    @property
    def enabled(self) -> bool:
        return bool(self.api_keys or self.admin_keys)


class CORSConfig(BaseModel):
    """Cross-origin browser access: off unless ``allow_origins`` lists origins (or ``*``)."""

    model_config = ConfigDict(extra="forbid")

    allow_origins: list[str] = Field(default_factory=list)
    allow_methods: list[str] = Field(default_factory=lambda: ["GET", "POST", "DELETE"])
    allow_headers: list[str] = Field(
        default_factory=lambda: ["Authorization", "Content-Type", "X-LlamaStack-Provider-Data"]
    )
    allow_credentials: bool = False
    max_age: int = Field(default=600, ge=0)

    _split = field_validator("allow_origins", "allow_methods", "allow_headers", mode="before")(_string_list)


class ServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Loopback only by default; "0.0.0.0" (or `--host 0.0.0.0`) serves every interface.
    host: str = "127.0.0.1"
    port: int = 8321
    # What the server may connect to when it fetches on a client's behalf (documents by URL, MCP).
    outbound: OutboundConfig = Field(default_factory=OutboundConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    # Host header values served besides localhost / 127.0.0.1 / [::1] (DNS-rebinding defence).
    allowed_hosts: list[str] = Field(default_factory=list)
    cors: CORSConfig = Field(default_factory=CORSConfig)

    _split = field_validator("allowed_hosts", mode="before")(_string_list)


class InferenceStoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Chat completions made through the OpenAI route are kept (GET /v1/openai/v1/chat/completions).
    enabled: bool = True


class ResponsesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Shields run over every response's input and over its output (a violation ends the response
    # with the shield's message); a request adds its own with `guardrails`.
    input_shields: list[str] = Field(default_factory=list)
    output_shields: list[str] = Field(default_factory=list)


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 2
    image_name: str
    state_dir: str = "~/.llamastack/distributions/default"
    providers: dict[str, list[ProviderConfig]]
    # The stack's database (see StorageConfig); `metadata_store` is its older, sqlite-only spelling.
    storage: StorageConfig | None = None
    metadata_store: KVStoreConfig | None = None
    models: list[ModelInput] = Field(default_factory=list)
    shields: list[ShieldInput] = Field(default_factory=list)
    tool_groups: list[ToolGroupInput] = Field(default_factory=list)
    server: ServerConfig = Field(default_factory=ServerConfig)
    inference_store: InferenceStoreConfig = Field(default_factory=InferenceStoreConfig)
    responses: ResponsesConfig = Field(default_factory=ResponsesConfig)

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).expanduser()

    def storage_config(self) -> StorageConfig:
        """The storage block, or the metadata_store one, or sqlite at <state_dir>/registry.db."""
        if self.storage is not None:
            if self.storage.type == "sqlite" and not self.storage.db_path:
                return self.storage.model_copy(update={"db_path": str(self.state_path / "registry.db")})
            return self.storage
        legacy = self.kvstore_config()
        if legacy.type != "sqlite":
            raise ConfigError(f"Unknown metadata_store type '{legacy.type}'. Use a storage: block instead.")
        return StorageConfig(type="sqlite", db_path=legacy.db_path)

    def kvstore_config(self) -> KVStoreConfig:
        store = self.metadata_store or KVStoreConfig()
        if store.type == "sqlite" and not store.db_path:
            store = store.model_copy(update={"db_path": str(self.state_path / "registry.db")})
        return store


def parse_run_config(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> RunConfig:
    data = substitute_env(dict(raw), env)
    database_url = (os.environ if env is None else env).get(DATABASE_URL_ENV)
    if database_url and data.get("storage") is None and data.get("metadata_store") is None:
        # A run config without a storage block still follows the one knob.
        data["storage"] = {"url": database_url}
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"Invalid run config: {problems}") from None


def load_run_config(path: str | Path, env: Mapping[str, str] | None = None) -> RunConfig:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Run config '{path}' does not exist. Try `llama-stack list-distributions`.")
    # libyaml's loader where PyYAML has it: the same documents, parsed in a fraction of the time.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        raw = yaml.load(path.read_text(), Loader=loader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"Run config '{path}' is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"Run config '{path}' must be a YAML mapping.")
    return parse_run_config(raw, env)
