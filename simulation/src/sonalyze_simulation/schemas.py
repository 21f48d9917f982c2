"""Request and response models of ``POST /simulate`` and the catalogue endpoints.

A request passes `payload_adapter.adapt_request` first (the app's ``map.room`` shape, aliases), then these
models check types and ranges. Checks that need the whole room (positions inside it, a simple floor plan,
material names) live in `planning`, which raises `BadRequest` with the offending field named.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    field_validator,
    model_validator,
)

from sonalyze_simulation.bands import BAND_KEYS, N_BANDS
from sonalyze_simulation.payload_adapter import adapt_request

Method = Literal["ism", "ray_tracing", "hybrid"]
CoefficientSpec = FiniteFloat | list[FiniteFloat] | dict[str, FiniteFloat]

DEFAULT_ABSORPTION: Final = 0.15
DEFAULT_SCATTERING: Final = 0.3
"""Scattering of a surface given by its absorption alone. A simple model of a furnished room leaves out the
furniture, fittings and relief that scatter in the real room; smooth-surface values (0.05-0.1) make it a
specular box whose decay is up to 50 % longer than Eyring's (8 x 6 x 3 m, absorption 0.3: +33 % at 0.1).
0.3 is the mid-frequency value ODEON's guidance gives surfaces of rooms with furniture and irregular
surfaces (Christensen & Rindel, "A new scattering method that combines roughness and diffraction effects",
Forum Acusticum 2005; Rindel, "Room acoustic prediction modelling", 2010) and the value at which the
simulated T30 of such boxes comes within 10 % of Eyring (bench/simulation_grid.py)."""
DEFAULT_SAMPLE_RATE_HZ: Final = 48000
MIN_SAMPLE_RATE_HZ: Final = 8000
MAX_SAMPLE_RATE_HZ: Final = 96000
MAX_ORDER_LIMIT: Final = 100


def band_coefficients(value: CoefficientSpec, what: str) -> tuple[float, ...]:
    """One coefficient per band of `BAND_KEYS` from a number, a list (6 or 7 values) or a dict keyed by band.

    A list or dict without 8 kHz repeats the 4 kHz value. Raises ``ValueError`` naming the band at fault.
    """
    if isinstance(value, int | float):
        values = [float(value)] * N_BANDS
    elif isinstance(value, list):
        if len(value) not in (N_BANDS - 1, N_BANDS):
            raise ValueError(
                f"{what} as a list needs one value per octave band, 125 Hz to 4 kHz (6) or to 8 kHz (7); "
                f"got {len(value)}"
            )
        values = [float(v) for v in value]
    else:
        unknown = sorted(set(value) - set(BAND_KEYS))
        if unknown:
            raise ValueError(f"{what} has unknown band keys {unknown}; bands are {list(BAND_KEYS)}")
        missing = [k for k in BAND_KEYS[:-1] if k not in value]
        if missing:
            raise ValueError(f"{what} is missing bands {missing} (8000 is optional)")
        values = [float(value[k]) for k in BAND_KEYS if k in value]
    if len(values) == N_BANDS - 1:
        values.append(values[-1])
    for key, v in zip(BAND_KEYS, values, strict=True):
        if not (0.0 <= v <= 1.0) or math.isnan(v):
            raise ValueError(f"{what} at {key} Hz is {v}; coefficients must lie in [0, 1]")
    return tuple(values)


class MaterialSpec(BaseModel):
    """A surface's material: a name from ``GET /materials``, or coefficients (one number or per band)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=100)
    absorption: CoefficientSpec | None = None
    scattering: CoefficientSpec | None = None

    @field_validator("absorption", "scattering")
    @classmethod
    def _check_coefficients(cls, value: CoefficientSpec | None, info: Any) -> CoefficientSpec | None:
        if value is not None:
            band_coefficients(value, info.field_name)
        return value

    @model_validator(mode="after")
    def _name_or_absorption(self) -> MaterialSpec:
        if (self.name is None) == (self.absorption is None):
            raise ValueError("give either 'name' (a material from GET /materials) or 'absorption', not both")
        return self


class SurfaceMaterials(BaseModel):
    """Overrides of the default material: floor, ceiling, and walls by index (wall i runs from vertex i to i+1)."""

    model_config = ConfigDict(extra="forbid")

    floor: MaterialSpec | None = None
    ceiling: MaterialSpec | None = None
    walls: dict[int, MaterialSpec] = Field(default_factory=dict)


def _default_material() -> MaterialSpec:
    return MaterialSpec(absorption=DEFAULT_ABSORPTION)


