"""Images a client sends in messages (http(s) URLs or data URLs), fetched and decoded for a vision model.

URLs are fetched through the stack's outbound policy (public addresses only unless the operator
allows more), with a deadline and a size cap; decoding happens in a worker thread and every failure
is a 400 that names the message and the problem. Pillow is imported lazily.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import re
import urllib.parse
from typing import Any

from llamastack.stack.errors import (
    BadRequestError,
    DocumentFetchError,
    DocumentTooLargeError,
    OutboundRefusedError,
)
from llamastack.stack.ingestion.fetch import fetch
from llamastack.stack.library_imports import library_imports
from llamastack.stack.outbound import OutboundPolicy

MAX_IMAGE_BYTES = 20 * 2**20
MAX_IMAGE_PIXELS = 40_000_000  # decompression bombs: a small file that expands to gigabytes
FETCH_TIMEOUT_S = 20.0


class ImageError(BadRequestError):
    pass


def _data_url_bytes(url: str, where: str, max_bytes: int) -> bytes:
    header, comma, payload = url[5:].partition(",")
    if not comma or not header.lower().endswith(";base64"):
        raise ImageError(f"{where}: an image data URL must be base64, like data:image/png;base64,<data>.")
    payload = re.sub(r"\s+", "", urllib.parse.unquote(payload))
    if len(payload) * 3 // 4 > max_bytes:
        raise DocumentTooLargeError(f"{where}: the image is larger than {max_bytes} bytes.")
    payload += "=" * (-len(payload) % 4)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"{where}: invalid base64 in the image data URL ({exc}).") from None


def decode_image(data: bytes, where: str) -> Any:
    """The bytes as an RGB PIL image, or a 400 naming the problem (blocking: run it in a thread)."""
    with library_imports:
        from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageError(f"{where}: the image is empty.")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageError(
                    f"{where}: the image is {width}x{height} pixels; at most {MAX_IMAGE_PIXELS} pixels "
                    "are accepted. Send a smaller image."
                )
            return image.convert("RGB")
    except UnidentifiedImageError:
        raise ImageError(
            f"{where}: the data is not an image Pillow can decode; send PNG, JPEG, GIF or WebP."
        ) from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{where}: the image could not be decoded ({exc}).") from None


async def load_image(
    ref: str,
    where: str,
    outbound: OutboundPolicy,
    *,
    max_bytes: int = MAX_IMAGE_BYTES,
    timeout_s: float = FETCH_TIMEOUT_S,
) -> Any:
    """An image from an http(s) URL or a data URL, decoded; a 400 for anything else."""
    scheme = ref.split(":", 1)[0].lower() if ":" in ref else ""
    if scheme == "data":
        data = _data_url_bytes(ref, where, max_bytes)
    elif scheme in ("http", "https"):
        try:
            data, _, _ = await fetch(ref, outbound, max_bytes, timeout_s)
        except (DocumentFetchError, OutboundRefusedError) as exc:
            raise ImageError(f"{where}: {exc.detail}") from None
    else:
        shown = ref[:40] + ("..." if len(ref) > 40 else "")
        raise ImageError(f"{where}: the image '{shown}' is neither an http(s) URL nor a data URL.")
    return await asyncio.to_thread(decode_image, data, where)
