"""Accuracy table and timing of sonalyze_acoustics.room_parameters on synthetic impulse responses.

Run: .venv/bin/python bench/acoustics_parameters.py [--seeds N] [--pyrato] [--excitation noise]
Prints, per noise level (INR 60/40/20 dB) and band, the worst error over rooms x seeds (relative for
EDT/T20/T30, dB for C50/C80/DRR) against the clean-component truth, how many values were null, the STI error,
and the time per analysis. With --pyrato, the same cases through pyfar/pyrato (order-14 pyfar octave filters,
forward; pyrato's Chu + Lundeby curve; its STI without level corrections) side by side: worst T30, EDT and C80
error per band and the STI error.
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
    parser.add_argument("--pyrato", action="store_true")
    parser.add_argument("--excitation", choices=("multitone", "noise"), default="multitone")
    args = parser.parse_args()
    keys = ["broadband", *(str(band) for band in OCTAVE_BANDS_HZ)]
    for inr_db in (60.0, 40.0, 20.0):
        worst = {(k, f): 0.0 for k in keys for f in FIELDS}
        nulls = {(k, f): 0 for k in keys for f in FIELDS}
        sti_errors, times_s = [], []
        reference = {(k, f): 0.0 for k in keys[1:] for f in ("t30_s", "edt_s", "c80_db")}
        reference_sti: list[float] = []
        n_cases = 0
        for seed in range(args.seeds):
            for t60_s, drr_db in ROOMS.values():
                case = synthetic_ir(
                    t60_s, drr_db, 48000.0, np.random.default_rng(seed), inr_db=inr_db, excitation=args.excitation
                )
                start = time.perf_counter()
                parameters = room_parameters(case.ir, case.sample_rate_hz)
                times_s.append((time.perf_counter() - start, case.ir.size / case.sample_rate_hz))
                n_cases += 1
                if parameters.sti is not None:
                    sti_errors.append(parameters.sti - case.sti)
                if args.pyrato:
                    _pyrato(case, reference, reference_sti)
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
        if args.pyrato:
            print("pyrato on the same cases, worst error (T30 %, EDT %, C80 dB):")
            for key in keys[1:]:
                print(f"{key:>9} " + " ".join(f"{reference[(key, f)]:+14.2f}" for f in ("t30_s", "edt_s", "c80_db")))
            if reference_sti:
                worst_sti = max(reference_sti, key=abs)
                print(f"pyrato STI worst error {worst_sti:+.4f} (no masking/threshold; ours with them)")
        per_s = [elapsed / duration for elapsed, duration in times_s]
        print(
            f"time per analysis: median {1000 * np.median([t for t, _ in times_s]):.0f} ms "
            f"(max {1000 * max(t for t, _ in times_s):.0f} ms), {1000 * np.median(per_s):.0f} ms per second of IR"
        )


def _pyrato(case, worst: dict[tuple[str, str], float], sti_errors: list[float]) -> None:
    import warnings

    import pyfar as pf
    import pyrato

    signal = pf.Signal(case.ir, case.sample_rate_hz)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            octaves = pf.dsp.filter.fractional_octave_bands(signal, 1, frequency_range=(125, 8000))
            edc = pyrato.edc.energy_decay_curve_chu_lundeby(octaves, normalize=True, channel_independent=True)
            values = {
                "t30_s": np.squeeze(pyrato.parameters.reverberation_time_linear_regression(edc, "T30")),
                "edt_s": np.squeeze(pyrato.parameters.reverberation_time_linear_regression(edc, "EDT")),
                "c80_db": np.squeeze(pyrato.parameters.clarity(edc, 80)),
            }
            sti = float(np.squeeze(pyrato.parameters.speech_transmission_index_indirect(signal)))
            sti_errors.append(sti - case.sti)
        except Exception:
            return
    for row, band in enumerate(OCTAVE_BANDS_HZ):
        for name, array in values.items():
            value = float(array[row])
            if not np.isfinite(value):
                continue
            truth = case.truth[str(band)][name]
            error = 100 * (value / truth - 1) if name.endswith("_s") else value - truth
            if abs(error) > abs(worst[(str(band), name)]):
                worst[(str(band), name)] = error


if __name__ == "__main__":
    main()
