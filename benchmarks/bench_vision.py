"""Llama 3.2 11B Vision through the `cuda` distribution: load time, time to first token, tokens/s.

Meant for a machine with a CUDA GPU and the weights on disk (or in the Hugging Face cache):

    pip install -e '.[cuda]'        # after the CUDA build of torch==2.13.0
    .venv/bin/python benchmarks/bench_vision.py --model-path ~/models/Llama-3.2-11B-Vision-Instruct

It starts `llama-stack run cuda` on a free 127.0.0.1 port with VISION_MODEL / VISION_MODEL_PATH set
(the text model stays the bundled SmolLM2), and measures:

1. load: spawn -> first 200 from /v1/health (every model loaded), and the provider's device/dtype;
2. TTFT: first streamed content chunk of an image + text chat (image sent as a data URL), p50/p95;
3. decode tokens/s: first content chunk to the last, p50, over ``--iterations`` streamed requests;
4. the same request non-streamed: latency p50 and completion tokens.

Without a GPU it still runs (the models fall back to the CPU) but says so: the figures are then not
the ones this script is for. ``--quantization 4bit`` loads through bitsandbytes.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _server import cli_path, free_port, percentile

OPENAI_CHAT = "/v1/openai/v1/chat/completions"
VISION_MODEL = "Llama3.2-11B-Vision-Instruct"


def _image_data_url(size: int) -> str:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), (240, 240, 240))
    draw = ImageDraw.Draw(image)
    draw.rectangle((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=(200, 30, 30))
    draw.ellipse((size // 3, size // 3, 2 * size // 3, 2 * size // 3), fill=(30, 30, 200))
    out = io.BytesIO()
    image.save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def _request(image: str, max_tokens: int, stream: bool) -> dict[str, object]:
    return {
        "model": VISION_MODEL,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": image}},
                    {"type": "text", "text": "Describe this image in detail."},
                ],
            }
        ],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
        **({"stream_options": {"include_usage": True}} if stream else {}),
    }


def _streamed(client: httpx.Client, body: dict[str, object]) -> tuple[float, float, int]:
    """(TTFT s, decode tokens/s, completion tokens) of one streamed request."""
    start = time.perf_counter()
    first = last = None
    chunks = 0
    tokens = 0
    with client.stream("POST", OPENAI_CHAT, json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                tokens = int(event["usage"]["completion_tokens"])
            for choice in event.get("choices") or []:
                if choice["delta"].get("content"):
                    now = time.perf_counter()
                    first = first or now
                    last = now
                    chunks += 1
    if first is None or last is None:
        raise RuntimeError("the stream carried no content")
    tokens = tokens or chunks
    decode_s = last - first
    return first - start, (tokens - 1) / decode_s if decode_s > 0 and tokens > 1 else float("nan"), tokens


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-path", default="meta-llama/Llama-3.2-11B-Vision-Instruct")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=560)
    parser.add_argument("--quantization", choices=["none", "4bit", "8bit"], default="none")
    parser.add_argument("--load-timeout", type=float, default=1800)
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print(
            "WARNING: no CUDA GPU: the model runs on the CPU; these are not the figures this script is for."
        )
    else:
        print(f"GPU: {torch.cuda.get_device_name(0)}")

    work = Path(tempfile.mkdtemp(prefix="bench-vision-"))
    port = free_port()
    env = {
        **os.environ,
        "LLAMA_STACK_STATE_DIR": str(work / "state"),
        "VISION_MODEL": VISION_MODEL,
        "VISION_MODEL_PATH": args.model_path,
        "TRANSFORMERS_QUANTIZATION": args.quantization,
    }
    log = work / "server.log"
    cmd = [cli_path(), "run", "cuda", "--port", str(port), "--host", "127.0.0.1"]
    started = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=600) as client:
            while True:
                if proc.poll() is not None:
                    print(log.read_text(errors="replace")[-3000:])
                    return 1
                try:
                    if client.get("/v1/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.perf_counter() - started > args.load_timeout:
                    print(f"not healthy after {args.load_timeout:.0f} s; log: {log}")
                    return 1
                time.sleep(0.2)
            load_s = time.perf_counter() - started
            models = {m["identifier"]: m for m in client.get("/v1/models").json()["data"]}
            meta = models[VISION_MODEL]["metadata"]
            print(
                f"load (spawn -> healthy, all models): {load_s:.1f} s on {meta['device']} as {meta['dtype']}"
            )

            image = _image_data_url(args.image_size)
            _streamed(client, _request(image, 8, True))  # warm-up: kernels, caches
            ttfts, rates, counts = [], [], []
            for _ in range(args.iterations):
                ttft, rate, tokens = _streamed(client, _request(image, args.max_tokens, True))
                ttfts.append(ttft)
                rates.append(rate)
                counts.append(tokens)
            print(
                f"TTFT (image {args.image_size}px + text): p50 {percentile(ttfts, 50) * 1000:.0f} ms, "
                f"p95 {percentile(ttfts, 95) * 1000:.0f} ms"
            )
            print(
                f"decode: p50 {statistics.median(rates):.1f} tokens/s "
                f"over {statistics.mean(counts):.0f} tokens"
            )
            latencies = []
            for _ in range(max(1, args.iterations // 2)):
                t0 = time.perf_counter()
                answer = client.post(OPENAI_CHAT, json=_request(image, args.max_tokens, False))
                answer.raise_for_status()
                latencies.append(time.perf_counter() - t0)
            usage = answer.json()["usage"]
            print(
                f"non-streamed: p50 {statistics.median(latencies):.2f} s for "
                f"{usage['completion_tokens']} tokens (prompt {usage['prompt_tokens']} tokens)"
            )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
