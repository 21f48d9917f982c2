"""Accuracy and speed of the measurement analysis over synthetic reference cases, next to pyfar/pyrato.

Every case: a designed room (known T60 per band, known DRR; see
``measurement/tests/reference_cases.py``) -> the service's own 48 kHz signal played through it
-> delayed, white noise at a peak-to-noise ratio, clock drift, recorded at 44.1 kHz -> 16-bit WAV file
-> the service's per-recording analysis (the function its process pool runs).

Printed:
1. per case, the worst error over bands 250 Hz-4 kHz and over 125 Hz / 8 kHz for every value
   (times in %, levels in dB, D50 and STI absolute), with the number of nulls;
2. per noise level, the worst error over all cases, ours and pyrato's (pyfar order-14 octave filters,
   Chu+Lundeby EDC, ISO regressions) on the same measured impulse response, and the targets;
3. "clean" rows: the metric code on the designed impulse response itself (no measurement path), which
   separates what the path adds from what the metric definitions give;
4. time per recording (one 10 s 48 kHz recording, and the 44.1 kHz cases), per stage, on one core.

Run: ``.venv/bin/python bench/analysis.py`` (full grid, ~3 min) or ``--quick`` (one case per row type).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import soundfile as sf

from sonalyze_acoustics.parameters import room_parameters
from sonalyze_measurement.analysis.alignment import Reference, measure_impulse_response
from sonalyze_measurement.analysis.audio_generator import render, resolve_params
from sonalyze_measurement.analysis.metrics import AnalysisTask, analyze_recording

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "measurement" / "tests"))  # test support
from reference_cases import ReferenceCase, design_room, simulate_recording

BANDS = ("125", "250", "500", "1000", "2000", "4000", "8000")
MID_BANDS = ("250", "500", "1000", "2000", "4000")
EDGE_BANDS = ("125", "8000")
TIMES = ("edt_s", "t20_s", "t30_s")
CLARITY = ("c50_db", "c80_db")
LEVELS = (*CLARITY, "drr_db")
TARGETS = {"mid_time_pct": 5.0, "mid_level_db": 1.0, "edge_time_pct": 10.0, "edge_level_db": 1.5, "sti": 0.03}


def grid(quick: bool) -> list[ReferenceCase]:
    cases = []
    t60s = (0.35, 1.0, 2.4)
    drrs = (3.0, -6.0)
    pnrs = (60.0, 40.0, 20.0)
    drifts = (0.0, 50.0, -50.0, 200.0, -200.0)
    seed = 0
    for t60 in t60s:
        for drr in drrs:
            for pnr in pnrs:
                for drift in drifts:
                    seed += 1
                    name = f"T{t60:g}/DRR{drr:+g}/{pnr:g}dB/{drift:+g}ppm"
                    cases.append(ReferenceCase(name, t60_1k_s=t60, drr_db=drr, pnr_db=pnr, drift_ppm=drift, seed=seed))
    if quick:
        keep = {("0.35", "3", "60", "0"), ("1", "-6", "40", "200"), ("2.4", "3", "40", "-200"), ("1", "3", "20", "50")}
        cases = [c for c in cases if (f"{c.t60_1k_s:g}", f"{c.drr_db:g}", f"{c.pnr_db:g}", f"{c.drift_ppm:g}") in keep]
    return cases


def errors(measured: dict[str, Any], truth: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per band key ("broadband", "125", ...): value -> error (times %, levels dB, d50/sti absolute); None if null."""
    out: dict[str, dict[str, float | None]] = {}
    for key in ("broadband", *BANDS):
        m = measured["broadband"] if key == "broadband" else measured["bands"][key]
        t = truth["broadband"] if key == "broadband" else truth["bands"][key]
        row: dict[str, float | None] = {}
        for name in (*TIMES, *LEVELS, "d50", "sti"):
            if name not in t or name not in m:
                continue
            if m[name] is None:
                row[name] = None
            elif name in TIMES:
                row[name] = 100.0 * (m[name] - t[name]) / t[name]
            else:
                row[name] = m[name] - t[name]
        out[key] = row
    return out


COLUMNS = ("T mid %", "T edge %", "C mid dB", "C edge dB", "DRR 0.5-4k", "DRR 125,250", "DRR 8k", "D50 mid", "STI")


def columns(errs: dict[str, dict[str, float | None]]) -> dict[str, tuple[float | None, int]]:
    """The table's cells: worst |error| and null count per group of values and bands."""
    return dict(
        zip(
            COLUMNS,
            (
                worst(errs, MID_BANDS, TIMES),
                worst(errs, EDGE_BANDS, TIMES),
                worst(errs, MID_BANDS, CLARITY),
                worst(errs, EDGE_BANDS, CLARITY),
                worst(errs, ("500", "1000", "2000", "4000"), ("drr_db",)),
                worst(errs, ("125", "250"), ("drr_db",)),
                worst(errs, ("8000",), ("drr_db",)),
                worst(errs, MID_BANDS, ("d50",)),
                worst(errs, ("broadband",), ("sti",)),
            ),
            strict=True,
        )
    )


