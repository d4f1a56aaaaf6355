"""`GET /v1/models`."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field

from serve_common.protocol.base import StrictWireModel


class ModelCard(StrictWireModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "ai-inference"
    # Non-OpenAI extras (the SDK ignores them): which task and which model backs this name.
    task: str | None = None
    root: str | None = None


class ModelList(StrictWireModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
