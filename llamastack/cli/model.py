"""`llama-stack model ...`: the Llama catalog and prompt formats shipped in llama-models, and downloads.

Only stdlib at module level: llama_models (and so pydantic) and rich load when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ._commands import _fail, _table

if TYPE_CHECKING:
    from llama_models.sku_types import Model

# Families shown by `model list` without --all; Llama Guard 3 is added by name (its family is "safety").
DEFAULT_FAMILIES = ("llama3_1", "llama3_2", "llama3_3")

# Shipped docs, relative to the llama_models package, by (family, is_vision).
PROMPT_DOCS = {
    ("llama3_1", False): "llama3_1/prompt_format.md",
    ("llama3_2", False): "llama3_2/text_prompt_format.md",
    ("llama3_2", True): "llama3_2/vision_prompt_format.md",
    # Llama 3.3 uses the Llama 3.1 prompt format; llama-models ships no separate doc for it.
    ("llama3_3", False): "llama3_1/prompt_format.md",
}

LLAMA_GUARD_3_FORMAT = """\
# Llama Guard 3 prompt format

llama-models ships no prompt format doc for Llama Guard 3. In short:

- Llama Guard 3 is a classifier fine-tuned from Llama 3.1 / 3.2 and uses the same special tokens
  (`<|begin_of_text|>`, `<|start_header_id|>`, `<|eot_id|>`).
- The whole task goes in a single **user** turn: an instruction to check the last `User` or `Agent`
  message, the unsafe content categories (`S1: Violent Crimes` ... `S13: Elections`, plus
  `S14: Code Interpreter Abuse` for the 8B model), the conversation to check, and the output format.
- The model answers `safe`, or `unsafe` followed by a line with the violated categories, e.g. `S1,S10`.
- The 11B Vision model also takes one image in the user turn.

You normally do not write this prompt yourself: register the model as a shield and call the
`safety` API (`run_shield`), which builds the prompt and parses the answer.
Full reference: the Llama Guard 3 model cards on Hugging Face and https://www.llama.com/docs/.
"""


MISSING = "llama-models is not installed; install it with `pip install llama-models`."


def _catalog() -> list[Model] | None:
    """Every model llama-models registers, or None if it is not installed (it is an optional dependency)."""
    try:
        from llama_models.sku_list import all_registered_models
    except ImportError:
        return None
    return all_registered_models()


def _is_default(model: Model) -> bool:
    return model.model_family.value in DEFAULT_FAMILIES or model.core_model_id.value.startswith(
        "Llama-Guard-3-"
    )


def _is_vision(model: Model) -> bool:
    """Takes images: the 3.2 / Guard 3 Vision models, and Llama 4 and Llama Guard 4 (natively multimodal)."""
    name = model.core_model_id.value
    return "Vision" in name or name.startswith(("Llama-4-", "Llama-Guard-4-"))


def _kind(model: Model) -> str:
    kind = "vision" if _is_vision(model) else "text"
    if model.model_family.value == "safety":
        kind = "guard" if kind == "text" else "guard, vision"
    if model.quantization_format.value != "bf16":
        kind += f" ({model.quantization_format.value})"
    return kind


def _context(model: Model) -> str:
    try:
        tokens = model.max_seq_length
    except (ValueError, AssertionError):
        return "?"
    mega = 1024 * 1024
    return f"{tokens // mega}M" if tokens % mega == 0 else f"{tokens // 1024}K"


def list_models(args: argparse.Namespace) -> int:
    if args.downloaded:
        from .model_download import list_downloaded_models

        return list_downloaded_models(args)
    catalog = _catalog()
    if catalog is None:
        return _fail(MISSING)
    models = [m for m in catalog if args.all or _is_default(m)]
    rows = [[m.descriptor(), m.huggingface_repo or "", _context(m), _kind(m)] for m in models]
    title = "Llama models" + ("" if args.all else " (Llama 3.1 / 3.2 / 3.3, Llama Guard 3; --all for more)")
    _table(title, ["Model Descriptor", "Hugging Face repo", "Context length", "What"], rows)
    return 0


def download(args: argparse.Namespace) -> int:
    from .model_download import download as run

    return run(args)


def remove(args: argparse.Namespace) -> int:
    from .model_download import remove as run

    return run(args)


def _names(model: Model) -> list[str]:
    """What a user may type for a model: its descriptor, its HF repo, or the repo name alone."""
    names = [model.descriptor()]
    if model.huggingface_repo:
        names += [model.huggingface_repo, model.huggingface_repo.rsplit("/", 1)[-1]]
    return names


def _resolve(models: list[Model], name: str) -> tuple[Model | None, list[str]]:
    """The model called `name` (case-insensitive), else None and up to 3 close descriptors."""
    import difflib

    by_name = {m.descriptor().lower(): m for m in reversed(models)}  # the first model wins a name
    for model in models:
        for alias in _names(model):
            by_name.setdefault(alias.lower(), model)
    found = by_name.get(name.strip().lower())
    if found is not None:
        return found, []
    close = difflib.get_close_matches(name.strip().lower(), by_name, n=6, cutoff=0.5)
    suggestions = list(dict.fromkeys(by_name[c].descriptor() for c in close))
    return None, suggestions[:3]


def _docs_dir() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("llama_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def prompt_format(args: argparse.Namespace) -> int:
    catalog = _catalog()
    if catalog is None:
        return _fail(MISSING)
    model, suggestions = _resolve(catalog, args.model_name)
    if model is None:
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        return _fail(f"Unknown model '{args.model_name}'.{hint} See `llama-stack model list --all`.")

    family = model.model_family.value
    relative = PROMPT_DOCS.get((family, _is_vision(model)))
    if relative is not None:
        docs_dir = _docs_dir()
        doc = docs_dir / relative if docs_dir else None
        if doc is None or not doc.is_file():
            return _fail(f"llama-models is installed without its prompt format docs ({relative} is missing).")
        text = doc.read_text(encoding="utf-8")
        if family == "llama3_3":
            text = "_Llama 3.3 uses the Llama 3.1 prompt format, shown below._\n\n" + text
    elif model.core_model_id.value.startswith("Llama-Guard-3-"):
        text = LLAMA_GUARD_3_FORMAT
    else:
        return _fail(
            f"llama-models ships no prompt format doc for {model.descriptor()} (family {family}). "
            "Docs exist for Llama 3.1, 3.2 (text, vision) and 3.3 models, plus a summary for Llama Guard 3."
        )

    if args.raw:
        print(text, end="" if text.endswith("\n") else "\n")
        return 0
    from rich.console import Console
    from rich.markdown import Markdown

    Console().print(Markdown(text))
    return 0
