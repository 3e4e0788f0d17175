"""llamastack: the Llama Stack API server (``stack``), its providers (``providers``), the bundled
distributions (``distributions``) and the ``llama-stack`` CLI (``cli``)."""

__all__: list[str] = []
