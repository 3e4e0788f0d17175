"""`llama-stack model download / list --downloaded / remove`: catalog models from the Hugging Face hub.

Files come through huggingface_hub (HF_ENDPOINT, HF_TOKEN or a stored `hf auth login`, its progress
bars and retries) into a partial file of our own in the model's folder, so that an interrupted
download - even a killed process - resumes where it stopped. Every file's SHA-256 (the hub's LFS
etag; git's blob hash for small files) is checked before the file takes its place, and a model
counts as downloaded only once all its files have (see stack/model_store.py).

Imported only when one of these commands runs: huggingface_hub and rich load here.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rich.markup import escape

from llamastack.stack.model_store import (
    DOWNLOADABLE,
    MANIFEST,
    DownloadableModel,
    find_downloadable,
    list_downloaded,
    model_folder,
    write_manifest,
)

from ._commands import _fail, _table

if TYPE_CHECKING:
    from llamastack.stack.secrets import SecretValue

PARTIAL_DIR = ".partial"
HUB = "https://huggingface.co"
_CHUNK = 8 * 1024 * 1024


class DownloadError(Exception):
    """A download that cannot go on; the message says what to do."""


@dataclass(frozen=True)
class _Target:
    repo: str
    revision: str
    files: tuple[str, ...]  # exact file names, or globs for a folder model


def _fail_text(message: str) -> int:
    return _fail(escape(message))


def _token() -> SecretValue | None:
    from llamastack.stack.secrets import SecretValue

    value = os.environ.get("HF_TOKEN", "").strip()
    return SecretValue(value) if value else None


def _endpoint() -> str:
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _unknown(name: str) -> int:
    import difflib

    names = [m.name for m in DOWNLOADABLE]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]}?" if close else ""
    return _fail_text(
        f"'{name}' is not a model `llama-stack model download` knows.{hint} Downloadable: {', '.join(names)}."
    )


def download(args: argparse.Namespace) -> int:
    import importlib.util

    model = find_downloadable(args.model)
    if model is None:
        return _unknown(args.model)
    if importlib.util.find_spec("huggingface_hub") is None:
        return _fail_text(
            "Downloading needs huggingface_hub: `pip install 'llamastack[local]'` "
            "(or `pip install huggingface_hub`)."
        )
    files = tuple(args.file) if args.file else model.files
    if not model.is_folder and len(files) != 1:
        return _fail_text(f"{model.name} is a single GGUF file: give one --file.")
    if not model.is_folder and not _safe_name(files[0]):
        return _fail_text(
            f"--file {files[0]}: give a file name of the repo (no '..', no leading '/' or '.')."
        )
    target = _Target(args.source or model.repo, args.revision, files)
    folder = model_folder(model.name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _only_download(folder, model):
            path, size = _download(model, target, folder, _token())
    except DownloadError as exc:
        return _fail_text(str(exc))
    except KeyboardInterrupt:
        print("\nInterrupted. Run the same command again to resume the download.")
        return 130
    print(f"Downloaded {model.name} ({_size(size)}) to {path}")
    print(f"Serve it: {_how_to_serve(model)}")
    return 0


def _safe_name(name: str) -> bool:
    """A repo file name that stays inside the model's folder and clear of our own files."""
    parts = name.replace("\\", "/").split("/")
    return bool(name) and all(p and not p.startswith(".") for p in parts) and name != MANIFEST


@contextmanager
def _only_download(folder: Path, model: DownloadableModel) -> Iterator[None]:
    """One download per model at a time: two would write the same partial file."""
    from filelock import FileLock, Timeout

    try:
        with FileLock(folder / ".lock", timeout=0):
            yield
    except Timeout:
        raise DownloadError(
            f"Another download of {model.name} is running (lock {folder / '.lock'})."
        ) from None


