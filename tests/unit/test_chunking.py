from __future__ import annotations

import itertools
import random
import time

import pytest

from llamastack.stack.ingestion.chunk import TextChunk as Chunk
from llamastack.stack.ingestion.chunk import (
    WordTokenCounter,
    chunk_text,
    count_tokens,
    default_tokenizer,
)

COMMON = ["the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by"]
TOPICAL = ["llama", "alpaca", "vicuña", "guanaco", "retrieval", "embedding", "vector", "chunk", "café"]
WORDS = [*COMMON, *TOPICAL]


def prose(n_paragraphs: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    paragraphs = []
    for _ in range(n_paragraphs):
        sentences = []
        for _ in range(rng.randint(2, 7)):
            words = rng.choices(WORDS, k=rng.randint(5, 20))
            sentences.append(" ".join(words).capitalize() + rng.choice(".!?"))
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def tokens_touching(text: str, start: int, end: int) -> int:
    """Llama 3 tokens of `text` that overlap [start, end)."""
    return sum(1 for s, e in default_tokenizer().offsets(text) if s < end and e > start)


def assert_exact_slices(text: str, chunks: list[Chunk]) -> None:
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert text[chunk.start_char : chunk.end_char] == chunk.text
        assert chunk.text == chunk.text.strip() and chunk.text


def test_empty_and_blank_text() -> None:
    assert chunk_text("", document_id="d") == []
    assert chunk_text(" \n\t\n ", document_id="d") == []


def test_short_text_is_one_trimmed_chunk() -> None:
    text = "\n  Llamas hum.  \n"
    [chunk] = chunk_text(text, document_id="d")
    assert (chunk.text, chunk.start_char, chunk.end_char, chunk.index) == ("Llamas hum.", 3, 14, 0)
    assert chunk.token_count == count_tokens("Llamas hum.")


@pytest.mark.parametrize(("size", "overlap"), [(16, 0), (64, 8), (128, 32), (512, 64), (100, 99)])
def test_chunks_are_exact_slices_within_the_size(size: int, overlap: int) -> None:
    text = prose(40)
    chunks = chunk_text(text, document_id="d", chunk_size_tokens=size, overlap_tokens=overlap)
    assert len(chunks) > 1
    assert_exact_slices(text, chunks)
    for chunk in chunks:
        # Counted on the chunk text itself, which can differ from its tokens in context at the
        # edges ("llama" is 2 tokens, " llama" 1): the limit holds for both.
        assert 0 < count_tokens(chunk.text) == chunk.token_count <= size
    # Everything is covered, in order.
    assert chunks[0].start_char == 0 and chunks[-1].end_char == len(text)
    for before, after in itertools.pairwise(chunks):
        assert before.start_char < after.start_char <= before.end_char + 2


def test_overlap_is_honoured() -> None:
    text = prose(30, seed=1)
    chunks = chunk_text(text, document_id="d", chunk_size_tokens=64, overlap_tokens=16)
    for before, after in itertools.pairwise(chunks):
        assert after.start_char < before.end_char
        shared = text[after.start_char : before.end_char]
        assert after.text.startswith(shared) and before.text.endswith(shared)
        # At least the overlap, bar a whitespace token trimmed from the edge.
        assert tokens_touching(text, after.start_char, before.end_char) >= 15


def test_no_overlap_partitions_the_text() -> None:
    text = prose(30, seed=2)
    chunks = chunk_text(text, document_id="d", chunk_size_tokens=48, overlap_tokens=0)
    for before, after in itertools.pairwise(chunks):
        assert text[before.end_char : after.start_char].strip() == ""  # only whitespace between
    assert chunks[0].start_char == 0 and chunks[-1].end_char == len(text)


def test_ids_are_stable_and_distinct() -> None:
    text = prose(20, seed=3)
    first = chunk_text(text, document_id="doc-1", chunk_size_tokens=64, overlap_tokens=8)
    again = chunk_text(text, document_id="doc-1", chunk_size_tokens=64, overlap_tokens=8)
    other = chunk_text(text, document_id="doc-2", chunk_size_tokens=64, overlap_tokens=8)
    assert first == again
    ids = [c.chunk_id for c in first]
    assert len(set(ids)) == len(ids)
    assert not set(ids) & {c.chunk_id for c in other}
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    # The same text twice in a document still gets two ids.
    twice = chunk_text("Same words.\n\n" * 2, document_id="d", chunk_size_tokens=16, overlap_tokens=0)
    assert len({c.chunk_id for c in twice}) == len(twice)


def test_unicode_is_never_split() -> None:
    text = "".join(
        f"Ünïcödé {i} 🦙🦙 naïve café — 日本語のテキスト。 👩‍👩‍👧 \U0001f9ac\U0001d518\U0001d52b\U0001d526 "
        for i in range(300)
    )
    spans = default_tokenizer().offsets(text)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))  # spans tile the text
    assert any(s == e for s, e in spans)  # a token made of continuation bytes only
    for size, overlap in ((16, 4), (37, 11), (200, 50)):
        chunks = chunk_text(text, document_id="u", chunk_size_tokens=size, overlap_tokens=overlap)
        assert_exact_slices(text, chunks)
        for chunk in chunks:
            chunk.text.encode("utf-8")  # no half characters, no surrogates
            assert chunk.token_count <= size


