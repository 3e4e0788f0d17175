"""The BERT encoder on onnxruntime, from the folder's own safetensors weights (no torch, no export).

The graph is written here with the `onnx` helper API, in the fused form onnxruntime's transformer
optimizer would produce: one `Attention` (QKV product, masked softmax, context) per layer, the residual
adds folded into `SkipLayerNormalization`, the FFN's bias and exact GELU in `BiasGelu`. The same
tokenizer, length-sorted batches and pooling as the numpy encoder (BertFolder), which tests compare
it with. Building the graph takes over a second (importing onnx is much of it), so it is kept in the
configured directory as an .onnx file, keyed by the weights file and the versions that shape it:
by default the per-user cache, which the install fills (prepare.py), so that starts only read it; a
server that finds none builds it, and a cached file that does not load is built again. The opt-in
int8 graph (dynamic quantization of the weight products, onnxruntime's own quantizer) takes seconds
and is cached beside.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from llamastack.stack.library_imports import library_imports

from .numpy_bert import BertFolder

log = logging.getLogger(__name__)

Quantize = Literal["none", "int8"]

# Changes whenever the graph written below changes, so caches of an older layout are not reused.
GRAPH_VERSION = "1"
_MS = "com.microsoft"


def onnx_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "none"


def _write_atomically(path: Path, data: bytes) -> None:
    """Written beside, then renamed: a concurrent start never reads half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class OnnxBertEncoder(BertFolder):
    def __init__(self, folder: Path, *, quantize: Quantize = "none", cache_dir: Path | None = None) -> None:
        super().__init__(folder)
        self.quantize = quantize
        started = time.perf_counter()
        self._from_cache: Path | None = None  # the cached file the graph came from, if any
        try:
            self._start(self._graph_source(cache_dir))
        except Exception as exc:  # onnxruntime and onnx raise their own kinds for an unreadable graph
            cached = self._from_cache
            if cached is None or cache_dir is None:
                raise
            # A cached file that does not load (cut short, overwritten, from another build of the
            # libraries) is made again from the weights rather than failing the start.
            log.warning("The cached onnx graph %s does not load (%s); rebuilding it", cached, exc)
            self._forget(cache_dir)
            self._from_cache = None
            self._start(self._graph_source(cache_dir))
        log.info(
            "onnxruntime BERT encoder (%s) for %s ready in %.2f s",
            "int8" if quantize == "int8" else "fp32",
            folder,
            time.perf_counter() - started,
        )

    def _start(self, model: bytes | str) -> None:
        """The onnxruntime session over the graph, warmed up and checked."""
        with library_imports:
            import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Worker threads sleep between runs instead of spinning: a spinning pool costs a shared
        # 2-core machine far more (other processes' time) than the microseconds it saves per run.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        # The first run of each shape allocates; one short run now keeps that out of the first request,
        # and shows that the graph is the one of this folder.
        out = self._forward([[self.cls_id, *([self.sep_id] * 14), self.sep_id]])
        if out.shape != (1, self.dimension) or not np.isfinite(out).all():
            raise ValueError(f"the graph gives {out.shape[1:]} values, not {self.dimension}")

    def _hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {"input_ids": ids, "attention_mask": mask.astype(np.int32)})
        return np.asarray(out[0])

    # --- the graph -----------------------------------------------------------------------------------

    def _graph_source(self, cache_dir: Path | None) -> bytes | str:
        """The serialized graph, or the path of its cached file (onnxruntime reads a file in half the
        time it takes to load the same bytes); built (and kept in the cache) when not there."""
        if cache_dir is None:  # nowhere to keep it: made again at every start
            return self._uncached(self._build().SerializeToString())
        fp32_path, int8_path = self._cache_files(cache_dir)
        path = int8_path if self.quantize == "int8" else fp32_path
        if path.is_file():
            self._from_cache = path
            return str(path)
        if fp32_path.is_file():  # int8 is made from the cached fp32 graph
            self._from_cache = fp32_path
            fp32 = fp32_path.read_bytes()
        else:
            started = time.perf_counter()
            fp32 = self._build().SerializeToString()
            try:
                cache_dir.mkdir(parents=True, exist_ok=True)
                _write_atomically(fp32_path, fp32)
            except OSError as exc:  # an unwritable cache costs the build at every start, not the start
                log.warning(
                    "Could not keep the onnx graph in %s (%s); set EMBEDDING_CACHE_DIR", cache_dir, exc
                )
                return self._uncached(fp32)
            log.info(
                "Built the onnx graph of %s in %.1f s (cached as %s)",
                self.folder,
                time.perf_counter() - started,
                fp32_path,
            )
        return self._quantized(fp32, int8_path) if self.quantize == "int8" else fp32

    def _uncached(self, fp32: bytes) -> bytes:
        if self.quantize != "int8":
            return fp32
        with tempfile.TemporaryDirectory(prefix="llamastack-int8-") as tmp:
            return self._quantized(fp32, Path(tmp) / "int8.onnx")

    def _cache_files(self, cache_dir: Path) -> tuple[Path, Path]:
        key = self._cache_key()
        return cache_dir / f"{key}.fp32.onnx", cache_dir / f"{key}.int8.onnx"

    def _forget(self, cache_dir: Path) -> None:
        for path in self._cache_files(cache_dir):
            path.unlink(missing_ok=True)

    def _quantized(self, fp32: bytes, path: Path) -> bytes:
        log.info("Quantizing %s to int8 into %s (once per cache; takes a few seconds) ...", self.folder, path)
        started = time.perf_counter()
        with library_imports:
            from onnx import TensorProto
            from onnxruntime.quantization import QuantType, quantize_dynamic

        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            source.write_bytes(fp32)
            quantize_dynamic(
                source,
                target,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul", "Attention"],
                per_channel=True,
                # The contrib ops' outputs have no inferred type; they are all float.
                extra_options={"DefaultTensorType": TensorProto.FLOAT},
            )
            os.replace(target, path)  # atomic: a concurrent start never reads half a file
        log.info("Quantized in %.1f s", time.perf_counter() - started)
        return path.read_bytes()

    def _cache_key(self) -> str:
        """Names the graph by what shapes it: the weights file (path, size, modification time), the
        model's configuration, this module's graph layout and the versions of the libraries."""
        with library_imports:
            import onnxruntime

        stat = self.weights_file.stat()
        parts = [
            str(self.weights_file.resolve()),
            str(stat.st_size),
            str(stat.st_mtime_ns),
            hashlib.sha256((self.folder / "config.json").read_bytes()).hexdigest(),
            GRAPH_VERSION,
            onnxruntime.__version__,
            _version("onnx"),
        ]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]

    def _build(self) -> Any:
        """The graph with its weights (an onnx ModelProto)."""
        with library_imports:
            from onnx import TensorProto, helper, numpy_helper
            from safetensors.numpy import load_file

        w = load_file(str(self.weights_file))
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in w else ""
        inits: list[Any] = []
        nodes: list[Any] = []

        def const(name: str, value: np.ndarray) -> str:
            inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
            return name

        def weight(name: str, transpose: bool = False) -> str:
            value = w[prefix + name]
            return const(name, value.T if transpose else value)

        def node(op: str, inputs: list[str], output: str, domain: str = "", **attrs: Any) -> str:
            nodes.append(helper.make_node(op, inputs, [output], name=output, domain=domain, **attrs))
            return output

        eps = self.eps
        # Embeddings: words + positions [0, length) + token type 0, then LayerNorm.
        length = node("Shape", ["input_ids"], "length", start=1, end=2)
        zero = const("zero", np.array([0], dtype=np.int64))
        positions = node(
            "Slice", [weight("embeddings.position_embeddings.weight"), zero, length], "positions"
        )
        words = node("Gather", [weight("embeddings.word_embeddings.weight"), "input_ids"], "words")
        token_type = const("token_type", w[prefix + "embeddings.token_type_embeddings.weight"][0])
        emb = node("Add", [node("Add", [words, positions], "words_positions"), token_type], "embedded")
        x = node(
            "LayerNormalization",
            [emb, weight("embeddings.LayerNorm.weight"), weight("embeddings.LayerNorm.bias")],
            "layer0_in",
            axis=-1,
            epsilon=eps,
        )
        for i in range(self.layer_count):
            p = f"encoder.layer.{i}."
            qkv_w = np.concatenate(
                [w[prefix + p + f"attention.self.{n}.weight"].T for n in ("query", "key", "value")], axis=1
            )
            qkv_b = np.concatenate(
                [w[prefix + p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")]
            )
            ctx = node(
                "Attention",
                [x, const(p + "qkv.weight", qkv_w), const(p + "qkv.bias", qkv_b), "attention_mask"],
                p + "context",
                domain=_MS,
                num_heads=self.heads,
            )
            projected = node("MatMul", [ctx, weight(p + "attention.output.dense.weight", True)], p + "proj")
            x = node(
                "SkipLayerNormalization",
                [
                    projected,
                    x,
                    weight(p + "attention.output.LayerNorm.weight"),
                    weight(p + "attention.output.LayerNorm.bias"),
                    weight(p + "attention.output.dense.bias"),
                ],
                p + "attn_out",
                domain=_MS,
                epsilon=eps,
            )
            up = node("MatMul", [x, weight(p + "intermediate.dense.weight", True)], p + "up")
            act = node("BiasGelu", [up, weight(p + "intermediate.dense.bias")], p + "gelu", domain=_MS)
            down = node("MatMul", [act, weight(p + "output.dense.weight", True)], p + "down")
            x = node(
                "SkipLayerNormalization",
                [
                    down,
                    x,
                    weight(p + "output.LayerNorm.weight"),
                    weight(p + "output.LayerNorm.bias"),
                    weight(p + "output.dense.bias"),
                ],
                "last_hidden" if i == self.layer_count - 1 else p + "out",
                domain=_MS,
                epsilon=eps,
            )
        graph = helper.make_graph(
            nodes,
            "bert",
            [
                helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "length"]),
                helper.make_tensor_value_info("attention_mask", TensorProto.INT32, ["batch", "length"]),
            ],
            [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", "length", self.dimension])],
            initializer=inits,
        )
        return helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(_MS, 1)],
            producer_name="llamastack",
        )
