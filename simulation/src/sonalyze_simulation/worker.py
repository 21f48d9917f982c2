"""What the process pool runs. Kept free of heavy imports so the service process stays light."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sonalyze_simulation.planning import SimulationPlan
    from sonalyze_simulation.simulate import SimulationOutput


def warm_up() -> bool:
    """Import the engine and the metrics once, so the first request does not pay for it."""
    import sonalyze_simulation.simulate  # noqa: F401

    return True


def run_plan(plan: SimulationPlan) -> SimulationOutput:
    from sonalyze_simulation.simulate import simulate

    return simulate(plan)