def test_lone_surrogates_do_not_break_offsets() -> None:
    text = "abc \ud83d def " * 50
    chunks = chunk_text(text, document_id="s", chunk_size_tokens=16, overlap_tokens=2)
    assert_exact_slices(text, chunks)


def test_paragraph_boundary_is_preferred() -> None:
    first = " ".join(["Llamas hum softly."] * 10)
    second = " ".join(["Alpacas spit sometimes."] * 30)
    text = f"{first}\n\n{second}"
    assert 52 <= count_tokens(f"{first}\n\n") < 64  # the break is in the last fifth of the window
    chunks = chunk_text(text, document_id="p", chunk_size_tokens=64, overlap_tokens=0)
    assert chunks[0].text == first


def test_sentence_boundary_is_preferred_over_whitespace() -> None:
    text = " ".join(["Llamas hum when bored."] * 60)  # 7 tokens a sentence: one ends in every last fifth
    chunks = chunk_text(text, document_id="s", chunk_size_tokens=64, overlap_tokens=8)
    assert all(c.text.endswith(".") for c in chunks)
    # Mid-sentence overlap starts at a word, not inside one.
    assert all(text[c.start_char - 1] == " " for c in chunks[1:])


def test_no_boundary_means_a_full_window() -> None:
    text = "".join(random.Random(4).choices("abcdefghij", k=3000))
    chunks = chunk_text(text, document_id="w", chunk_size_tokens=32, overlap_tokens=4)
    assert_exact_slices(text, chunks)
    assert all(30 <= c.token_count <= 32 for c in chunks[:-1])


def test_boundary_is_only_sought_in_the_last_fifth() -> None:
    # A paragraph break after ~10 tokens is too early for a 64-token window.
    text = "Short opening paragraph here.\n\n" + "".join(random.Random(5).choices("abcdefghij", k=2000))
    chunks = chunk_text(text, document_id="f", chunk_size_tokens=64, overlap_tokens=0)
    assert chunks[0].token_count > 60


def test_argument_validation() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        chunk_text("x", document_id="d", chunk_size_tokens=8, overlap_tokens=0)
    with pytest.raises(ValueError, match=r"overlap_tokens \(64\) must be smaller"):
        chunk_text("x", document_id="d", chunk_size_tokens=64, overlap_tokens=64)
    with pytest.raises(ValueError, match="negative"):
        chunk_text("x", document_id="d", chunk_size_tokens=64, overlap_tokens=-1)


def test_a_custom_token_counter() -> None:
    text = "one two three, four five. " * 20
    chunks = chunk_text(
        text, document_id="c", chunk_size_tokens=16, overlap_tokens=4, tokenizer=WordTokenCounter()
    )
    assert_exact_slices(text, chunks)
    assert all(len(WordTokenCounter().offsets(c.text)) <= 16 for c in chunks)
    assert chunks[0].text == "one two three, four five. one two three, four five."


def test_tokens_are_llama3_tokens() -> None:
    from llama_models.llama3.tokenizer import Tokenizer

    text = prose(5, seed=6) + " <|eot_id|> special-token text is plain text"
    expected = Tokenizer.get_instance().encode(text, bos=False, eos=False)
    assert count_tokens(text) == len(expected) == len(default_tokenizer().offsets(text))


def test_long_whitespace_runs_do_not_crash_tiktoken() -> None:
    # A single tiktoken call on a million spaces overflows its regex stack (a panic).
    text = "start " + " " * 1_000_000 + " end"
    chunks = chunk_text(text, document_id="ws", chunk_size_tokens=512, overlap_tokens=0)
    assert [c.text for c in chunks] == ["start", "end"]


def test_a_megabyte_is_chunked_quickly() -> None:
    default_tokenizer()  # loading is a one-off
    text = prose(3000, seed=7)
    text = (text * (1_000_000 // len(text) + 1))[:1_000_000]
    started = time.perf_counter()
    chunks = chunk_text(text, document_id="big")
    elapsed = time.perf_counter() - started
    assert_exact_slices(text, chunks)
    assert elapsed < 2.0, f"chunking 1 MB took {elapsed:.2f} s"
