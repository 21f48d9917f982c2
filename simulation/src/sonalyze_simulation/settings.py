"""Settings of the simulation service, read from the environment."""

from __future__ import annotations

from pydantic import Field

from sonalyze_protocol.settings import ServiceSettings


class Settings(ServiceSettings):
    """Pool, queue and cost limits; the defaults keep one request well inside the gateway's 30 s timeout."""

    gateway_url: str = "http://localhost:8005"  # the gateway's internal listener
    storage_url: str = "http://localhost:8004"

    simulation_pool_size: int = Field(default=2, ge=1, le=64)
    """Worker processes; at most this many simulations run at once."""
    simulation_queue_wait_s: float = Field(default=5.0, ge=0.0, le=600.0)
    """How long a request waits for a free worker before it gets 503."""
    simulation_max_queued: int = Field(default=16, ge=0, le=10_000)
    """Requests allowed to wait at once; beyond that the answer is 503 at once."""
    simulation_deadline_s: float = Field(default=28.0, gt=0.0, le=3600.0)
    """A simulation still running this long after its worker took it is stopped (504 ``timeout``): by then
    the gateway (30 s) has answered its client, so the worker is freed instead of computing for no one."""
    simulation_cost_budget_s: float = Field(default=20.0, gt=0.0, le=3600.0)
    """Largest estimated compute time of one request (seconds on one core of the reference machine)."""
    simulation_max_pairs: int = Field(default=32, ge=1, le=1024)
    """Largest number of source x microphone pairs in one request."""
    simulation_ir_cache_mb: float = Field(default=64.0, ge=0.0, le=4096.0)
    """Memory kept for impulse responses served by ``GET /simulate/{id}/ir`` (oldest evicted first)."""
    simulation_warm_workers: bool = True
    """Start the worker processes (and import pyroomacoustics) at startup rather than on the first request."""
