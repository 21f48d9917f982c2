"""Time per simulation request for a 5 x 4 x 2.5 m room, by method and order, next to pyroomacoustics alone.

    .venv/bin/python bench/simulation.py [--repeat 5] [--sample-rate 48000]

"request" is ``POST /simulate`` through the app (in-process ASGI client, the real worker pool): planning,
the hand-over to a worker, the simulation, the shared metrics for the pair, the response. "pra" is
pyroomacoustics called directly with the same room, materials, air absorption, rays and sample rate.
``ratio`` = request / pra: what the service adds (mostly the metrics). "est" is the cost guard's
estimate for the same request, to keep its per-unit constants honest. Medians of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import httpx
import numpy as np
import pyroomacoustics as pra

from sonalyze_simulation.main import create_app
from sonalyze_simulation.settings import Settings

ROOM_M = (5.0, 4.0, 2.5)
ABSORPTION = 0.2
SCATTERING = 0.1
SOURCE_M = (2.5, 0.5, 1.2)
MIC_M = (2.5, 3.5, 1.2)
CENTERS_HZ = [125, 250, 500, 1000, 2000, 4000, 8000, 16000, 32000]
AIR_PER_M = [1.0e-4, 3.0e-4, 6.0e-4, 1.0e-3, 1.9e-3, 5.8e-3, 20.3e-3, 20.3e-3, 20.3e-3]

CASES: list[tuple[str, int | None]] = [
    ("ism", None),
    ("ism", 3),
    ("ism", 10),
    ("ism", 20),
    ("ism", 40),
    ("hybrid", None),
    ("hybrid", 1),
    ("hybrid", 6),
    ("ray_tracing", None),
]


def request_body(method: str, max_order: int | None, sample_rate_hz: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "room": {
            "type": "shoebox",
            "dimensions_m": list(ROOM_M),
            "default_material": {"absorption": ABSORPTION, "scattering": SCATTERING},
        },
        "sources": [{"id": "s1", "position_m": list(SOURCE_M)}],
        "microphones": [{"id": "m1", "position_m": list(MIC_M)}],
        "method": method,
        "sample_rate_hz": sample_rate_hz,
    }
    if max_order is not None:
        body["max_order"] = max_order
    return body


def pra_direct(method: str, max_order: int, n_rays: int | None, time_thres_s: float, sample_rate_hz: int) -> float:
    """The same simulation with pyroomacoustics only; returns seconds."""
    started = time.perf_counter()
    material = pra.Material(
        energy_absorption={"coeffs": [ABSORPTION] * 9, "center_freqs": CENTERS_HZ},
        scattering={"coeffs": [SCATTERING] * 9, "center_freqs": CENTERS_HZ},
    )
    room = pra.ShoeBox(
        list(ROOM_M), fs=sample_rate_hz, materials=material, max_order=-1 if method == "ray_tracing" else max_order
    )
    room.set_air_absorption(coefficients=AIR_PER_M, center_freqs=CENTERS_HZ)
    if method != "ism":
        room.set_ray_tracing(n_rays=n_rays, receiver_radius=0.5, energy_thres=1e-7, time_thres=time_thres_s)
    room.add_source(list(SOURCE_M))
    room.add_microphone(list(MIC_M))
    room.compute_rir()
    assert np.all(np.isfinite(room.rir[0][0]))
    return time.perf_counter() - started


async def main(repeat: int, sample_rate_hz: int) -> None:
    settings = Settings(simulation_pool_size=1, log_level="WARNING")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=300) as client:
            # the first request starts the worker and imports the engine: not counted
            await client.post("/simulate", json=request_body("ism", 2, sample_rate_hz))
            print(
                f"room {ROOM_M} m, absorption {ABSORPTION}, scattering {SCATTERING}, {sample_rate_hz} Hz, "
                f"air absorption on, one pair; medians of {repeat} runs\n"
            )
            header = f"{'method':<12}{'order':>6}{'rays':>7}{'request_s':>11}{'simulate_s':>12}{'metrics_s':>11}"
            print(header + f"{'pra_s':>9}{'ratio':>7}{'est_s':>8}{'ir_s':>7}{'rt60_s':>8}")
            for method, order in CASES:
                body = request_body(method, order, sample_rate_hz)
                totals, simulate_s, metrics_s = [], [], []
                answer: dict[str, Any] = {}
                for _ in range(repeat):
                    started = time.perf_counter()
                    response = await client.post("/simulate", json=body)
                    totals.append(time.perf_counter() - started)
                    response.raise_for_status()
                    answer = response.json()
                    simulate_s.append(answer["timings"]["simulate_s"])
                    metrics_s.append(answer["timings"]["metrics_s"])
                used = answer["settings"]
                eyring_s = answer["room"]["eyring_rt60_s"]["1000"]
                time_thres_s = min(10.0, max(0.5, 2.0 * max(answer["room"]["sabine_rt60_s"].values())))
                direct = [
                    pra_direct(method, used["max_order"] or 0, used["n_rays"], time_thres_s, sample_rate_hz)
                    for _ in range(repeat)
                ]
                request_med = statistics.median(totals)
                pra_med = statistics.median(direct)
                rt60 = answer["results"][0]["broadband"]["rt60_s"]
                print(
                    f"{method:<12}{used['max_order'] if used['max_order'] is not None else '-':>6}"
                    f"{used['n_rays'] or '-':>7}{request_med:>11.3f}{statistics.median(simulate_s):>12.3f}"
                    f"{statistics.median(metrics_s):>11.3f}{pra_med:>9.3f}{request_med / pra_med:>7.1f}"
                    f"{used['estimated_cost_s']:>8.2f}{answer['results'][0]['ir_length_s']:>7.2f}"
                    f"{rt60 if rt60 is None else round(rt60, 3)!s:>8}"
                )
            print(f"\nEyring RT60 at 1 kHz: {eyring_s:.3f} s. Targets: default ISM request < 1 s, hybrid < 5 s.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sample-rate", type=int, default=48000)
    args = parser.parse_args()
    asyncio.run(main(args.repeat, args.sample_rate))
