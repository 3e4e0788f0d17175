"""Inference on engines that run elsewhere (vLLM, TGI, Ollama, llama.cpp's server, hosted APIs), all
spoken to through their OpenAI-compatible routes by one adapter (``openai_compat``)."""

__all__: list[str] = []
