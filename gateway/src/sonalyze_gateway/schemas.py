"""Pydantic models at the gateway's boundaries: ``identify`` data, the internal API, health."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from sonalyze_protocol.broadcast import BroadcastRequest, BroadcastResult
from sonalyze_protocol.ids import DEVICE_ID_MAX_CHARS, DeviceId

DeviceToken = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class IdentifyData(BaseModel):
    model_config = ConfigDict(extra="ignore")
    device_id: DeviceId
    device_token: DeviceToken | None = None


class IdentifyReply(BaseModel):
    """``identify``'s response data and the ``gateway.identified`` push: the socket's device and its credential."""

    device_id: str
    device_token: str
    device_auth: str


class RevokeResult(BaseModel):
    device_id: str
    revoked: bool  # False: the device had no credential to revoke


class BroadcastBody(BroadcastRequest):
    """``POST /internal/broadcast``: the shared contract, with a non-empty event name."""

    device_ids: list[str]
    event: str = Field(min_length=1)
    data: dict[str, Any] = {}


class ForwardLoad(BaseModel):
    """One service's backpressure gate: events in flight now, and how many were refused as `overloaded`."""

    in_flight: int
    limit: int
    refused: int


class Health(BaseModel):
    status: str = "ok"
    service: str = "gateway"
    connections: int
    devices: int
    forwards: dict[str, ForwardLoad] = {}
    outbox: dict[str, int] | None = None  # records waiting for storage: pending, dead (None: recording off)
    gateway_id: str | None = None  # this gateway's id on the Redis backplane (None: no backplane)
    # pushes this gateway sent to others (and for how many devices), and pushes it served for others
    backplane: dict[str, int] | None = None


__all__ = [
    "DEVICE_ID_MAX_CHARS",
    "BroadcastBody",
    "BroadcastResult",
    "DeviceId",
    "ForwardLoad",
    "Health",
    "IdentifyData",
    "IdentifyReply",
    "RevokeResult",
]