def _how_to_serve(model: DownloadableModel) -> str:
    if model.name.startswith("Llama-Guard-"):
        return f"llama-stack run local --env SAFETY_MODEL={model.name} --env SAFETY_MODEL_PATH={model.name}"
    if model.is_folder:
        folder = model_folder(model.name)
        return f"give {folder} as the model folder of a transformers provider (e.g. VISION_MODEL_PATH)"
    return f"llama-stack run local --env INFERENCE_MODEL={model.name}"


def _download(
    model: DownloadableModel, target: _Target, folder: Path, token: SecretValue | None
) -> tuple[Path, int]:
    """Fetches every file of ``target`` into ``folder``; returns the model's path and total size."""
    secret = token.get_secret_value() if token is not None else None
    with _hub_errors(target, model):
        revision, names = _files(model, target, secret)
        print(f"Downloading {model.name} from {target.repo} ({len(names)} file(s)) into {folder}")
        manifest_files: dict[str, Any] = {}
        for name in names:
            revision, info = _fetch_file(target.repo, name, revision, folder, secret)
            manifest_files[name] = info
    shutil.rmtree(folder / PARTIAL_DIR, ignore_errors=True)
    main = "." if model.is_folder else names[0]
    write_manifest(
        folder,
        {
            "model": model.name,
            "repo": target.repo,
            "revision": revision,
            "path": main,
            "files": manifest_files,
        },
    )
    return (folder / main).resolve(), sum(int(f["size"]) for f in manifest_files.values())


def _files(model: DownloadableModel, target: _Target, token: str | None) -> tuple[str, list[str]]:
    """The revision to fetch and the files of the model: the one GGUF, or the folder's matching files."""
    if not model.is_folder:
        return target.revision, list(target.files)
    from huggingface_hub import HfApi

    info = HfApi(token=token).model_info(target.repo, revision=target.revision)
    # Top-level files only: sub-folders (e.g. original/) hold other formats of the same weights.
    names = sorted(
        s.rfilename
        for s in info.siblings or []
        if "/" not in s.rfilename
        and _safe_name(s.rfilename)
        and any(fnmatch.fnmatch(s.rfilename, p) for p in target.files)
    )
    if not names:
        raise DownloadError(f"{target.repo} has no files matching {', '.join(target.files)}.")
    return info.sha or target.revision, names


def _fetch_file(repo: str, name: str, revision: str, folder: Path, token: str | None) -> tuple[str, Any]:
    """One file into ``folder``, resuming a partial download; returns the pinned revision and its info."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    meta = get_hf_file_metadata(hf_hub_url(repo, name, revision=revision), token=token)
    # Every later file comes from the same commit as the first.
    revision = meta.commit_hash or revision
    etag = (meta.etag or "").strip('"').lower()
    if not _is_checksum(etag):
        raise DownloadError(
            f"The hub at {_endpoint()} gave no checksum for {name} (ETag {etag or 'missing'}); "
            "check that HF_ENDPOINT points at a Hugging Face hub."
        )
    target = folder / name
    info = {"size": meta.size, "etag": etag}
    if target.is_file() and _digest(target, etag) == etag:
        print(f"{name}: already downloaded")
        return revision, {**info, "size": target.stat().st_size}

    partial = folder / PARTIAL_DIR / f"{name}.{etag[:16]}.part"
    partial.parent.mkdir(parents=True, exist_ok=True)
    resume = partial.stat().st_size if partial.is_file() else 0
    if meta.size is not None and resume > meta.size:
        partial.unlink()
        resume = 0
    if resume:
        print(f"{name}: resuming after {_size(resume)}")
    headers = build_hf_headers(token=token)
    if urlsplit(meta.location).netloc != urlsplit(_endpoint()).netloc:
        headers.pop("authorization", None)  # a signed CDN address: the token stays with the hub
    with partial.open("ab") as out:
        http_get(
            meta.location,
            out,
            resume_size=resume,
            headers=headers,
            expected_size=meta.size,
            displayed_filename=name,
        )
    print(f"{name}: verifying checksum")
    actual = _digest(partial, etag)
    if actual != etag:
        partial.unlink()
        raise DownloadError(
            f"Checksum mismatch for {name} from {repo}: expected {etag}, got {actual}. The partial file "
            "was deleted; run the command again (if it repeats, the hub or a proxy on the way serves other "
            "bytes)."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial.replace(target)
    return revision, {**info, "size": target.stat().st_size}


def _is_checksum(etag: str) -> bool:
    return len(etag) in (40, 64) and all(c in "0123456789abcdef" for c in etag)


def _digest(path: Path, etag: str) -> str:
    """SHA-256 of the file (LFS etags), or git's blob SHA-1 (etags of files kept in git itself)."""
    if len(etag) == 64:
        digest = hashlib.sha256()
    else:
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _hub_errors(target: _Target, model: DownloadableModel) -> Iterator[None]:
    """Turns huggingface_hub's and the network's exceptions into DownloadErrors that say what to do."""
    try:
        yield
    except (DownloadError, KeyboardInterrupt):
        raise
    except Exception as exc:
        message = _message(exc, target, model)
        if message is None:
            raise
        raise DownloadError(message) from None


