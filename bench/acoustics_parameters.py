"""Accuracy table and timing of sonalyze_acoustics.room_parameters on synthetic impulse responses.

Run: .venv/bin/python bench/acoustics_parameters.py [--seeds N]
Prints, per noise level (INR 60/40/20 dB) and band, the worst error over rooms x seeds (relative for
EDT/T20/T30, dB for C50/C80/DRR) against the clean-component truth, how many values were null, the STI error,
and the time per analysis.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sonalyze_acoustics.parameters import OCTAVE_BANDS_HZ, room_parameters
from sonalyze_acoustics.synthetic import synthetic_ir

ROOMS = {
    "medium": ((1.2, 1.0, 0.9, 0.8, 0.8, 0.7, 0.6), -2.0),
    "dry": ((0.6, 0.5, 0.4, 0.35, 0.3, 0.3, 0.3), 0.0),
    "live": ((3.0, 2.8, 2.5, 2.2, 2.0, 1.6, 1.2), -6.0),
    "flat_close": ((0.8,) * 7, 3.0),
}
FIELDS = ("edt_s", "t20_s", "t30_s", "c50_db", "c80_db", "drr_db")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    keys = ["broadband", *(str(band) for band in OCTAVE_BANDS_HZ)]
    for inr_db in (60.0, 40.0, 20.0):
        worst = {(k, f): 0.0 for k in keys for f in FIELDS}
        nulls = {(k, f): 0 for k in keys for f in FIELDS}
        sti_errors, times_s = [], []
        n_cases = 0
        for seed in range(args.seeds):
            for t60_s, drr_db in ROOMS.values():
                case = synthetic_ir(t60_s, drr_db, 48000.0, np.random.default_rng(seed), inr_db=inr_db)
                start = time.perf_counter()
                parameters = room_parameters(case.ir, case.sample_rate_hz)
                times_s.append((time.perf_counter() - start, case.ir.size / case.sample_rate_hz))
                n_cases += 1
                if parameters.sti is not None:
                    sti_errors.append(parameters.sti - case.sti)
                for key in keys:
                    band = parameters.broadband if key == "broadband" else parameters.bands[int(key)]
                    for name in FIELDS:
                        value = getattr(band, name)
                        if value is None:
                            nulls[(key, name)] += 1
                            continue
                        truth = case.truth[key][name]
                        error = 100 * (value / truth - 1) if name.endswith("_s") else value - truth
                        if abs(error) > abs(worst[(key, name)]):
                            worst[(key, name)] = error
        print(f"\nINR {inr_db:.0f} dB ({n_cases} cases): worst error (null count); times in %, levels in dB")
        print(f"{'band':>9} " + " ".join(f"{name:>14}" for name in FIELDS))
        for key in keys:
            cells = [f"{worst[(key, f)]:+7.2f} ({nulls[(key, f)]:2d})" for f in FIELDS]
            print(f"{key:>9} " + " ".join(f"{cell:>14}" for cell in cells))
        if sti_errors:
            print(f"STI worst error {max(sti_errors, key=abs):+.4f} over {len(sti_errors)} cases")
        per_s = [elapsed / duration for elapsed, duration in times_s]
        print(f"time per analysis: median {1000 * np.median([t for t, _ in times_s]):.0f} ms "
              f"(max {1000 * max(t for t, _ in times_s):.0f} ms), {1000 * np.median(per_s):.0f} ms per second of IR")


if __name__ == "__main__":
    main()
