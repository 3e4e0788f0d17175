# chroma's own server (the `chroma` CLI of the chromadb package, from PyPI) on the local
# python:3.11-slim base. CHROMA_VERSION must be the chromadb-client version in the stack image
# (`docker run --rm --entrypoint pip llamastack-remote show chromadb-client`).
FROM python:3.11-slim
ARG CHROMA_VERSION=1.5.9
# Extra CA certificates put in certs/ (e.g. of a TLS-intercepting proxy), for pip.
COPY certs/ /usr/local/share/ca-certificates/extra/
RUN update-ca-certificates >/dev/null \
 && python3 -m venv /opt/chroma \
 && PIP_CERT=/etc/ssl/certs/ca-certificates.crt /opt/chroma/bin/pip install -q --no-cache-dir \
      --disable-pip-version-check "chromadb==${CHROMA_VERSION}" \
 && groupadd --system --gid 10002 chroma \
 && useradd --system --uid 10002 --gid chroma --home-dir /data --no-create-home chroma \
 && install -d -o chroma -g chroma /data
USER chroma
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=5s --retries=24 CMD ["/opt/chroma/bin/python", "-c", \
  "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/v2/heartbeat', timeout=4)"]
CMD ["/opt/chroma/bin/chroma", "run", "--path", "/data", "--host", "0.0.0.0", "--port", "8000"]
