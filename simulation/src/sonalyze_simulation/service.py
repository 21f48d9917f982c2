"""The simulation use case, shared by ``POST /simulate`` and the ``simulation.run`` event."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sonalyze_protocol.deadline import DeadlineExceeded
from sonalyze_protocol.errors import AppError, BadRequest, InternalError, NotFound, Timeout
from sonalyze_protocol.logs import device_id_var
from sonalyze_protocol.storage_client import StorageRecorder
from sonalyze_simulation.bands import BAND_KEYS
from sonalyze_simulation.ir_store import IrStore, StoredIr
from sonalyze_simulation.planning import Limits, PlannedSimulation, make_plan
from sonalyze_simulation.pool import SimulationPool
from sonalyze_simulation.schemas import (
    PairResult,
    RoomFacts,
    SimulationRequest,
    SimulationResponse,
    SimulationSettingsUsed,
    SurfaceFacts,
    Timings,
)
from sonalyze_simulation.settings import Settings
from sonalyze_simulation.worker import run_plan

if TYPE_CHECKING:
    from sonalyze_simulation.simulate import SimulationOutput

logger = logging.getLogger("sonalyze.simulation")


@dataclass
class SimulationService:
    """What the routes and the event handler need: settings, the worker pool, the IR store."""

    settings: Settings
    pool: SimulationPool
    irs: IrStore
    recorder: StorageRecorder | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SimulationService:
        pool = SimulationPool(
            size=settings.simulation_pool_size,
            queue_wait_s=settings.simulation_queue_wait_s,
            max_queued=settings.simulation_max_queued,
            deadline_s=settings.simulation_deadline_s,
        )
        return cls(settings=settings, pool=pool, irs=IrStore(int(settings.simulation_ir_cache_mb * 1024 * 1024)))

    @property
    def limits(self) -> Limits:
        return Limits(
            max_pairs=self.settings.simulation_max_pairs, cost_budget_s=self.settings.simulation_cost_budget_s
        )

    async def run(self, request: SimulationRequest, *, ir_url_prefix: str = "/simulate") -> SimulationResponse:
        """Plan (may refuse), run in the pool, keep the responses for the IR endpoint, build the answer."""
        started = time.perf_counter()
        planned = make_plan(request, self.limits)
        simulation_id = uuid.uuid4().hex
        self._record_job(simulation_id, request, status="running")
        try:
            result = await self.pool.run(run_plan, planned.plan)
        except DeadlineExceeded:
            message = (f"the simulation ran past its deadline of {self.settings.simulation_deadline_s:g} s "
                       f"(SIMULATION_DEADLINE_S; estimated {planned.cost.total_s:.1f} s) and was stopped")  # fmt: skip
            self._record_job(simulation_id, request, status="failed", error=message)
            raise Timeout(message) from None
        except AppError as exc:
            self._record_job(simulation_id, request, status="failed", error=exc.message)
            raise
        except asyncio.CancelledError:  # the caller left (its worker was stopped) or the service stops
            self._record_job(simulation_id, request, status="failed", error="stopped: the caller left")
            raise
        except Exception as exc:
            logger.exception("simulation failed in its worker")
            self._record_job(simulation_id, request, status="failed", error=f"{type(exc).__name__}: {exc}")
            raise InternalError(f"the simulation failed: {type(exc).__name__}: {exc}") from None
        output: SimulationOutput = result.value
        fs = planned.plan.sample_rate_hz
        self.irs.put(
            simulation_id,
            {(p.source_id, p.microphone_id): StoredIr(fs, p.ir) for p in output.pairs},
        )
        total_s = time.perf_counter() - started
        logger.info(
            "simulated method=%s pairs=%d estimated_s=%.2f simulate_s=%.2f metrics_s=%.2f queue_s=%.2f",
            planned.plan.method,
            len(output.pairs),
            planned.cost.total_s,
            output.simulate_s,
            output.metrics_s,
            result.queue_s,
        )
        response = _response(simulation_id, planned, output, result.queue_s, total_s, self.settings, ir_url_prefix)
        if not request.plots:
            for pair in response.results:
                pair.plots = None
        self._record_results(request, response)
        return response

    def _record_job(
        self, simulation_id: str, request: SimulationRequest, *, status: str, error: str | None = None
    ) -> None:
        """Queue the job's state for the storage service (best effort, never delays the answer)."""
        if self.recorder is None:
            return
        self.recorder.in_background(
            self.recorder.simulation_job(
                simulation_id,
                status=status,
                method=request.method,
                device_id=device_id_var.get(),
                error=error,
                request=request.model_dump(mode="json") if status == "running" else None,
            )
        )

    def _record_results(self, request: SimulationRequest, response: SimulationResponse) -> None:
        recorder = self.recorder
        if recorder is None:
            return

        async def write() -> bool:
            ok = await recorder.simulation_job(
                response.simulation_id,
                status="done",
                method=request.method,
                completed_at=datetime.now(UTC),
                summary={
                    "room": response.room.model_dump(mode="json", exclude={"surfaces"}),
                    "elapsed_s": response.elapsed_s,
                },
            )
            for index, pair in enumerate(response.results):
                ok = (
                    await recorder.simulation_result(
                        f"{response.simulation_id}:{index}",
                        response.simulation_id,
                        source_id=pair.source_id,
                        microphone_id=pair.microphone_id,
                        metrics={"broadband": pair.broadband, "bands": pair.bands},
                        payload={"distance_m": pair.distance_m, "null_reasons": pair.null_reasons},
                    )
                    and ok
                )
            return ok

        recorder.in_background(write())

    def impulse_response(self, simulation_id: str, source_id: str | None, microphone_id: str | None) -> StoredIr:
        """One pair's response; with one source or one microphone its id may be left out."""
        irs = self.irs.get(simulation_id)
        if irs is None:
            raise NotFound(
                f"simulation '{simulation_id}' is unknown or no longer kept; run it again "
                "(the same request and seed give the same response)"
            )
        pairs = list(irs)
        matching = [
            pair
            for pair in pairs
            if (source_id is None or pair[0] == source_id) and (microphone_id is None or pair[1] == microphone_id)
        ]
        if len(matching) == 1:
            return irs[matching[0]]
        listed = ", ".join(f"{s}/{m}" for s, m in pairs)
        if not matching:
            raise NotFound(f"no pair source_id={source_id} microphone_id={microphone_id}; pairs: {listed}")
        raise BadRequest(f"several pairs match; give source_id and microphone_id (pairs: {listed})")


