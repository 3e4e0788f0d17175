"""Types shared by several APIs (content items, resources)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AllowInfNan, BaseModel, ConfigDict, Field, Strict, StrictBool

# Request fields take JSON's own types, as OpenAI does: "yes" is not a boolean, "5" or 5.5 not an
# integer, "0.5" not a number (pydantic's lax mode would coerce them).
JsonBool = StrictBool
JsonInt = Annotated[int, Strict()]
JsonFloat = Annotated[float, Strict(), AllowInfNan(False)]


class URL(BaseModel):
    uri: str


class _ImageSource(BaseModel):
    url: URL | None = None
    data: str | None = Field(default=None, description="base64 encoded image data")


class ImageContentItem(BaseModel):
    type: Literal["image"] = "image"
    image: _ImageSource


class TextContentItem(BaseModel):
    type: Literal["text"] = "text"
    text: str


InterleavedContentItem = Annotated[ImageContentItem | TextContentItem, Field(discriminator="type")]
InterleavedContent = str | InterleavedContentItem | list[InterleavedContentItem]


def content_to_text(content: InterleavedContent | None) -> str:
    """Joins the text parts of interleaved content; engines that take plain strings need this."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, TextContentItem):
        return content.text
    if isinstance(content, ImageContentItem):
        return ""
    return "".join(item.text for item in content if isinstance(item, TextContentItem))


def content_has_image(content: InterleavedContent | None) -> bool:
    if isinstance(content, ImageContentItem):
        return True
    if isinstance(content, list):
        return any(isinstance(item, ImageContentItem) for item in content)
    return False


class ResourceType(StrEnum):
    model = "model"
    shield = "shield"
    vector_db = "vector_db"
    dataset = "dataset"
    scoring_function = "scoring_function"
    benchmark = "benchmark"
    tool = "tool"
    tool_group = "tool_group"


class Resource(BaseModel):
    """Something registered with the stack and owned by one provider."""

    model_config = ConfigDict(protected_namespaces=())

    identifier: str
    provider_resource_id: str | None = None
    provider_id: str
    type: ResourceType


class Order(StrEnum):
    asc = "asc"
    desc = "desc"