def worst(
    errs: dict[str, dict[str, float | None]], keys: tuple[str, ...], names: tuple[str, ...]
) -> tuple[float | None, int]:
    values = [errs[k][n] for k in keys for n in names if n in errs[k]]
    present = [abs(v) for v in values if v is not None and np.isfinite(v)]
    return (max(present) if present else None), sum(v is None for v in values)


def pyrato_values(ir: np.ndarray, fs: int) -> dict[str, Any]:
    """The same values through pyfar/pyrato (order-14 octave filters, Chu+Lundeby EDC)."""
    import warnings

    import pyfar as pf
    import pyrato

    warnings.filterwarnings("ignore")

    signal = pf.Signal(ir, fs)
    octave = pf.dsp.filter.fractional_octave_bands(signal, 1, frequency_range=(125, 8000))
    padded = pf.Signal(np.concatenate([ir, np.zeros(max(0, int(1.7 * fs) - len(ir)))]), fs)
    try:
        sti = float(np.ravel(pyrato.parameters.speech_transmission_index_indirect(padded))[0])
    except Exception:
        sti = None
    bands = {}
    for i, band in enumerate(BANDS):
        values: dict[str, float | None] = dict.fromkeys(("edt_s", "t20_s", "t30_s", "c50_db", "c80_db", "d50"))
        try:
            edc = pyrato.edc.energy_decay_curve_chu_lundeby(octave[i], normalize=True)
            for name, label in (("edt_s", "EDT"), ("t20_s", "T20"), ("t30_s", "T30")):
                values[name] = _finite(_call(pyrato.parameters.reverberation_time_linear_regression, edc, T=label))
            values["c50_db"] = _finite(_call(pyrato.parameters.clarity, edc, 50))
            values["c80_db"] = _finite(_call(pyrato.parameters.clarity, edc, 80))
            values["d50"] = _finite(_call(pyrato.parameters.definition, edc, 50))
        except Exception:
            pass
        bands[band] = values
    return {"broadband": {"sti": sti}, "bands": bands}


def clean_as_truth(clean: dict[str, Any]) -> dict[str, Any]:
    """The metric code's values on the clean IR as a truth dict (nulls become NaN, so they count as no error)."""

    def fill(values: dict[str, Any]) -> dict[str, Any]:
        return {k: (float("nan") if v is None else v) for k, v in values.items()}

    return {"broadband": fill(clean["broadband"]), "bands": {b: fill(v) for b, v in clean["bands"].items()}}


