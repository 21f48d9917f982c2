"""The one device id rule."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from sonalyze_protocol.ids import DEVICE_ID_MAX_CHARS, DeviceId, is_device_id


class Body(BaseModel):
    device_id: DeviceId


@pytest.mark.parametrize(
    "value", ["a", "dev-1a2b-0", "550e8400-e29b-41d4-a716-446655440000", "x" * DEVICE_ID_MAX_CHARS, "a:b/c@d"]
)
def test_ids_every_client_uses_are_accepted(value: str) -> None:
    assert Body(device_id=value).device_id == value
    assert is_device_id(value)


@pytest.mark.parametrize("value", ["", " ", "a b", " a", "a\n", "é", "x" * (DEVICE_ID_MAX_CHARS + 1), "a\x00"])
def test_ids_outside_the_rule_are_refused(value: str) -> None:
    with pytest.raises(ValidationError):
        Body(device_id=value)
    assert not is_device_id(value)
