"""Validation grid of the simulator: hybrid and ray tracing against Eyring and high-order image sources,
and a rectangle entered as a polygon against the same shoebox, for every method.

    .venv/bin/python bench/simulation_grid.py            # 3 rooms x 4 absorptions x 3 scatterings (~5 min)
    .venv/bin/python bench/simulation_grid.py --quick    # the 8 x 6 x 3 m room only

Columns (worst signed error over the 500 Hz-2 kHz bands; "null" = a value was null):
T30/Ey %  T30 against Eyring (issue 15 target: within 10 % where scattering >= 0.3);
EDT/ISM % and C50/C80 dB against image sources of order 60 (target: 5 %, 1 dB); "poly" columns: the
same room as a polygon minus the shoebox, same method and seed (target: 2 %, 0.5 dB).
Cells that miss a target are marked with "*". See `sonalyze_simulation.validation` for the definitions.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

from sonalyze_simulation import validation as v

ABSORPTIONS = (0.05, 0.15, 0.3, 0.5)
SCATTERINGS = (0.0, 0.3, 0.6)
METHODS = ("hybrid", "ray_tracing")


def mark(value: float | None, limit: float | None) -> str:
    text = v.fmt(value)
    if limit is not None and (value is None or abs(value) > limit):
        return text + "*"
    return text + " "


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the 8 x 6 x 3 m room")
    args = parser.parse_args()
    rooms = [r for r in v.ROOMS if r.name == "8x6x3"] if args.quick else list(v.ROOMS)
    started = time.perf_counter()
    print("1. hybrid and ray tracing against Eyring (T30) and image sources of order 60 (EDT, C50, C80);")
    print("   polygon - shoebox for the same method. Worst signed error over 500 Hz-2 kHz; * = misses the target")
    header = (
        f"{'room':8} {'alpha':>5} {'scat':>4} {'method':11} {'Eyring s':>8} {'T30/Ey %':>9} {'EDT/ISM %':>9} "
        f"{'C50 dB':>8} {'C80 dB':>8} | {'poly T30%':>9} {'EDT%':>8} {'C50dB':>8} {'C80dB':>8}"
    )
    print(header)
    counts = {"cells": 0, "hits": 0}
    for room in rooms:
        for alpha in ABSORPTIONS:
            ism = v.reference(room, alpha)
            for scattering in SCATTERINGS:
                for method in METHODS:
                    shoebox, eyring = v.run(v.request(room, method, alpha, scattering))
                    polygon, _ = v.run(v.request(room, method, alpha, scattering, polygon=True))
                    cell = v.compare(shoebox, ism, eyring)
                    poly = v.compare_polygon(polygon, shoebox)
                    t30_limit = 10.0 if scattering >= 0.3 else None
                    early = method == "hybrid"
                    row = [
                        mark(cell.t30_vs_eyring_pct, t30_limit),
                        mark(cell.edt_vs_ism_pct, 5.0 if early else None),
                        mark(cell.c50_vs_ism_db, 1.0 if early else None),
                        mark(cell.c80_vs_ism_db, 1.0 if early else None),
                    ]
                    prow = [
                        mark(poly.t30_pct, 2.0),
                        mark(poly.edt_pct, 2.0),
                        mark(poly.c50_db, 0.5),
                        mark(poly.c80_db, 0.5),
                    ]
                    counts["cells"] += 1
                    counts["hits"] += sum("*" not in x for x in row + prow)
                    eyr = (eyring[2] + eyring[3] + eyring[4]) / 3
                    print(
                        f"{room.name:8} {alpha:5.2f} {scattering:4.1f} {method:11} {eyr:8.3f} "
                        + " ".join(f"{x:>9}" for x in row)
                        + " | "
                        + " ".join(f"{x:>8}" for x in prow),
                        flush=True,
                    )
            ism_poly, _ = v.run(v.request(room, "ism", alpha, 0.0, polygon=True, max_order=10))
            ism_box, _ = v.run(v.request(room, "ism", alpha, 0.0, max_order=10))
            p = v.compare_polygon(ism_poly, ism_box)
            print(
                f"{room.name:8} {alpha:5.2f} {'-':>4} {'ism (10)':11} {'':8} {'':>9} {'':>9} {'':>8} {'':>8} | "
                + " ".join(
                    f"{x:>8}"
                    for x in (mark(p.t30_pct, 2.0), mark(p.edt_pct, 2.0), mark(p.c50_db, 0.5), mark(p.c80_db, 0.5))
                )
            )
    print(f"\n{counts['cells']} cells, {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
