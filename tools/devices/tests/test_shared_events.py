"""The shared push models (`sonalyze_protocol.measurement_events`) against the app's contract (spec phone-app.md)."""

from __future__ import annotations

import pytest

from sonalyze_devices.app_contract import PUSHES
from sonalyze_protocol import measurement_events as events

MODELS = events.PUSH_PAYLOADS
APP_PUSHES = [event for event in PUSHES if event.startswith("measurement.")]


def test_every_measurement_push_the_app_handles_is_a_shared_name() -> None:
    assert set(APP_PUSHES) <= set(MODELS)


@pytest.mark.parametrize("event", APP_PUSHES)
def test_every_field_the_app_casts_hard_is_always_sent(event: str) -> None:
    hard = {field.name for field in PUSHES[event] if field.hard}
    for model in MODELS[event]:
        assert hard <= model.__required_keys__, (event, model.__name__)


@pytest.mark.parametrize("event", APP_PUSHES)
def test_every_field_the_app_reads_is_declared(event: str) -> None:
    """Optional reads may be absent on the wire (``audio_endpoint``: never sent), but most are declared."""
    read = {field.name for field in PUSHES[event]} - {"audio_endpoint"}
    for model in MODELS[event]:
        assert read <= model.__annotations__.keys(), (event, model.__name__)
