"""A BERT-family sentence encoder in numpy, for sentence-transformers folders.

Why not torch: importing torch + sentence-transformers takes ~10 s on a 2-core machine and adds
~1 GB to an install, while a 6-layer MiniLM forward pass is a handful of matrix products that
numpy's BLAS does as fast. Reads the folder's own files (config.json, tokenizer.json,
model.safetensors, 1_Pooling/config.json, modules.json) and reproduces the
Transformer -> Pooling -> Normalize pipeline; a test compares it with sentence-transformers.
`BertFolder` is that reading, tokenizing, batching and pooling, shared with the onnxruntime encoder
(onnx_bert.py, the default), which tests compare with this one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from llamastack.stack.library_imports import library_imports

Truncation = Literal["none", "start", "end"]


class UnsupportedFolder(Exception):
    """The folder is not something this encoder can run; use the torch backend."""


class TooLongError(ValueError):
    def __init__(self, index: int, tokens: int, limit: int) -> None:
        super().__init__(f"contents[{index}] has {tokens} tokens; the model takes at most {limit}")


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): numpy has no erf and BERT's GELU is exact.
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x * np.float32(0.7071067811865476)))


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


class BertFolder:
    """What every BERT encoder here shares: the folder's configuration and tokenizer, length-sorted
    batching and pooling. Subclasses load the weights and run `_hidden` (the last hidden states)."""

    def __init__(self, folder: Path) -> None:
        with library_imports:
            from tokenizers import Tokenizer

        self.folder = folder

        cfg = self._json(folder / "config.json")
        if cfg.get("model_type") not in ("bert",) or cfg.get("hidden_act", "gelu") != "gelu":
            raise UnsupportedFolder(f"model_type {cfg.get('model_type')!r} is not a BERT model")
        if cfg.get("position_embedding_type", "absolute") != "absolute":
            raise UnsupportedFolder("only absolute position embeddings are supported")
        weights_file = folder / "model.safetensors"
        if not weights_file.is_file() or not (folder / "tokenizer.json").is_file():
            raise UnsupportedFolder("needs model.safetensors and tokenizer.json")
        modules = self._json(folder / "modules.json", default=[])
        pooling_dir = next((m["path"] for m in modules if m.get("type", "").endswith("Pooling")), "1_Pooling")
        pooling = self._json(folder / pooling_dir / "config.json", default={"pooling_mode_mean_tokens": True})
        if pooling.get("pooling_mode_cls_token"):
            self.pooling = "cls"
        elif pooling.get("pooling_mode_max_tokens"):
            self.pooling = "max"
        elif pooling.get("pooling_mode_mean_tokens", True):
            self.pooling = "mean"
        else:
            raise UnsupportedFolder(f"pooling {pooling} is not supported")
        self.normalize = any(m.get("type", "").endswith("Normalize") for m in modules)
        st_cfg = self._json(folder / "sentence_bert_config.json", default={})
        self.max_tokens = int(st_cfg.get("max_seq_length") or cfg.get("max_position_embeddings", 512))
        self.heads = int(cfg["num_attention_heads"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.dimension = int(cfg["hidden_size"])

        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        cls_id, sep_id = self.tokenizer.token_to_id("[CLS]"), self.tokenizer.token_to_id("[SEP]")
        if cls_id is None or sep_id is None:
            raise UnsupportedFolder("the tokenizer has no [CLS] or [SEP] token")
        self.cls_id: int = cls_id
        self.sep_id: int = sep_id
        self.weights_file = weights_file
        self.layer_count = int(cfg["num_hidden_layers"])

    @staticmethod
    def _json(path: Path, default: object = None) -> Any:
        """The parsed file (a dict or a list, as each sentence-transformers file has it)."""
        if not path.is_file():
            if default is None:
                raise UnsupportedFolder(f"{path.name} is missing")
            return default
        return json.loads(path.read_text())

    def tokenize(self, texts: list[str], truncation: Truncation | None) -> list[list[int]]:
        out = []
        limit = self.max_tokens
        for i, enc in enumerate(self.tokenizer.encode_batch(texts)):
            ids = enc.ids
            if len(ids) > limit:
                if truncation == "none":
                    raise TooLongError(i, len(ids), limit)
                body = ids[1:-1]
                keep = limit - 2
                body = body[-keep:] if truncation == "start" else body[:keep]
                ids = [self.cls_id, *body, self.sep_id]
            out.append(ids)
        return out

    def _hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Last hidden states (n, length, hidden) of padded token ids and their 0/1 float mask."""
        raise NotImplementedError

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        n, length = len(batch), max(len(ids) for ids in batch)
        ids = np.zeros((n, length), dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.float32)
        for i, row in enumerate(batch):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1.0
        x = self._hidden(ids, mask)
        if self.pooling == "cls":
            pooled = x[:, 0]
        elif self.pooling == "max":
            pooled = np.where(mask[..., None] > 0, x, np.float32(-1e9)).max(1)
        else:
            pooled = (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        if self.normalize:
            pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled.astype(np.float32)

    def encode(
        self, texts: list[str], *, batch_size: int = 32, truncation: Truncation | None = None
    ) -> tuple[np.ndarray, int]:
        """Returns (embeddings in input order, tokens seen)."""
        token_ids = self.tokenize(texts, truncation)
        order = sorted(range(len(texts)), key=lambda i: len(token_ids[i]))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start, end in length_batches([len(token_ids[i]) for i in order], batch_size):
            idx = order[start:end]
            out[idx] = self._forward([token_ids[i] for i in idx])
        return out, sum(len(t) for t in token_ids)


# What one more forward pass costs, in padded tokens: below it, splitting a batch to pad less does not
# pay. Small against a passage (~100 tokens), so batches follow the lengths closely.
RUN_COST_TOKENS = 32


def length_batches(lengths: list[int], batch_size: int) -> list[tuple[int, int]]:
    """[start, end) batches of at most batch_size over ascending lengths, with the least padded tokens
    plus RUN_COST_TOKENS per batch (an exact partition: O(n * batch_size)). Fixed-size batches of the
    64 chunks of one insert pad ~10%; these pad ~2% (the whole corpus sorted at once pads ~2% too)."""
    n = len(lengths)
    best = [0] * (n + 1)  # best[i]: the cost of the first i texts
    cut = [0] * (n + 1)  # where the last batch of those starts
    for end in range(1, n + 1):
        longest = lengths[end - 1]
        best[end], cut[end] = min(
            (best[start] + (end - start) * longest + RUN_COST_TOKENS, start)
            for start in range(max(0, end - batch_size), end)
        )
    batches = []
    end = n
    while end:
        batches.append((cut[end], end))
        end = cut[end]
    return batches[::-1]


class NumpyBertEncoder(BertFolder):
    def __init__(self, folder: Path) -> None:
        with library_imports:
            from safetensors.numpy import load_file

        super().__init__(folder)
        w = load_file(str(self.weights_file))
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in w else ""

        def get(name: str) -> np.ndarray:
            return w[prefix + name]

        self.word = get("embeddings.word_embeddings.weight")
        self.position = get("embeddings.position_embeddings.weight")
        self.token_type = get("embeddings.token_type_embeddings.weight")[0]
        self.emb_ln = (get("embeddings.LayerNorm.weight"), get("embeddings.LayerNorm.bias"))
        self.layers = []
        for i in range(self.layer_count):
            p = f"encoder.layer.{i}."
            # One fused QKV product per layer; weights transposed once here, not per call.
            qkv_w = np.concatenate(
                [get(p + f"attention.self.{n}.weight") for n in ("query", "key", "value")], axis=0
            ).T.copy()
            qkv_b = np.concatenate([get(p + f"attention.self.{n}.bias") for n in ("query", "key", "value")])
            self.layers.append(
                (
                    qkv_w,
                    qkv_b,
                    get(p + "attention.output.dense.weight").T.copy(),
                    get(p + "attention.output.dense.bias"),
                    (
                        get(p + "attention.output.LayerNorm.weight"),
                        get(p + "attention.output.LayerNorm.bias"),
                    ),
                    get(p + "intermediate.dense.weight").T.copy(),
                    get(p + "intermediate.dense.bias"),
                    get(p + "output.dense.weight").T.copy(),
                    get(p + "output.dense.bias"),
                    (get(p + "output.LayerNorm.weight"), get(p + "output.LayerNorm.bias")),
                )
            )

    def _hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        n, length = ids.shape
        hidden = self.dimension
        # Linear layers run as one 2-D product over all tokens of the batch (one BLAS call each).
        x = (self.word[ids] + self.position[:length] + self.token_type).reshape(n * length, hidden)
        x = _layer_norm(x, *self.emb_ln, self.eps)
        heads, d = self.heads, hidden // self.heads
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        scale = np.float32(1.0 / np.sqrt(d))
        for qkv_w, qkv_b, o_w, o_b, ln1, i_w, i_b, out_w, out_b, ln2 in self.layers:
            qkv = (x @ qkv_w + qkv_b).reshape(n, length, 3, heads, d).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(n * length, hidden)
            x = _layer_norm(ctx @ o_w + o_b + x, *ln1, self.eps)
            x = _layer_norm(_gelu(x @ i_w + i_b) @ out_w + out_b + x, *ln2, self.eps)
        return x.reshape(n, length, hidden)
