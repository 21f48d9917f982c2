"""HTTP endpoints: ``POST /simulate``, the IR as WAV, the material database and the reference profiles."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from sonalyze_protocol.disconnect import stop_when_client_leaves
from sonalyze_protocol.errors import NotFound
from sonalyze_simulation.audio import WavFormat, encode_wav
from sonalyze_simulation.bands import BAND_CENTERS_HZ
from sonalyze_simulation.materials import list_materials
from sonalyze_simulation.reference_profiles import PROFILES, list_profiles
from sonalyze_simulation.schemas import SimulationRequest, SimulationResponse
from sonalyze_simulation.service import SimulationService

router = APIRouter()

FORWARDED_PREFIX_HEADER = "x-forwarded-prefix"


def get_service(request: Request) -> SimulationService:
    return request.app.state.service


ServiceDep = Annotated[SimulationService, Depends(get_service)]


@router.post("/simulate", response_model=SimulationResponse, tags=["simulation"])
async def simulate(body: SimulationRequest, request: Request, service: ServiceDep) -> SimulationResponse:
    """Simulate the room and return the acoustic parameters of every source-microphone pair.

    A client that disconnects first stops its simulation (its worker process is ended and replaced)."""
    prefix = request.headers.get(FORWARDED_PREFIX_HEADER, "").rstrip("/")
    async with stop_when_client_leaves(request):
        return await service.run(body, ir_url_prefix=f"{prefix}/simulate")


@router.get(
    "/simulate/{simulation_id}/ir",
    response_class=Response,
    responses={200: {"content": {"audio/wav": {}}, "description": "mono WAV at the simulation's sample rate"}},
    tags=["simulation"],
)
async def impulse_response(
    simulation_id: str,
    service: ServiceDep,
    source_id: str | None = None,
    microphone_id: str | None = None,
    wav_format: Annotated[WavFormat, Query(alias="format")] = "float32",
) -> Response:
    """One pair's simulated impulse response as a WAV file (float32 as simulated, or pcm16 peak-normalised)."""
    stored = service.impulse_response(simulation_id, source_id, microphone_id)
    body = encode_wav(stored.samples, stored.sample_rate_hz, wav_format)
    filename = f"ir_{simulation_id[:8]}_{source_id or 'source'}_{microphone_id or 'mic'}.wav"
    return Response(
        body,
        media_type="audio/wav",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/materials", tags=["catalogue"])
async def materials(category: str | None = None) -> dict[str, Any]:
    """The material database: absorption and scattering per octave band, with sources."""
    items = list_materials(category)
    return {"bands_hz": list(BAND_CENTERS_HZ), "count": len(items), "materials": items}


@router.get("/reference-profiles", tags=["catalogue"])
async def reference_profiles() -> dict[str, Any]:
    """Standard rooms with target RT60 ranges; each ``request`` can be posted to /simulate as is."""
    items = list_profiles()
    return {"count": len(items), "profiles": items}


@router.get("/reference-profiles/{profile_id}", tags=["catalogue"])
async def reference_profile(profile_id: str) -> dict[str, Any]:
    """One reference profile."""
    profile = PROFILES.get(profile_id)
    if profile is None:
        raise NotFound(f"no reference profile '{profile_id}'; profiles: {', '.join(PROFILES)}")
    return profile.as_dict()
