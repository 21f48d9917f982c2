"""WebSocket events forwarded by the gateway (``simulation.*``), one table, same use case as HTTP."""

from __future__ import annotations

from typing import Any

from sonalyze_protocol.handlers import EmptyData, Handler, HandlerTable, RequestContext
from sonalyze_simulation.materials import list_materials
from sonalyze_simulation.reference_profiles import list_profiles
from sonalyze_simulation.schemas import SimulationRequest, SimulationResponse


async def run_simulation(context: RequestContext, data: SimulationRequest) -> SimulationResponse:
    # WebSocket clients reach the IR through the gateway's HTTP proxy
    return await context.state.service.run(data, ir_url_prefix="/v1/simulation/simulate")


async def get_materials(context: RequestContext, data: EmptyData) -> dict[str, Any]:
    items = list_materials()
    return {"count": len(items), "materials": items}


async def get_reference_profiles(context: RequestContext, data: EmptyData) -> dict[str, Any]:
    items = list_profiles()
    return {"count": len(items), "profiles": items}


HANDLERS: HandlerTable[RequestContext] = HandlerTable(
    {
        "simulation.run": Handler(SimulationRequest, run_simulation),
        "simulation.materials": Handler(EmptyData, get_materials),
        "simulation.reference_profiles": Handler(EmptyData, get_reference_profiles),
    }
)
