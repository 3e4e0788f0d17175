"""Constrained decoding (JSON schema or GBNF) through xgrammar's transformers logits processor.

Client grammars are checked by our own GBNF checker first (the same messages as with llama.cpp),
then compiled by xgrammar, whose EBNF follows llama.cpp's GBNF syntax. Compiled grammars are cached
per model; each generation gets its own (stateful) logits processor.
"""

from __future__ import annotations

import json
from typing import Any

from llamastack.stack.errors import BadRequestError

from ...utils.gbnf import check_grammar

_CACHE = 64


class Grammars:
    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self._compiler: Any = None
        self._compiled: dict[tuple[str | None, str | None], Any] = {}

    def _get_compiler(self) -> Any:
        if self._compiler is None:
            try:
                import xgrammar
            except ImportError:
                raise BadRequestError(
                    "Constrained output on inline::transformers needs xgrammar: "
                    "pip install 'llamastack[cuda]'."
                ) from None
            info = xgrammar.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.vocab_size)
            self._compiler = xgrammar.GrammarCompiler(info)
        return self._compiler

    def compile(self, json_schema: dict[str, Any] | None, gbnf: str | None) -> Any:
        """Blocking (compiling walks the vocabulary): run it in a worker thread."""
        schema_json = json.dumps(json_schema, sort_keys=True) if json_schema is not None else None
        key = (gbnf, schema_json)
        compiled = self._compiled.get(key)
        if compiled is not None:
            return compiled
        compiler = self._get_compiler()
        if schema_json is not None:
            try:
                compiled = compiler.compile_json_schema(schema_json, any_whitespace=False)
            except Exception as exc:  # xgrammar raises RuntimeError/ValueError on schemas it cannot map
                raise BadRequestError(f"The JSON schema could not be turned into a grammar: {exc}") from None
        else:
            text = gbnf or ""
            token_ids = check_grammar(text)
            if token_ids:
                raise BadRequestError(
                    "Grammars naming token ids (<[id]>) are not supported by inline::transformers; "
                    "write the text instead."
                )
            try:
                compiled = compiler.compile_grammar(text)
            except Exception as exc:
                raise BadRequestError(f"The grammar could not be compiled: {exc}") from None
        self._compiled[key] = compiled
        if len(self._compiled) > _CACHE:
            self._compiled.pop(next(iter(self._compiled)))
        return compiled

    @staticmethod
    def processor(compiled: Any) -> Any:
        import xgrammar

        return xgrammar.contrib.hf.LogitsProcessor(compiled)
