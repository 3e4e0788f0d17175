# llama-cpp-python's OpenAI-compatible server (llama_cpp.server), on the `local` image, which already
# has llama-cpp-python compiled for it and SmolLM2-135M-Instruct; its server extras come from PyPI.
# A model.gguf in the /models mount is served instead of SmolLM2.
ARG LOCAL_IMAGE=llamastack-local:latest
FROM ${LOCAL_IMAGE}
USER root
RUN pip install -q --no-cache-dir "llama-cpp-python[server]==$(pip show llama-cpp-python | sed -n 's/^Version: //p')"
COPY engine-entrypoint.sh /usr/local/bin/engine-entrypoint
USER llamastack
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=5s --retries=24 CMD ["python", "-c", \
  "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v1/models', timeout=4)"]
ENTRYPOINT ["engine-entrypoint"]
