"""What a build installs: the providers it names, and the pip packages the registry lists for them.

A build starts from one of: a bundled distribution (its run.yaml), a run.yaml, an upstream-style
build.yaml (``distribution_spec.providers``), or ``--providers api=type,...``. The packages are never
listed per distribution: they come from each provider's registry entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llamastack.stack.errors import ConfigError

_PKG_REF = re.compile(r"pkg://([A-Za-z0-9_]+)/")


class BuildError(ConfigError):
    """A build input that cannot be built; the message says what to do."""


@dataclass(frozen=True)
class ProviderRef:
    api: str
    provider_type: str


@dataclass
class BuildSpec:
    name: str
    providers: list[ProviderRef]
    run_config: dict[str, Any] | None  # the parsed run.yaml, env references unexpanded
    source: str  # what the build was made from, for messages
    extra_packages: list[str] = field(default_factory=list)  # a build.yaml's additional_pip_packages
    left_out: frozenset[str] = frozenset()  # canonical names of packages the build leaves out

    def without(self, provider_types: set[str]) -> BuildSpec:
        """This build minus some provider types: their entries leave the run config too."""
        providers = [p for p in self.providers if p.provider_type not in provider_types]
        run_config = _drop_providers(self.run_config, provider_types) if self.run_config else None
        return BuildSpec(
            self.name, providers, run_config, self.source, list(self.extra_packages), self.left_out
        )

    def leaving_out(self, names: set[str]) -> BuildSpec:
        """This build without some optional packages (their providers run without them)."""
        from packaging.utils import canonicalize_name

        left_out = self.left_out | {canonicalize_name(n) for n in names}
        return BuildSpec(
            self.name, self.providers, self.run_config, self.source, list(self.extra_packages), left_out
        )

    def packages(self) -> list[str]:
        """The provider packages, merged per project (see `merge_requirements`), plus extras."""
        from llamastack.providers.registry import get_spec
        from llamastack.stack.datatypes import Api

        wanted: list[tuple[str, str]] = []
        for ref in self.providers:
            spec = get_spec(Api(ref.api), ref.provider_type)
            assert spec is not None  # checked when the spec was made
            wanted.extend((req, ref.provider_type) for req in spec.pip_packages)
        wanted.extend(self._config_packages())
        wanted.extend((req, "additional_pip_packages") for req in self.extra_packages)
        merged = merge_requirements(wanted)
        if not self.left_out:
            return merged
        from packaging.requirements import Requirement
        from packaging.utils import canonicalize_name

        return [r for r in merged if canonicalize_name(Requirement(r).name) not in self.left_out]

    def _config_packages(self) -> list[tuple[str, str]]:
        """What the run config's provider settings need beyond their types (``CONFIG_PACKAGES``),
        judged on the defaults: what runs when no environment variable says otherwise."""
        if not self.run_config:
            return []
        from llamastack.providers.registry import CONFIG_PACKAGES
        from llamastack.stack.config import substitute_env

        wanted: list[tuple[str, str]] = []
        for entries in (self.run_config.get("providers") or {}).values():
            for entry in entries or []:
                needs = CONFIG_PACKAGES.get(str((entry or {}).get("provider_type")))
                config = (entry or {}).get("config") or {}
                for (key, value), packages in (needs or {}).items():
                    try:
                        default = substitute_env(str(config.get(key, "")), {})
                    except ConfigError:
                        continue  # a value the deployment must give: nothing to judge by
                    if str(default) == value:
                        owner = f"{entry['provider_type']} with {key}: {value}"
                        wanted.extend((req, owner) for req in packages)
        return wanted

    def model_packages(self) -> list[str]:
        """Packages holding the default model weights the run config names (``pkg://module/...``)."""
        if not self.run_config:
            return []
        from llamastack.providers.registry import MODEL_PACKAGES
        from llamastack.stack.config import substitute_env

        found: list[str] = []
        for model in self.run_config.get("models") or []:
            try:
                # Defaults only: what is served when no environment variable names another model.
                ref = substitute_env(str((model or {}).get("provider_model_id") or ""), {})
            except ConfigError:
                continue  # a model the deployment must name: nothing to bake in
            for module in _PKG_REF.findall(str(ref or "")):
                package = MODEL_PACKAGES.get(module)
                if package is None:
                    raise BuildError(
                        f"Model reference pkg://{module}/... names a package the build does not know; "
                        "give the model as a file path, or add the package to MODEL_PACKAGES in "
                        "llamastack/providers/registry.py."
                    )
                if package not in found:
                    found.append(package)
        return found


def merge_requirements(wanted: list[tuple[str, str]]) -> list[str]:
    """One requirement per project, specifiers combined; raises BuildError when two cannot both hold.

    ``wanted`` pairs each requirement with who asked for it, for the error message.
    """
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name

    from llamastack.providers.registry import SUPERSEDED_BY

    merged: dict[str, tuple[Requirement, list[str]]] = {}
    for text, owner in wanted:
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise BuildError(f"'{text}' (from {owner}) is not a valid requirement: {exc}") from None
        key = canonicalize_name(req.name)
        if key not in merged:
            merged[key] = (req, [owner])
            continue
        current, owners = merged[key]
        combined = SpecifierSet(str(current.specifier)) & req.specifier
        pins = {s.version for s in combined if s.operator in ("==", "===")}
        if len(pins) > 1 or (pins and not combined.contains(next(iter(pins)), prereleases=True)):
            raise BuildError(
                f"Conflicting requirements for {req.name}: '{current}' (from {', '.join(owners)}) and "
                f"'{req}' (from {owner}). Build these providers into separate images, or drop one "
                "with --without."
            )
        current.specifier = combined
        current.extras |= req.extras
        if str(current.marker or "") != str(req.marker or ""):
            current.marker = None  # wanted under different conditions: wanted everywhere
        owners.append(owner)
    for small, large in SUPERSEDED_BY.items():
        if canonicalize_name(small) in merged and canonicalize_name(large) in merged:
            del merged[canonicalize_name(small)]
    return sorted((str(req) for req, _ in merged.values()), key=str.lower)


def from_distribution(name: str) -> BuildSpec:
    from llamastack.distributions import available

    dists = available()
    if name not in dists:
        raise BuildError(
            f"No distribution named '{name}'. Bundled: {', '.join(dists) or 'none'} "
            "(see `llama-stack list-distributions`), or give --config with a run.yaml or build.yaml."
        )
    spec = from_config_file(dists[name])
    return BuildSpec(name, spec.providers, spec.run_config, f"distribution '{name}'")


def from_config_file(path: Path) -> BuildSpec:
    """A run.yaml (``providers`` with entries) or an upstream build.yaml (``distribution_spec``)."""
    import yaml

    if not path.is_file():
        raise BuildError(f"'{path}' does not exist; give a run.yaml or build.yaml.")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise BuildError(f"'{path}' is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise BuildError(f"'{path}' is not a run.yaml or build.yaml (expected a mapping at the top).")
    if "distribution_spec" in raw:
        return _from_build_yaml(raw, path)
    if not isinstance(raw.get("providers"), dict):
        raise BuildError(
            f"'{path}' has neither 'providers' (a run.yaml) nor 'distribution_spec' (a build.yaml)."
        )
    refs: list[ProviderRef] = []
    for api, entries in raw["providers"].items():
        for entry in entries or []:
            if not isinstance(entry, dict) or "provider_type" not in entry:
                raise BuildError(f"'{path}': every providers.{api} entry needs a provider_type.")
            refs.append(ProviderRef(str(api), str(entry["provider_type"])))
    name = str(raw.get("image_name") or path.parent.name)
    return BuildSpec(name, _checked(refs, str(path)), raw, f"run config {path}")


def _from_build_yaml(raw: dict[str, Any], path: Path) -> BuildSpec:
    dist = raw.get("distribution_spec") or {}
    providers = dist.get("providers") if isinstance(dist, dict) else None
    if not isinstance(providers, dict):
        raise BuildError(f"'{path}': distribution_spec.providers must map APIs to provider types.")
    refs: list[ProviderRef] = []
    for api, entries in providers.items():
        for entry in [entries] if isinstance(entries, str) else entries or []:
            # Upstream writes plain strings (v0.2) or {provider_type: ...} mappings (later).
            provider_type = entry.get("provider_type") if isinstance(entry, dict) else entry
            if not isinstance(provider_type, str):
                raise BuildError(f"'{path}': distribution_spec.providers.{api} entries must name types.")
            refs.append(ProviderRef(str(api), provider_type))
    extras = raw.get("additional_pip_packages") or []
    name = str(raw.get("image_name") or path.stem)
    return BuildSpec(name, _checked(refs, str(path)), None, f"build config {path}", [str(e) for e in extras])


def from_provider_list(text: str, name: str | None) -> BuildSpec:
    """``inference=inline::llama-cpp,vector_io=inline::sqlite-vec`` (``api=type``, comma-separated)."""
    refs: list[ProviderRef] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        api, sep, provider_type = item.partition("=")
        if not sep or not api or not provider_type:
            raise BuildError(
                f"--providers expects api=provider_type items, comma-separated "
                f"(e.g. inference=inline::llama-cpp), got '{item}'."
            )
        refs.append(ProviderRef(api.strip().replace("-", "_"), provider_type.strip()))
    if not refs:
        raise BuildError("--providers names no provider; e.g. --providers inference=inline::llama-cpp.")
    return BuildSpec(name or "custom", _checked(refs, "--providers"), None, "--providers")


def _checked(refs: list[ProviderRef], where: str) -> list[ProviderRef]:
    """Known APIs and provider types only, each once; templates that choose a type are refused."""
    from llamastack.providers.registry import get_spec, providers_for
    from llamastack.stack.datatypes import Api

    seen: list[ProviderRef] = []
    for ref in refs:
        try:
            api = Api(ref.api)
        except ValueError:
            raise BuildError(
                f"{where}: unknown API '{ref.api}'. Known: {', '.join(a.value for a in Api)} "
                "(see `llama-stack list-apis`)."
            ) from None
        if get_spec(api, ref.provider_type) is None:
            known = ", ".join(p.provider_type for p in providers_for(api)) or "none yet"
            raise BuildError(
                f"{where}: no {api.value} provider '{ref.provider_type}'. Available: {known} "
                f"(see `llama-stack list-providers {api.value}`)."
            )
        if ref not in seen:
            seen.append(ref)
    return seen


def _drop_providers(run_config: dict[str, Any], provider_types: set[str]) -> dict[str, Any]:
    """The run config without entries of the given types, nor the models, shields, tool groups and
    vector dbs that name their provider ids."""
    config = dict(run_config)
    dropped_ids: set[str] = set()
    providers: dict[str, list[Any]] = {}
    for api, entries in (config.get("providers") or {}).items():
        kept = []
        for entry in entries or []:
            if entry.get("provider_type") in provider_types:
                dropped_ids.add(str(entry.get("provider_id")))
            else:
                kept.append(entry)
        if kept:
            providers[api] = kept
    config["providers"] = providers
    for section in ("models", "shields", "tool_groups", "vector_dbs"):
        if isinstance(config.get(section), list):
            config[section] = [e for e in config[section] if str(e.get("provider_id")) not in dropped_ids]
    return config