def _message(exc: BaseException, target: _Target, model: DownloadableModel) -> str | None:
    import httpx2
    from huggingface_hub import errors

    repo, endpoint = target.repo, _endpoint()
    page = f"{HUB}/{repo}" if endpoint == HUB else f"{endpoint}/{repo}"
    auth = (
        f"Set HF_TOKEN to a Hugging Face access token (https://huggingface.co/settings/tokens) "
        f"of an account that accepted the model's licence at {page}."
    )
    local = (
        "or download the file elsewhere and pass its path instead "
        "(e.g. INFERENCE_MODEL_PATH=/path/to/model.gguf)."
    )
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return f"Hugging Face offline mode is on (HF_HUB_OFFLINE): unset it to download, {local}"
    if isinstance(exc, httpx2.TransportError | errors.FileMetadataError):
        return (
            f"Could not reach the Hugging Face hub at {endpoint} ({type(exc).__name__}: {exc}). "
            f"Check your network connection and HF_ENDPOINT, {local}"
        )
    if isinstance(exc, errors.GatedRepoError):
        return f"{repo} is a gated repo. {auth}"
    if isinstance(exc, errors.RevisionNotFoundError):
        return f"{repo} has no revision '{target.revision}': check --revision."
    if isinstance(exc, errors.RemoteEntryNotFoundError):
        return f"{repo} has no file {', '.join(target.files)}: check --file and --source."
    if isinstance(exc, errors.HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            refused = "refused the token in HF_TOKEN" if os.environ.get("HF_TOKEN") else "needs a token"
            return (
                f"The hub {refused} for {repo} (HTTP {status}): the repo is gated, private or "
                f"missing. {auth} Check the repo name (--source)."
            )
        if isinstance(exc, errors.RepositoryNotFoundError):
            return f"{repo} does not exist on {endpoint}: check --source."
        return f"The hub at {endpoint} answered HTTP {status} for {repo}: try again later."
    if isinstance(exc, OSError):
        return f"Download of {model.name} failed: {exc}. Run the command again to resume."
    return None


def list_downloaded_models(_args: argparse.Namespace) -> int:
    from llamastack.stack.model_store import models_dir

    models = list_downloaded()
    rows = [[m.name, _size(m.size), str(m.path), m.repo] for m in models]
    title = f"Downloaded models in {models_dir()}"
    if not rows:
        names = ", ".join(m.name for m in DOWNLOADABLE)
        print(f"No downloaded models in {models_dir()}. `llama-stack model download MODEL` fetches: {names}.")
        return 0
    _table(title, ["Model", "Size", "Path", "Hugging Face repo"], rows)
    return 0


def remove(args: argparse.Namespace) -> int:
    model = find_downloadable(args.model)
    if model is None:
        return _unknown(args.model)
    folder = model_folder(model.name)
    if not folder.is_dir():
        return _fail_text(f"{model.name} is not downloaded (no folder {folder}).")
    shutil.rmtree(folder)
    print(f"Removed {model.name} ({folder})")
    return 0
