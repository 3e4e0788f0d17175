"""A copy of a GGUF whose metadata says how its token vectors pool into one vector per input.

llama_cpp.server (0.3.x) has no pooling setting, and SmolLM2's GGUF names none, so with --embedding
it answers one vector per token. llama.cpp reads the pooling from the file (``<arch>.pooling_type``):
a copy that names mean pooling makes the same engine answer one vector per input, as embedding
engines do. Written with the `gguf` package (the cuda extra's, which the tests install).
"""

from __future__ import annotations

from pathlib import Path

MEAN_POOLING = 1  # llama.cpp's LLAMA_POOLING_TYPE_MEAN


def with_pooling(source: Path, target: Path, pooling: int = MEAN_POOLING) -> Path:
    """`source` copied to `target`, every key and tensor unchanged, with the pooling key added."""
    import gguf

    reader = gguf.GGUFReader(source)
    arch = str(reader.fields[gguf.Keys.General.ARCHITECTURE].contents())
    writer = gguf.GGUFWriter(target, arch=arch, endianess=reader.endianess)
    for field in reader.fields.values():
        # The architecture is the writer's own, and GGUF.* are the reader's view of the header.
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        kind = field.types[0]
        element = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=element)
    writer.add_key_value(f"{arch}.pooling_type", pooling, gguf.GGUFValueType.UINT32)
    for tensor in reader.tensors:
        writer.add_tensor_info(
            tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes, tensor.tensor_type
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
    writer.close()
    return target
