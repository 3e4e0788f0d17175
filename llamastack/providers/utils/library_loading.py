"""One lock for loading models with the Hugging Face libraries (transformers, sentence-transformers).

The run config's models load in threads at the same time, but transformers resolves its names through
a lazy module that is not safe to import from two threads at once (one of them can get
"module 'transformers' has no attribute 'AutoConfig'"). Loads that go through it take turns; llama.cpp
and onnxruntime models still load beside them.
"""

from __future__ import annotations

import threading

hf_loading = threading.Lock()

__all__ = ["hf_loading"]