def _call(func: Any, *args: Any, **kwargs: Any) -> float:
    try:
        return float(np.ravel(func(*args, **kwargs))[0])
    except Exception:
        return float("nan")


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def fmt(value: float | None, nulls: int = 0, width: int = 6) -> str:
    text = "null" if value is None else f"{value:.2f}"
    if nulls:
        text += f"({nulls}n)"
    return text.rjust(width + 4)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="four representative cases instead of the grid")
    parser.add_argument("--no-pyrato", action="store_true", help="skip the pyfar/pyrato comparison")
    args = parser.parse_args()

    params = resolve_params(48000)
    pcm16, timing = render(params)
    signal = pcm16.astype(np.float64) / 32768.0
    workdir = Path(tempfile.mkdtemp(prefix="sonalyze-bench-"))
    reference_path = workdir / "reference.wav"
    sf.write(reference_path, pcm16, 48000, subtype="PCM_16")
    timing_dict = timing.as_dict()
    reference = Reference(samples=signal, timing=timing_dict)

    cases = grid(args.quick)
    print(
        f"{len(cases)} cases; signal {params.signal_id}: 48 kHz, sweep {params.duration_s:g} s "
        f"{params.f_start_hz:g}-{params.f_end_hz:g} Hz, total {timing.total_duration_s:g} s; recordings 44.1 kHz 16-bit\n"
    )
    header = f"{'case':34} " + " ".join(f"{c:>10}" for c in COLUMNS) + f" {'drift ppm':>10}"
    print("1. worst |error| per case (mid = 250 Hz-4 kHz, edge = 125 Hz and 8 kHz; (Nn) = N nulls)")
    print(header)
    summary: dict[float, dict[str, list]] = {}
    clean_done: set[tuple[float, float]] = set()
    path_rows: dict[float, list] = {}
    clean_rows = []
    times_s = []
    for case in cases:
        design = design_room(case)
        recording = simulate_recording(signal, 48000, design, case)
        path = workdir / "recording.wav"
        sf.write(path, recording, case.recording_rate_hz, subtype="PCM_16")
        task = AnalysisTask("bench", "recording.wav", str(path), str(reference_path), timing_dict, params.signal_id)
        started = time.perf_counter()
        result = analyze_recording(task)
        times_s.append(time.perf_counter() - started)
        if result["status"] != "ok":
            print(f"{case.name:34} FAILED: {result['error']}")
            continue
        errs = errors(result, design.truth)
        clean = room_parameters(design.ir, 48000).as_dict()
        path_rows.setdefault(case.pnr_db, []).append(columns(errors(result, clean_as_truth(clean))))
        true_drift_ppm = case.drift_ppm  # realised drift differs by < 0.1 ppm (FFT length rounding)
        row = columns(errs)
        drift_err = result["quality"]["drift_ppm"] - true_drift_ppm
        print(f"{case.name:34} " + " ".join(fmt(*row[k]) for k in row) + f" {drift_err:10.2f}")
        entry = summary.setdefault(case.pnr_db, {"ours": [], "pyrato": []})
        entry["ours"].append(row)
        if not args.no_pyrato:
            measured = measure_impulse_response(recording, case.recording_rate_hz, reference)
            ir = measured.ir.samples[max(measured.direct.onset_index - int(0.001 * 48000), 0) :]
            pyr = pyrato_values(ir, 48000)
            perrs = errors(pyr, design.truth)
            entry["pyrato"].append(columns(perrs))
        key = (case.t60_1k_s, case.drr_db)
        if key not in clean_done:
            clean_done.add(key)
            clean = room_parameters(design.ir, 48000).as_dict()
            cerrs = errors(clean, design.truth)
            clean_rows.append((f"clean T{case.t60_1k_s:g}/DRR{case.drr_db:+g}", cerrs))

    print("\n2. worst |error| over all cases per noise level, ours vs pyrato (pyrato has no DRR)")
    print(f"{'':34} " + " ".join(f"{c:>10}" for c in COLUMNS))
    for pnr, entry in sorted(summary.items(), reverse=True):
        for who in ("ours", "pyrato"):
            rows = entry[who]
            if not rows:
                continue
            cells = []
            for k in COLUMNS:
                present = [r[k][0] for r in rows if r[k][0] is not None]
                nulls = sum(r[k][1] for r in rows)
                cells.append(fmt(max(present) if present else None, nulls))
            print(f"{f'{pnr:g} dB peak-to-noise, {who}':34} " + " ".join(cells))
    targets = [
        TARGETS["mid_time_pct"],
        TARGETS["edge_time_pct"],
        TARGETS["mid_level_db"],
        TARGETS["edge_level_db"],
        TARGETS["mid_level_db"],
        None,
        TARGETS["edge_level_db"],
        None,
        TARGETS["sti"],
    ]
    print(f"{'targets (40 dB and up; 20 dB: 10 %)':34} " + " ".join(fmt(t) for t in targets))

    print("\n2b. what the measurement path adds: worst |measured - metric code on the clean designed IR|")
    print(f"{'':34} " + " ".join(f"{c:>10}" for c in COLUMNS))
    for pnr, rows in sorted(path_rows.items(), reverse=True):
        cells = []
        for k in COLUMNS:
            present = [r[k][0] for r in rows if r[k][0] is not None]
            cells.append(fmt(max(present) if present else None, sum(r[k][1] for r in rows)))
        print(f"{f'{pnr:g} dB peak-to-noise':34} " + " ".join(cells))

    print("\n3. the metric code on the designed impulse response itself (no measurement path): error per band")
    for name, cerrs in clean_rows:
        print(f"  {name}")
        for key in ("broadband", *BANDS):
            cells = " ".join(f"{n}={'null' if v is None else f'{v:+.2f}'}" for n, v in cerrs[key].items())
            print(f"    {key:>9}: {cells}")

    print("\n4. time per recording (one core)")
    ten_s = simulate_recording(
        signal,
        48000,
        design_room(ReferenceCase("t")),
        replace(ReferenceCase("t"), recording_rate_hz=48000, delay_s=0.0),
    )
    ten_s = ten_s[: 10 * 48000]
    path = workdir / "ten.wav"
    sf.write(path, ten_s, 48000, subtype="PCM_16")
    task = AnalysisTask("bench", "ten.wav", str(path), str(reference_path), timing_dict, params.signal_id)
    analyze_recording(task)  # warm caches (reference, filter designs)
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        analyze_recording(task)
        runs.append(time.perf_counter() - started)
    stage_runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        measured = measure_impulse_response(ten_s, 48000, reference)
        t1 = time.perf_counter()
        room_parameters(
            measured.ir.samples,
            48000,
            direct_index=measured.direct.onset_index,
            band_limits_hz=(params.f_start_hz, params.f_end_hz),
        )
        t2 = time.perf_counter()
        stage_runs.append((t1 - t0, t2 - t1))
    align_s, metrics_s = min(stage_runs)
    print(
        f"  10 s 48 kHz recording, whole analysis (read WAV -> results): median {np.median(runs) * 1000:.0f} ms, "
        f"best {min(runs) * 1000:.0f} ms (target < 300 ms)"
    )
    print(
        f"    chirps + drift + resampling + deconvolution + direct sound: {align_s * 1000:.0f} ms; "
        f"room_parameters: {metrics_s * 1000:.0f} ms"
    )
    print(
        f"  44.1 kHz grid recordings (~12.7 s each, first one cold): median {np.median(times_s) * 1000:.0f} ms, "
        f"max {max(times_s) * 1000:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
