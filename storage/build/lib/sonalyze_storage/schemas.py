"""Request and response models of every entity, and the checks that keep bad input out of the database.

Text anywhere (fields, JSON payloads, filters) must be valid Unicode without NUL characters, numbers in
JSON payloads finite, timestamps convertible to UTC: PostgreSQL rejects each of these, and a rejection
must be a 422 here rather than a 500 from the driver.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Final, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from sonalyze_storage.models import ID_LENGTH, KEY_LENGTH, SHORT_LENGTH

MAX_JSON_DEPTH: Final = 32
DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 500
MAX_OFFSET: Final = 1_000_000_000
CLIENT_ID_PATTERN: Final = r"^[A-Za-z0-9._:\-]+$"


def check_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def _check_json_value(value: Any, depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"is nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        check_text(value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must not contain NaN or Infinity")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(str(key))
            _check_json_value(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json_value(item, depth + 1)


def check_json(value: dict[str, Any]) -> dict[str, Any]:
    _check_json_value(value, 0)
    return value


def to_utc(value: datetime) -> datetime:
    """Naive timestamps are taken as UTC; every timestamp is stored and returned in UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is outside the representable range once converted to UTC") from None


Key = Annotated[str, StringConstraints(min_length=1, max_length=KEY_LENGTH), AfterValidator(check_text)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=SHORT_LENGTH), AfterValidator(check_text)]
LongText = Annotated[str, StringConstraints(max_length=10_000), AfterValidator(check_text)]
ClientId = Annotated[str, StringConstraints(min_length=1, max_length=ID_LENGTH, pattern=CLIENT_ID_PATTERN)]
RecordId = Annotated[str, StringConstraints(min_length=1, max_length=ID_LENGTH), AfterValidator(check_text)]
JsonObject = Annotated[dict[str, Any], AfterValidator(check_json)]
UtcDatetime = Annotated[datetime, AfterValidator(to_utc)]
SampleRateHz = Annotated[int, Field(ge=1, le=10_000_000)]
DurationS = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]
SizeBytes = Annotated[int, Field(ge=0, le=2**62)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Patch(Body):
    """A partial update: only the fields present change; ``not_null`` fields may be absent, never null."""

    not_null: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_null_for_required(self) -> Patch:
        for name in self.model_fields_set & self.not_null:
            if getattr(self, name) is None:
                raise ValueError(f"{name} may be omitted but not null")
        return self


class Record(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    created_at: datetime
    updated_at: datetime


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class CommonFilters(Body):
    """Every list takes these; ``created_after`` is exclusive."""

    limit: int = Field(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    created_after: UtcDatetime | None = None


# devices


class DeviceCreate(Body):
    device_id: Key
    first_seen_at: UtcDatetime | None = None
    last_seen_at: UtcDatetime | None = None
    meta: JsonObject = {}


class DeviceUpdate(Patch):
    not_null = frozenset({"device_id", "meta"})
    device_id: Key | None = None
    first_seen_at: UtcDatetime | None = None
    last_seen_at: UtcDatetime | None = None
    meta: JsonObject | None = None


class DeviceRead(Record):
    device_id: str
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    meta: dict[str, Any]


class DeviceFilters(CommonFilters):
    device_id: Key | None = None


MAX_DEVICES_PER_BATCH: Final = 1000


class DeviceBatch(Body):
    """Many devices' "seen" windows in one request (a gateway coalesces a connect storm into these)."""

    devices: list[DeviceCreate] = Field(min_length=1, max_length=MAX_DEVICES_PER_BATCH)


class DeviceBatchResult(BaseModel):
    created: int
    updated: int


# lobbies


class LobbyCreate(Body):
    lobby_id: Key
    code: ShortText | None = None
    admin_device_id: Key | None = None
    status: ShortText | None = None
    opened_at: UtcDatetime | None = None
    closed_at: UtcDatetime | None = None
    meta: JsonObject = {}


class LobbyUpdate(Patch):
    not_null = frozenset({"lobby_id", "meta"})
    lobby_id: Key | None = None
    code: ShortText | None = None
    admin_device_id: Key | None = None
    status: ShortText | None = None
    opened_at: UtcDatetime | None = None
    closed_at: UtcDatetime | None = None
    meta: JsonObject | None = None


class LobbyRead(Record):
    lobby_id: str
    code: str | None
    admin_device_id: str | None
    status: str | None
    opened_at: datetime | None
    closed_at: datetime | None
    meta: dict[str, Any]


class LobbyFilters(CommonFilters):
    lobby_id: Key | None = None
    code: ShortText | None = None
    admin_device_id: Key | None = None
    status: ShortText | None = None


# participants


class ParticipantCreate(Body):
    lobby_id: Key
    device_id: Key
    role: ShortText | None = None
    role_slot_id: ShortText | None = None
    joined_at: UtcDatetime | None = None
    left_at: UtcDatetime | None = None
    meta: JsonObject = {}


class ParticipantUpdate(Patch):
    not_null = frozenset({"lobby_id", "device_id", "meta"})
    lobby_id: Key | None = None
    device_id: Key | None = None
    role: ShortText | None = None
    role_slot_id: ShortText | None = None
    joined_at: UtcDatetime | None = None
    left_at: UtcDatetime | None = None
    meta: JsonObject | None = None


class ParticipantRead(Record):
    lobby_id: str
    device_id: str
    role: str | None
    role_slot_id: str | None
    joined_at: datetime | None
    left_at: datetime | None
    meta: dict[str, Any]


class ParticipantFilters(CommonFilters):
    lobby_id: Key | None = None
    device_id: Key | None = None
    role: ShortText | None = None


# measurements


class MeasurementCreate(Body):
    job_id: Key
    upload_name: Key
    lobby_id: Key | None = None
    device_id: Key | None = None
    speaker_slot_id: ShortText | None = None
    mic_slot_id: ShortText | None = None
    signal_id: Key | None = None
    sample_rate_hz: SampleRateHz | None = None
    duration_s: DurationS | None = None
    size_bytes: SizeBytes | None = None
    recorded_at: UtcDatetime | None = None
    meta: JsonObject = {}


class MeasurementUpdate(Patch):
    not_null = frozenset({"job_id", "upload_name", "meta"})
    job_id: Key | None = None
    upload_name: Key | None = None
    lobby_id: Key | None = None
    device_id: Key | None = None
    speaker_slot_id: ShortText | None = None
    mic_slot_id: ShortText | None = None
    signal_id: Key | None = None
    sample_rate_hz: SampleRateHz | None = None
    duration_s: DurationS | None = None
    size_bytes: SizeBytes | None = None
    recorded_at: UtcDatetime | None = None
    meta: JsonObject | None = None


class MeasurementRead(Record):
    job_id: str
    upload_name: str
    lobby_id: str | None
    device_id: str | None
    speaker_slot_id: str | None
    mic_slot_id: str | None
    signal_id: str | None
    sample_rate_hz: int | None
    duration_s: float | None
    size_bytes: int | None
    recorded_at: datetime | None
    meta: dict[str, Any]


class MeasurementFilters(CommonFilters):
    job_id: Key | None = None
    upload_name: Key | None = None
    lobby_id: Key | None = None
    device_id: Key | None = None


# analysis outputs


class AnalysisOutputCreate(Body):
    """Names its measurement by ``measurement_id`` or by ``job_id`` + ``upload_name`` (either is enough)."""

    measurement_id: RecordId | None = None
    job_id: Key | None = None
    upload_name: Key | None = None
    analysis_run: Key
    status: ShortText = "ok"
    error: LongText | None = None
    speaker_slot_id: ShortText | None = None
    mic_slot_id: ShortText | None = None
    metrics: JsonObject = {}
    quality: JsonObject = {}

    @model_validator(mode="after")
    def _names_a_measurement(self) -> AnalysisOutputCreate:
        if self.measurement_id is None and (self.job_id is None or self.upload_name is None):
            raise ValueError("give measurement_id, or job_id and upload_name")
        if (self.job_id is None) != (self.upload_name is None):
            raise ValueError("job_id and upload_name go together")
        return self


class AnalysisOutputUpdate(Patch):
    not_null = frozenset({"analysis_run", "status", "metrics", "quality"})
    analysis_run: Key | None = None
    status: ShortText | None = None
    error: LongText | None = None
    speaker_slot_id: ShortText | None = None
    mic_slot_id: ShortText | None = None
    metrics: JsonObject | None = None
    quality: JsonObject | None = None


class AnalysisOutputRead(Record):
    measurement_id: str
    job_id: str
    upload_name: str
    analysis_run: str
    status: str
    error: str | None
    speaker_slot_id: str | None
    mic_slot_id: str | None
    metrics: dict[str, Any]
    quality: dict[str, Any]


class AnalysisOutputFilters(CommonFilters):
    measurement_id: RecordId | None = None
    job_id: Key | None = None
    upload_name: Key | None = None
    analysis_run: Key | None = None
    status: ShortText | None = None


# simulation jobs


class SimulationJobCreate(Body):
    id: ClientId | None = None
    status: ShortText = "pending"
    method: ShortText | None = None
    device_id: Key | None = None
    lobby_id: Key | None = None
    error: LongText | None = None
    completed_at: UtcDatetime | None = None
    request: JsonObject = {}
    summary: JsonObject = {}


class SimulationJobUpdate(Patch):
    not_null = frozenset({"status", "request", "summary"})
    status: ShortText | None = None
    method: ShortText | None = None
    device_id: Key | None = None
    lobby_id: Key | None = None
    error: LongText | None = None
    completed_at: UtcDatetime | None = None
    request: JsonObject | None = None
    summary: JsonObject | None = None


class SimulationJobRead(Record):
    status: str
    method: str | None
    device_id: str | None
    lobby_id: str | None
    error: str | None
    completed_at: datetime | None
    request: dict[str, Any]
    summary: dict[str, Any]


class SimulationJobFilters(CommonFilters):
    device_id: Key | None = None
    lobby_id: Key | None = None
    status: ShortText | None = None


# simulation results


class SimulationResultCreate(Body):
    id: ClientId | None = None
    job_id: ClientId
    source_id: ShortText | None = None
    microphone_id: ShortText | None = None
    metrics: JsonObject = {}
    payload: JsonObject = {}


class SimulationResultUpdate(Patch):
    not_null = frozenset({"job_id", "metrics", "payload"})
    job_id: ClientId | None = None
    source_id: ShortText | None = None
    microphone_id: ShortText | None = None
    metrics: JsonObject | None = None
    payload: JsonObject | None = None


class SimulationResultRead(Record):
    job_id: str
    source_id: str | None
    microphone_id: str | None
    metrics: dict[str, Any]
    payload: dict[str, Any]


class SimulationResultFilters(CommonFilters):
    job_id: RecordId | None = None
    source_id: ShortText | None = None
    microphone_id: ShortText | None = None