class ShoeboxRoom(BaseModel):
    """A rectangular room with a corner at the origin: x in [0, width], y in [0, depth], z in [0, height]."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["shoebox"] = "shoebox"
    dimensions_m: tuple[FiniteFloat, FiniteFloat, FiniteFloat]
    default_material: MaterialSpec = Field(default_factory=_default_material)
    surfaces: SurfaceMaterials = Field(default_factory=SurfaceMaterials)


class PolygonRoom(BaseModel):
    """A floor plan (x, y in metres, either winding) extruded to ``height_m``; the floor is at z = 0."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["polygon"] = "polygon"
    vertices: list[tuple[FiniteFloat, FiniteFloat]] = Field(min_length=3, max_length=64)
    height_m: FiniteFloat
    default_material: MaterialSpec = Field(default_factory=_default_material)
    surfaces: SurfaceMaterials = Field(default_factory=SurfaceMaterials)


Room = Annotated[ShoeboxRoom | PolygonRoom, Field(discriminator="type")]


class Placement(BaseModel):
    """A source or microphone: an id unique within its list and a position in room coordinates."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64)
    position_m: tuple[FiniteFloat, FiniteFloat, FiniteFloat]


class SimulationRequest(BaseModel):
    """``POST /simulate`` and the ``simulation.run`` event."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    room: Room
    sources: list[Placement] = Field(min_length=1, max_length=64)
    microphones: list[Placement] = Field(min_length=1, max_length=64)
    method: Method = "hybrid"
    max_order: int | None = Field(default=None, ge=0, le=MAX_ORDER_LIMIT)
    sample_rate_hz: int = Field(
        default=DEFAULT_SAMPLE_RATE_HZ,
        ge=MIN_SAMPLE_RATE_HZ,
        le=MAX_SAMPLE_RATE_HZ,
        validation_alias=AliasChoices("sample_rate_hz", "sample_rate"),
    )
    air_absorption: bool = True
    n_rays: int | None = Field(default=None, ge=100, le=1_000_000)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    plots: bool = False
    """Answer each pair's plot data too (decay curves with fit ranges, impulse and frequency response), as the
    measurement analysis does; off by default, it adds up to ~80 kB per pair."""

    @model_validator(mode="before")
    @classmethod
    def _adapt(cls, data: Any) -> Any:
        return adapt_request(data)

    @field_validator("sources", "microphones")
    @classmethod
    def _unique_ids(cls, value: list[Placement], info: Any) -> list[Placement]:
        seen: set[str] = set()
        for placement in value:
            if placement.id in seen:
                raise ValueError(f"{info.field_name} ids must be unique; '{placement.id}' appears twice")
            seen.add(placement.id)
        return value


# ---- responses -------------------------------------------------------------------------------------------

Metrics = dict[str, float | None]


class SurfaceFacts(BaseModel):
    name: str
    area_m2: float
    material: str
    absorption: dict[str, float]
    scattering: dict[str, float]


class RoomFacts(BaseModel):
    """Geometry and the classical reverberation estimates, per band, for comparison with the simulation."""

    type: Literal["shoebox", "polygon"]
    volume_m3: float
    surface_m2: float
    floor_area_m2: float
    height_m: float
    mean_free_path_m: float
    mean_absorption: dict[str, float]
    air_attenuation_per_m: dict[str, float]
    sabine_rt60_s: dict[str, float]
    eyring_rt60_s: dict[str, float]
    surfaces: list[SurfaceFacts]


class PairResult(BaseModel):
    source_id: str
    microphone_id: str
    distance_m: float
    ir_url: str
    ir_length_s: float
    broadband: Metrics
    bands: dict[str, Metrics]
    null_reasons: dict[str, Any] = Field(default_factory=dict)
    quality: dict[str, Any] = Field(default_factory=dict)
    plots: dict[str, Any] | None = None


class SimulationSettingsUsed(BaseModel):
    method: Method
    max_order: int | None
    sample_rate_hz: int
    air_absorption: bool
    n_rays: int | None
    receiver_radius_m: float | None
    seed: int
    estimated_cost_s: float
    cost_budget_s: float


class Timings(BaseModel):
    queue_s: float
    simulate_s: float
    metrics_s: float
    total_s: float


class SimulationResponse(BaseModel):
    simulation_id: str
    settings: SimulationSettingsUsed
    room: RoomFacts
    results: list[PairResult]
    elapsed_s: float
    timings: Timings
    notes: list[str] = Field(default_factory=list)
