"""Token-aware chunking: overlapping windows of tokens, each chunk an exact slice of the text.

Tokens are Llama 3 tokens (the llama-models tiktoken tokenizer), so a chunk size means what
"tokens in context" means for Llama models. A window ends at the best boundary in its last fifth
(paragraph > line > sentence > whitespace), and chunk ids are stable across re-insertions.

Everything here is CPU work (tokenizing a megabyte takes about a second, loading the tokenizer a
few tenths): callers on the event loop run it in a worker thread.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Protocol

from llamastack.stack.library_imports import library_imports

log = logging.getLogger(__name__)

MIN_CHUNK_SIZE_TOKENS = 16
_MAX_SNAP_BACK = 8  # tokens an overlapping window may start earlier to begin at a word
_MAX_SEGMENT = 100_000  # characters per tiktoken call: longer whitespace runs overflow its regex stack
_SENTENCE_END = frozenset(".!?\u2026\u3002\uff01\uff1f")  # and the ellipsis, CJK full stop, fullwidth ! ?
_CLOSERS = frozenset("\"')]\u00bb\u201d\u2019")  # quotes and brackets closing a sentence
_CJK_SENTENCE_END = frozenset("\u3002\uff01\uff1f")  # these need no following space


@dataclass(frozen=True, slots=True)
class TextChunk:
    chunk_id: str
    text: str
    index: int
    token_count: int  # tokens in `text` counted on its own, never above the chunk size
    start_char: int  # text == document_text[start_char:end_char]
    end_char: int


class TokenCounter(Protocol):
    def offsets(self, text: str) -> list[tuple[int, int]]:
        """The (start, end) character span of each token, in order and non-decreasing."""
        ...


def chunk_text(
    text: str,
    *,
    document_id: str,
    chunk_size_tokens: int = 512,
    overlap_tokens: int = 64,
    tokenizer: TokenCounter | None = None,
) -> list[TextChunk]:
    """Splits text into chunks of at most `chunk_size_tokens` tokens (counted on the chunk text
    itself), consecutive chunks sharing about `overlap_tokens`. Edges are trimmed of whitespace
    and whitespace-only chunks skipped."""
    _validate(chunk_size_tokens, overlap_tokens)
    if not text.strip():
        return []
    counter = tokenizer or default_tokenizer()
    spans = counter.offsets(text)
    if not spans:
        return []
    chunks: list[TextChunk] = []
    start, total = 0, len(spans)
    while True:
        stop, low = _window(text, spans, start, chunk_size_tokens)
        begin, end = _trimmed(text, spans[start][0], spans[stop - 1][1])
        count = count_tokens(text[begin:end], counter)
        while count > chunk_size_tokens:
            # On its own a slice can take a token or two more ("llama" is 2 tokens, " llama" 1).
            high = max(start + 1, stop - (count - chunk_size_tokens))
            stop = _best_cut(text, spans, min(low, high), high)
            begin, end = _trimmed(text, spans[start][0], spans[stop - 1][1])
            count = count_tokens(text[begin:end], counter)
        if end > begin:
            piece = text[begin:end]
            index = len(chunks)
            chunks.append(TextChunk(chunk_id(document_id, index, piece), piece, index, count, begin, end))
        if stop >= total:
            return chunks
        following = stop - overlap_tokens
        if overlap_tokens:
            following = _snap_to_word(text, spans, following, lowest=start + 1)
        start = max(following, start + 1)


def count_tokens(text: str, tokenizer: TokenCounter | None = None) -> int:
    """Tokens in `text` (Llama 3 tokens by default), counted as chunk_text counts them."""
    counter = tokenizer or default_tokenizer()
    if isinstance(counter, Llama3TokenCounter):
        return counter.count(text)
    return len(counter.offsets(text))


@functools.cache
def default_tokenizer() -> TokenCounter:
    """The Llama 3 tokenizer, loaded once (~0.2 s); a word counter if llama-models is missing."""
    try:
        with library_imports:
            from llama_models.llama3.tokenizer import Tokenizer
    except ImportError:
        log.warning("llama-models is not installed: chunk sizes are counted in words, not Llama 3 tokens.")
        return WordTokenCounter()
    return Llama3TokenCounter(Tokenizer.get_instance().model)


class Llama3TokenCounter:
    """Character spans of tiktoken tokens, computed from per-token tables rather than decoding.

    Tokens are byte-level: a multi-byte character may be split between tokens. A character belongs
    to the token holding its first byte, so spans tile the text exactly and a token made only of
    continuation bytes has an empty span.
    """

    def __init__(self, encoding: Any) -> None:
        self.encoding = encoding
        continuation = bytes(range(0x80, 0xC0))
        self._chars: list[int] = []  # per token id: characters that start in it
        for token in range(encoding.n_vocab):
            try:
                piece = encoding.decode_single_token_bytes(token)
            except KeyError:  # an unused id
                piece = b""
            self._chars.append(len(piece.translate(None, continuation)))

    def offsets(self, text: str) -> list[tuple[int, int]]:
        ends = list(accumulate(map(self._chars.__getitem__, self._encode(text))))
        if ends and ends[-1] != len(text):
            raise RuntimeError(f"token spans cover {ends[-1]} characters of {len(text)}")
        return list(zip([0, *ends[:-1]], ends, strict=True))

    def count(self, text: str) -> int:
        return sum(len(self.encoding.encode_ordinary(piece)) for piece in _segments(_no_surrogates(text)))

    def _encode(self, text: str) -> list[int]:
        tokens: list[int] = []
        for piece in _segments(_no_surrogates(text)):
            tokens += self.encoding.encode_ordinary(piece)  # special-token text is plain text here
        return tokens


class WordTokenCounter:
    """Words and punctuation marks as tokens: an approximation for when llama-models is absent."""

    _TOKEN = re.compile(r"\w+|[^\w\s]")

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in self._TOKEN.finditer(text)]


# --- windows ----------------------------------------------------------------------------------


def _validate(chunk_size_tokens: int, overlap_tokens: int) -> None:
    if chunk_size_tokens < MIN_CHUNK_SIZE_TOKENS:
        raise ValueError(
            f"chunk_size_tokens must be at least {MIN_CHUNK_SIZE_TOKENS}, got {chunk_size_tokens}."
        )
    if overlap_tokens < 0:
        raise ValueError(f"overlap_tokens must not be negative, got {overlap_tokens}.")
    if overlap_tokens >= chunk_size_tokens:
        raise ValueError(
            f"overlap_tokens ({overlap_tokens}) must be smaller than chunk_size_tokens ({chunk_size_tokens})."
        )


def _window(text: str, spans: list[tuple[int, int]], start: int, size: int) -> tuple[int, int]:
    """(stop, lowest acceptable stop) of the window starting at token `start`."""
    stop = min(start + size, len(spans))
    low = max(start + 1, stop - size // 5)
    if stop < len(spans):
        stop = _best_cut(text, spans, low, stop)
    return stop, low


def _best_cut(text: str, spans: list[tuple[int, int]], low: int, high: int) -> int:
    """The latest cut in [low, high] with the strongest boundary; `high` if none is better."""
    best, best_score = high, 0
    for cut in range(high, low - 1, -1):
        score = _boundary_score(text, spans[cut - 1][1])
        if score == 4:
            return cut
        if score > best_score:
            best, best_score = cut, score
    return best


def _boundary_score(text: str, position: int) -> int:
    """4 paragraph break, 3 line break, 2 sentence end, 1 whitespace, 0 inside a word."""
    left = position
    while left > 0 and position - left < 64 and text[left - 1].isspace():
        left -= 1
    right = position
    while right < len(text) and right - position < 64 and text[right].isspace():
        right += 1
    newlines = text.count("\n", left, right)
    if newlines:
        return 4 if newlines >= 2 else 3
    before = text[left - 2 : left] if left >= 2 else text[:left]
    if before and before[-1] in _CJK_SENTENCE_END:
        return 2
    if right > left:
        if before and (
            before[-1] in _SENTENCE_END or (before[-1] in _CLOSERS and before[:1] in _SENTENCE_END)
        ):
            return 2
        return 1
    return 0


def _snap_to_word(text: str, spans: list[tuple[int, int]], index: int, *, lowest: int) -> int:
    """Moves a window start back (a few tokens at most) to a token that begins a word."""
    for candidate in range(index, max(lowest, index - _MAX_SNAP_BACK) - 1, -1):
        position = spans[candidate][0]
        if position == 0 or position >= len(text) or text[position].isspace() or text[position - 1].isspace():
            return candidate
    return index


def _trimmed(text: str, begin: int, end: int) -> tuple[int, int]:
    """[begin, end) without leading and trailing whitespace (empty if only whitespace)."""
    piece = text[begin:end]
    stripped = piece.strip()
    begin += len(piece) - len(piece.lstrip())
    return begin, begin + len(stripped)


def chunk_id(document_id: str, index: int, text: str) -> str:
    """Deterministic: the same document chunked the same way gets the same ids."""
    key = f"{json.dumps(document_id)}:{index}\n{text}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(key).hexdigest()[:32]


# --- tiktoken input ---------------------------------------------------------------------------


def _segments(text: str) -> Iterator[str]:
    """Pieces of at most _MAX_SEGMENT characters, cut before a space where possible."""
    start = 0
    while len(text) - start > _MAX_SEGMENT:
        cut = text.rfind(" ", start + _MAX_SEGMENT // 2, start + _MAX_SEGMENT)
        if cut <= start:
            cut = start + _MAX_SEGMENT
        yield text[start:cut]
        start = cut
    yield text[start:]


_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_surrogates(text: str) -> str:
    """Lone surrogates as U+FFFD, keeping the length (tiktoken would merge or replace them)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text
