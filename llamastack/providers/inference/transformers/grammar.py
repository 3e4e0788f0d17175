"""Constrained decoding (JSON schema or GBNF) through llguidance, as a transformers logits processor.

Client grammars are checked by our own GBNF checker first (the same messages as with llama.cpp),
then converted by llguidance (GBNF -> Lark, JSON schema -> its grammar) and validated against the
model's tokenizer. Each generation gets its own matcher (it keeps the parse state); the tokenizer
wrapper and the checked grammars are cached per model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llamastack.stack.errors import BadRequestError
from llamastack.stack.library_imports import library_imports

from ...utils.gbnf import check_grammar

_CACHE = 64


@dataclass(frozen=True, slots=True)
class CompiledGrammar:
    tokenizer: Any  # llguidance.LLTokenizer
    grammar: str  # llguidance's grammar text, validated
    vocab_size: int


class Grammars:
    def __init__(self, tokenizer: Any, vocab_size: int, end_ids: set[int]) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.end_ids = sorted(end_ids)
        self._ll_tokenizer: Any = None
        self._compiled: dict[tuple[str | None, str | None], CompiledGrammar] = {}

    def _tokenizer(self) -> Any:
        if self._ll_tokenizer is None:
            try:
                with library_imports:
                    import llguidance.hf
            except ImportError:
                raise BadRequestError(
                    "Constrained output on inline::transformers needs llguidance: "
                    "pip install 'llamastack[cuda]'."
                ) from None
            eos = self.end_ids or None
            self._ll_tokenizer = llguidance.hf.from_tokenizer(self.tokenizer, self.vocab_size, eos_token=eos)
        return self._ll_tokenizer

    def compile(self, json_schema: dict[str, Any] | None, gbnf: str | None) -> CompiledGrammar:
        """Blocking (the tokenizer wrapper and validation walk the vocabulary): run it in a thread."""
        with library_imports:
            import llguidance

        schema_json = json.dumps(json_schema, sort_keys=True) if json_schema is not None else None
        key = (gbnf, schema_json)
        if (cached := self._compiled.get(key)) is not None:
            return cached
        what = "JSON schema" if schema_json is not None else "grammar"
        if schema_json is not None:
            try:
                grammar = llguidance.LLMatcher.grammar_from_json_schema(
                    schema_json, defaults={"whitespace_flexible": False}
                )
            except ValueError as exc:
                raise BadRequestError(f"The JSON schema could not be turned into a grammar: {exc}") from None
        else:
            text = gbnf or ""
            if check_grammar(text):
                raise BadRequestError(
                    "Grammars naming token ids (<[id]>) are not supported by inline::transformers; "
                    "write the text they stand for instead."
                )
            try:
                grammar = llguidance.grammar_from("gbnf", text)
            except ValueError as exc:
                raise BadRequestError(f"The grammar could not be converted: {exc}") from None
        tokenizer = self._tokenizer()
        error = llguidance.LLMatcher.validate_grammar(grammar, tokenizer)
        if error:
            raise BadRequestError(f"The {what} cannot be enforced: {error}")
        compiled = CompiledGrammar(tokenizer, grammar, self.vocab_size)
        self._compiled[key] = compiled
        if len(self._compiled) > _CACHE:
            self._compiled.pop(next(iter(self._compiled)))
        return compiled


class GrammarProcessor:
    """Masks every token the grammar does not allow next; fed each sampled token on the next call."""

    def __init__(self, compiled: CompiledGrammar) -> None:
        import llguidance
        import llguidance.numpy

        self._fill = llguidance.numpy.fill_next_token_bitmask
        self.matcher = llguidance.LLMatcher(compiled.tokenizer, compiled.grammar)
        self.mask = llguidance.numpy.allocate_token_bitmask(1, compiled.vocab_size)
        self.vocab_size = compiled.vocab_size
        self.prompt_len: int | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import numpy as np
        import torch

        if self.prompt_len is None:
            self.prompt_len = int(input_ids.shape[1])
        else:
            self.matcher.consume_token(int(input_ids[0, -1]))
        if self.matcher.is_error():
            raise RuntimeError(f"grammar matcher failed: {self.matcher.get_error()}")
        self._fill(self.matcher, self.mask)
        allowed = np.unpackbits(self.mask.view(np.uint8), bitorder="little")[: scores.shape[-1]]
        if allowed.shape[0] < scores.shape[-1]:  # logits past the tokenizer's vocabulary
            allowed = np.concatenate([allowed, np.zeros(scores.shape[-1] - allowed.shape[0], np.uint8)])
        blocked = torch.from_numpy(allowed == 0).to(scores.device)
        return scores.masked_fill(blocked.unsqueeze(0), float("-inf"))
