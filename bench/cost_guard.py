"""The simulation cost guard's estimate next to the real cost, over a grid of rooms, orders, methods and rates.

    .venv/bin/python bench/cost_guard.py [--quick] [--case-timeout-s 600]

Each case is planned as the service plans it (``make_plan``: the estimate, in seconds of one core) and
then run as a worker runs it (``run_plan``, after ``warm_up`` as in the service), in a child process whose
CPU time is the "actual" figure (CPU time, not wall time, so a loaded machine changes it little). ``ratio`` =
actual / estimate; the guard's target is 0.5-2. A case that outlives ``--case-timeout-s`` shows as ``>timeout``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from typing import Any

from sonalyze_simulation.planning import Limits, make_plan
from sonalyze_simulation.schemas import SimulationRequest

UNLIMITED = Limits(max_pairs=64, cost_budget_s=1e9)
SERVICE = Limits(max_pairs=32, cost_budget_s=20.0)
"""The service's default limits: the hybrid without scattering takes image sources as high as half of this
budget allows (`sonalyze_simulation.planning`), so its cases are planned as the service plans them."""
SIZES_M = (3.0, 10.0, 30.0, 100.0, 200.0)
QUICK_SIZES_M = (3.0, 30.0, 200.0)
ISM_ORDERS = (0, 3, 10, 30, 60, 100)
QUICK_ISM_ORDERS = (0, 10, 40, 80)
RATES_HZ = (16000, 48000)


def room_of(size_m: float) -> tuple[float, float, float]:
    """A hall ``size_m`` long: 0.8 of that wide, height a fifth of the length (2.5-50 m)."""
    return (size_m, round(0.8 * size_m, 2), round(min(50.0, max(2.5, size_m / 5)), 2))


def request_for(
    size_m: float, method: str, max_order: int | None, rate_hz: int, n_rays: int | None, scattering: float = 0.1
) -> dict[str, Any]:
    x, y, z = room_of(size_m)
    body: dict[str, Any] = {
        "room": {"type": "shoebox", "dimensions_m": [x, y, z],
                 "default_material": {"absorption": 0.15, "scattering": scattering}},
        "sources": [{"id": "s", "position_m": [0.3 * x, 0.4 * y, min(1.5, z / 2)]}],
        "microphones": [{"id": "m", "position_m": [0.7 * x, 0.6 * y, min(1.2, z / 2)]}],
        "method": method,
        "sample_rate_hz": rate_hz,
    }  # fmt: skip
    if max_order is not None:
        body["max_order"] = max_order
    if n_rays is not None:
        body["n_rays"] = n_rays
    return body


def grid(quick: bool) -> list[tuple[dict[str, Any], Limits]]:
    cases = []
    for size_m in QUICK_SIZES_M if quick else SIZES_M:
        for rate_hz in RATES_HZ:
            for order in QUICK_ISM_ORDERS if quick else ISM_ORDERS:
                cases.append((request_for(size_m, "ism", order, rate_hz, None), UNLIMITED))
            cases.append((request_for(size_m, "hybrid", None, rate_hz, None), UNLIMITED))
            cases.append((request_for(size_m, "hybrid", None, rate_hz, None, scattering=0.0), SERVICE))
            cases.append((request_for(size_m, "ray_tracing", None, rate_hz, 2000), UNLIMITED))
            if not quick:
                cases.append((request_for(size_m, "ray_tracing", None, rate_hz, 20000), UNLIMITED))
    return cases


def _child(body: dict[str, Any], limits: Limits, queue: Any) -> None:
    from sonalyze_simulation.worker import run_plan, warm_up

    plan = make_plan(SimulationRequest.model_validate(body), limits).plan
    warm_up()  # the engine's import (~0.12 s of CPU), which the service's workers pay when they start
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    run_plan(plan)
    after = resource.getrusage(resource.RUSAGE_SELF)
    queue.put((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, time.perf_counter() - started))


def measure(body: dict[str, Any], limits: Limits, timeout_s: float) -> tuple[float, float] | None:
    """(cpu_s, wall_s) of one worker run, or None when it outlived ``timeout_s``."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(body, limits, queue))
    process.start()
    process.join(timeout_s + 30)  # the child also imports the planning and the engine (not counted)
    if process.is_alive():
        process.kill()
        process.join()
        return None
    return queue.get(timeout=5) if not queue.empty() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller grid (3 sizes, 4 orders)")
    parser.add_argument("--case-timeout-s", type=float, default=600.0)  # wall time: a loaded machine is slow
    args = parser.parse_args()
    print(f"{'room_m':<18}{'method':<12}{'order':>6}{'rays':>7}{'rate':>7}{'est_s':>9}{'cpu_s':>9}{'wall_s':>9}"
          f"{'ratio':>7}  main stage")  # fmt: skip
    ratios = []
    for body, limits in grid(args.quick):
        planned = make_plan(SimulationRequest.model_validate(body), limits)
        settings = planned.plan
        estimate_s = planned.cost.total_s
        measured = measure(body, limits, args.case_timeout_s)
        room = "x".join(f"{d:g}" for d in body["room"]["dimensions_m"])
        if body["method"] == "hybrid":
            room += f" s={body['room']['default_material']['scattering']:g}"
        order = "-" if settings.max_order is None else str(settings.max_order)
        rays = settings.ray_tracing.n_rays if settings.ray_tracing else "-"
        head = f"{room:<18}{body['method']:<12}{order:>6}{rays!s:>7}{body['sample_rate_hz']:>7}{estimate_s:>9.2f}"
        if measured is None:
            print(f"{head}{'>timeout':>9}{'':>9}{'':>7}  {planned.cost.largest()}", flush=True)
            ratios.append(float("inf"))
            continue
        cpu_s, wall_s = measured
        ratio = cpu_s / estimate_s
        ratios.append(ratio)
        flag = "" if 0.5 <= ratio <= 2.0 else "  <-- outside 0.5-2"
        print(f"{head}{cpu_s:>9.2f}{wall_s:>9.2f}{ratio:>7.2f}  {planned.cost.largest()}{flag}", flush=True)
    inside = sum(0.5 <= r <= 2.0 for r in ratios)
    print(
        f"\n{inside} of {len(ratios)} cases within 2x; worst under-estimate x{max(ratios):.2f}, "
        f"worst over-estimate x{1 / min(ratios):.2f}"
    )


if __name__ == "__main__":
    main()