def _per_band(values: Any, digits: int = 4) -> dict[str, float]:
    return {key: round(float(v), digits) for key, v in zip(BAND_KEYS, values, strict=True)}


def _response(
    simulation_id: str,
    planned: PlannedSimulation,
    output: SimulationOutput,
    queue_s: float,
    total_s: float,
    settings: Settings,
    ir_url_prefix: str,
) -> SimulationResponse:
    plan = planned.plan
    geometry = plan.geometry
    room = RoomFacts(
        type=geometry.kind,
        volume_m3=round(geometry.volume_m3, 4),
        surface_m2=round(geometry.surface_m2, 4),
        floor_area_m2=round(geometry.floor_area_m2, 4),
        height_m=geometry.height_m,
        mean_free_path_m=round(planned.mean_free_path_m, 4),
        mean_absorption=_per_band(planned.estimates.mean_absorption),
        air_attenuation_per_m=_per_band(planned.air_attenuation_per_m, 6),
        sabine_rt60_s=_per_band(planned.estimates.sabine_rt60_s),
        eyring_rt60_s=_per_band(planned.estimates.eyring_rt60_s),
        surfaces=[
            SurfaceFacts(
                name=s.name,
                area_m2=round(s.area_m2, 4),
                material=s.material,
                absorption=_per_band(s.absorption),
                scattering=_per_band(s.scattering),
            )
            for s in geometry.surfaces
        ],
    )
    results = [
        PairResult(
            source_id=p.source_id,
            microphone_id=p.microphone_id,
            distance_m=round(p.distance_m, 4),
            ir_url=f"{ir_url_prefix}/{simulation_id}/ir?source_id={p.source_id}&microphone_id={p.microphone_id}",
            ir_length_s=round(p.ir.size / plan.sample_rate_hz, 4),
            broadband=p.parameters["broadband"],
            bands=p.parameters["bands"],
            null_reasons=p.parameters.get("null_reasons", {}),
            quality=p.parameters.get("quality", {}),
            plots=p.parameters.get("plots"),
        )
        for p in output.pairs
    ]
    rt = plan.ray_tracing
    return SimulationResponse(
        simulation_id=simulation_id,
        settings=SimulationSettingsUsed(
            method=plan.method,
            max_order=plan.max_order if plan.method != "ray_tracing" else None,
            sample_rate_hz=plan.sample_rate_hz,
            air_absorption=plan.air_absorption,
            n_rays=rt.n_rays if rt else None,
            receiver_radius_m=rt.receiver_radius_m if rt else None,
            seed=plan.seed,
            estimated_cost_s=round(planned.cost.total_s, 3),
            cost_budget_s=settings.simulation_cost_budget_s,
        ),
        room=room,
        results=results,
        elapsed_s=round(total_s, 4),
        timings=Timings(
            queue_s=round(queue_s, 4),
            simulate_s=round(output.simulate_s, 4),
            metrics_s=round(output.metrics_s, 4),
            total_s=round(total_s, 4),
        ),
        notes=list(planned.notes),
    )
