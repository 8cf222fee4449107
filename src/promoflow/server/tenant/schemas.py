"""Models of the API-key extension (``/api/v2/promoflow/keys``); the wire package has no model for these."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from ...wire.engage import NO_NUL, Text, WireModel

_Network = Annotated[str, StringConstraints(max_length=64, pattern=NO_NUL)]


class ApiKeyIn(WireModel):
    """A new named key."""

    name: str = Text(
        max_length=64, description="Unique among the tenant's active keys: letters, digits, space, . _ -"
    )
    ip_allow_list: list[_Network] = Field(
        default_factory=list,
        max_length=100,
        description="Addresses or networks that may use the key, in addition to the tenant's ipAllowList; "
        "empty: any",
    )
    scope: Literal["api", "admin"] = Field(
        "api", description="api: the Engage API; admin: also these key operations"
    )


class ApiKeyOut(WireModel):
    """A key as the tenant sees it: never its secret, only the secret's first characters."""

    name: str
    prefix: str = Field(description="The secret's first 10 characters, to tell keys apart")
    scope: str
    ip_allow_list: list[str]
    created_on: str
    rotated_on: str | None = None
    last_used_on: str | None = Field(None, description="Updated at most once a minute per key and process")
    revoked_on: str | None = None
    active: bool


class ApiKeyList(WireModel):
    keys: list[ApiKeyOut]


class NewApiKeyOut(ApiKeyOut):
    """A created or rotated key with its secret: shown this once, stored hashed."""

    api_key: str
