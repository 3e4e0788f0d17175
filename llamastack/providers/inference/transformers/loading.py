"""Where a model's weights are (a folder, a GGUF file, a hub id) and how they are loaded: device,
dtype and quantization. Everything here blocks; callers run it in a worker thread."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamastack.stack.errors import BadRequestError
from llamastack.stack.library_imports import library_imports
from llamastack.stack.model_paths import DOWNLOAD_SCHEME, PKG_SCHEME, resolve_model_path
from llamastack.stack.model_store import downloaded, find_downloadable

from .config import TransformersConfig

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_DTYPES = {"bfloat16": "bfloat16", "float16": "float16", "float32": "float32"}


@dataclass(frozen=True, slots=True)
class ModelSource:
    """``location``: a local folder or a hub id; ``gguf_file``: a GGUF inside it, dequantized on load."""

    location: str
    gguf_file: str | None = None

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.location, self.gguf_file)


def _local(path: Path, gguf_file: str | None = None) -> ModelSource:
    return ModelSource(str(path.parent), path.name) if path.is_file() else ModelSource(str(path), gguf_file)


def _downloaded(name: str) -> ModelSource | None:
    """A model `llama-stack model download` fetched (by its name or Meta's repo id), if it is there."""
    model = find_downloadable(name)
    found = downloaded(model.name) if model is not None else None
    return _local(found.path) if found is not None else None


def model_source(ref: str, gguf_file: str | None = None) -> ModelSource:
    """A provider_model_id as a source: ``/path/folder``, ``/path/model.gguf``, ``pkg://pkg/file.gguf``,
    a downloaded model's name (``Llama3.2-11B-Vision-Instruct``, ``download://...``), or ``org/name``
    on the hub (taken only when no such local path or downloaded model exists)."""
    if ref.startswith(DOWNLOAD_SCHEME):
        name, _, fallback = ref[len(DOWNLOAD_SCHEME) :].partition("?else=")
        if (source := _downloaded(name)) is not None:
            return source
        if fallback and find_downloadable(name) is None:
            return model_source(fallback, gguf_file)
        model = find_downloadable(name)
        resolve_model_path(ref, expect_dir=model is not None and model.is_folder)  # raises what to do
    if ref.startswith(PKG_SCHEME) or ref.endswith(".gguf"):
        return _local(resolve_model_path(ref))
    path = Path(ref).expanduser()
    if path.is_dir():
        return ModelSource(str(path), gguf_file)
    if path.is_file():
        raise BadRequestError(f"Model '{ref}' is a file; give its folder (or a .gguf file).")
    if (source := _downloaded(ref)) is not None:
        return source
    if _HUB_ID.fullmatch(ref) and not ref.startswith((".", "/", "~")):
        return ModelSource(ref, gguf_file)
    if (model := find_downloadable(ref)) is not None:
        resolve_model_path(ref, expect_dir=model.is_folder)  # not downloaded: raises what to do
    raise BadRequestError(
        f"Model '{ref}' is neither a local folder, a .gguf file, a downloaded model nor a hub id like "
        "'meta-llama/Llama-3.2-11B-Vision-Instruct'."
    )


@dataclass(frozen=True, slots=True)
class Placement:
    device: str
    dtype: Any  # a torch.dtype
    quantization: str


def placement(config: TransformersConfig) -> Placement:
    with library_imports:
        import torch

    device = config.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        log.warning(
            "No CUDA GPU is available: transformers models run on the CPU in float32 (slow for large "
            "models). Set the provider's device to 'cpu' to silence this."
        )
        device = "cpu"
    if config.dtype != "auto":
        dtype = getattr(torch, _DTYPES[config.dtype])
    else:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    quantization = config.quantization
    if quantization != "none" and not device.startswith("cuda"):
        log.warning("bitsandbytes %s loading needs a GPU; loading unquantized on %s.", quantization, device)
        quantization = "none"
    return Placement(device, dtype, quantization)


def _quantization_config(quantization: str, dtype: Any) -> Any:
    if quantization == "none":
        return None
    try:
        with library_imports:
            import bitsandbytes  # noqa: F401
    except ImportError:
        raise BadRequestError(
            f"quantization '{quantization}' needs bitsandbytes: pip install bitsandbytes."
        ) from None
    with library_imports:
        from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=dtype, bnb_4bit_quant_type="nf4")
    return BitsAndBytesConfig(load_in_8bit=True)


@dataclass(slots=True)
class Loaded:
    model: Any
    tokenizer: Any  # the text tokenizer (the processor's, for vision models)
    processor: Any | None  # vision models only
    vision: bool
    placement: Placement
    context_length: int
    architecture: str


def load(source: ModelSource, config: TransformersConfig) -> Loaded:
    try:
        # transformers imports its model and tokenizer classes later, as the load names them (under
        # hf_loading); the libraries those share with other threads' work are imported first.
        with library_imports:
            import numpy  # noqa: F401
            import safetensors  # noqa: F401
            import tokenizers  # noqa: F401
            import torch  # noqa: F401
            import transformers
    except ImportError:
        raise BadRequestError(
            "inline::transformers needs transformers: pip install 'llamastack[cuda]'."
        ) from None

    where = placement(config)
    common: dict[str, Any] = {"local_files_only": config.local_files_only}
    if source.gguf_file:
        common["gguf_file"] = source.gguf_file
    try:
        model_config = transformers.AutoConfig.from_pretrained(source.location, **common)
        vision = model_config.model_type == "mllama"
        model: Any
        kwargs: dict[str, Any] = {**common, "dtype": where.dtype}
        if (quant := _quantization_config(where.quantization, where.dtype)) is not None:
            kwargs["quantization_config"] = quant
            kwargs["device_map"] = where.device
        if vision:
            processor = transformers.AutoProcessor.from_pretrained(source.location, **common)
            tokenizer = processor.tokenizer
            model = transformers.MllamaForConditionalGeneration.from_pretrained(source.location, **kwargs)
        else:
            processor = None
            tokenizer = transformers.AutoTokenizer.from_pretrained(source.location, **common)
            model = transformers.AutoModelForCausalLM.from_pretrained(source.location, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        where_from = f"{source.location}" + (f" (gguf_file={source.gguf_file})" if source.gguf_file else "")
        raise BadRequestError(f"Could not load transformers model from {where_from}: {exc}") from None
    if "quantization_config" not in kwargs:
        model.to(where.device)
    model.eval()
    text_config = model.config.get_text_config()
    context = config.max_context or int(getattr(text_config, "max_position_embeddings", 4096) or 4096)
    log.info(
        "Loaded %s (%s%s) on %s as %s",
        source.location,
        model_config.model_type,
        ", vision" if vision else "",
        where.device,
        str(where.dtype).removeprefix("torch."),
    )
    return Loaded(model, tokenizer, processor, vision, where, context, str(model_config.model_type))
