"""Base classes shared by the wire schemas."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class WireModel(BaseModel):
    """A request body: unknown fields are ignored (newer SDKs send fields older servers lack)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class StrictWireModel(BaseModel):
    """A response body: exactly the declared fields."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
