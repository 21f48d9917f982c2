"""One recording, start to end: the function the process pool runs.

`analyze_recording` never raises: a recording that cannot be analysed comes back with
``status="failed"`` and the reason, so one bad upload never spoils its job. Everything it returns
is JSON-safe (no NaN or Infinity); every value left null has its reason in ``quality.null_reasons``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

import numpy as np

from sonalyze_acoustics.alignment import SyncNotFound
from sonalyze_acoustics.bands import band_edges_hz
from sonalyze_acoustics.parameters import OCTAVE_BANDS_HZ, room_parameters
from sonalyze_acoustics.plots import plot_data
from sonalyze_measurement.analysis.alignment import Measured, Reference, measure_impulse_response
from sonalyze_measurement.analysis.frequency_response import frequency_response
from sonalyze_measurement.analysis.io import (
    AudioRejected,
    Recording,
    clipped_samples,
    read_recording,
    read_wav,
    write_wav,
)
from sonalyze_protocol.deadline import DeadlineExceeded
from sonalyze_protocol.errors import client_text
from sonalyze_protocol.json_rule import jsonable

logger = logging.getLogger("sonalyze.measurement.analysis")

USABLE_NYQUIST_FRACTION: Final = 0.95
SWEEP_LOW_MARGIN_OCTAVES: Final = 0.5
"""The deconvolution's band mask rises over the half octave above the sweep's start."""
CLIPPED_FRACTION_WARNING: Final = 1e-5
METRIC_FIELDS: Final = ("edt_s", "t20_s", "t30_s", "rt60_s", "c50_db", "c80_db", "d50", "drr_db")
GENERATED_SOURCE: Final = "sweep_deconvolution_generated"
"""Our own signal (chirps + sweep) played and recorded; the other sources live in `ir_sources`."""


@dataclass(frozen=True, slots=True)
class AnalysisTask:
    """Everything a worker needs, as plain values (it is pickled to the pool)."""

    job_id: str
    upload_name: str
    recording_path: str
    reference_path: str
    reference_timing: dict[str, Any]
    signal_id: str | None
    speaker_slot_id: str | None = None
    mic_slot_id: str | None = None
    debug_audio_dir: str | None = None
    source: str = GENERATED_SOURCE
    sweep_path: str | None = None
    """``sweep_deconvolution``: the uploaded sweep that was played."""
    sweep_range_hz: tuple[float, float] | None = None
    """``sweep_deconvolution``: the sweep's range when the client gave it (else estimated)."""


def _failed_result(task: AnalysisTask) -> dict[str, Any]:
    """A result item with nothing measured yet; `analyze_recording` fills it in."""
    return {
        "upload_name": task.upload_name,
        "speaker_slot_id": task.speaker_slot_id,
        "mic_slot_id": task.mic_slot_id,
        "status": "failed",
        "error": None,
        "quality": {"signal_id": task.signal_id, "source": task.source},
        "broadband": None,
        "bands": None,
        "frequency_response": None,
        "plots": None,
    }


def _stopped_error(exc: DeadlineExceeded) -> dict[str, str]:
    return {"code": "analysis_failed", "message": f"the analysis took too long and was {exc}"}


def stopped_result(task: AnalysisTask, exc: DeadlineExceeded) -> dict[str, Any]:
    """The failed result item of an analysis its worker stopped at the deadline."""
    return jsonable({**_failed_result(task), "error": _stopped_error(exc)})


def analyze_recording(task: AnalysisTask) -> dict[str, Any]:
    """Analyse one recording; returns its result item (never raises)."""
    started = time.perf_counter()
    result = _failed_result(task)
    try:
        _analyser(task.source)(task, result)
        result["status"] = "ok"
    except AudioRejected as exc:
        result["error"] = {"code": "unreadable_recording", "message": client_text(str(exc))}
    except SyncNotFound as exc:
        result["error"] = {"code": "sync_not_found", "message": client_text(str(exc))}
    except ValueError as exc:
        result["error"] = {"code": "analysis_failed", "message": client_text(str(exc))}
    except DeadlineExceeded as exc:
        result["error"] = _stopped_error(exc)
    except Exception as exc:  # a worker must answer, whatever happened
        logger.exception("analysis of %s/%s failed", task.job_id, task.upload_name)
        result["error"] = {"code": "analysis_failed", "message": client_text(f"{type(exc).__name__}: {exc}")}
    result["quality"]["analysis_time_s"] = round(time.perf_counter() - started, 4)
    return jsonable(result)


def _analyser(source: str) -> Any:
    """The function analysing one source's recording into ``result`` (raises on failure)."""
    if source == GENERATED_SOURCE:
        return _analyze_into
    from sonalyze_measurement.analysis.ir_sources import ANALYSERS  # imports this module

    return ANALYSERS[source]


def read_described(path: str, quality: dict[str, Any]) -> Recording:
    """Read a recording's first channel and put its rate, length, level and clipping into ``quality``."""
    recording = read_recording(Path(path))
    samples = recording.samples
    rate_hz = recording.info.sample_rate_hz
    n_clipped = clipped_samples(samples)
    quality.update(
        {
            "recording_sample_rate_hz": rate_hz,
            "recording_duration_s": round(len(samples) / rate_hz, 6),
            "n_channels": recording.info.n_channels,
            "peak_dbfs": _db20(float(np.max(np.abs(samples)))),
            "clipping": {
                "clipped_samples": n_clipped,
                "clipped_fraction": n_clipped / len(samples),
                "clipped": n_clipped / len(samples) > CLIPPED_FRACTION_WARNING,
            },
        }
    )
    return recording


def fill_parameters(
    result: dict[str, Any],
    ir: np.ndarray,
    fs: float,
    direct_index: int,
    band_limits_hz: tuple[float, float] | None,
    recording_rate_hz: int,
) -> None:
    """Room parameters of ``ir`` into ``result`` (bands outside what was measured nulled), and its response."""
    quality = result["quality"]
    room = room_parameters(ir, fs, direct_index=direct_index, band_limits_hz=band_limits_hz)
    parameters = room.as_dict()
    null_reasons: dict[str, str] = dict(parameters["null_reasons"])
    bands = parameters["bands"]
    low_hz, high_hz = band_limits_hz or (0.0, fs / 2)
    coverage = {"f_start_hz": low_hz, "f_end_hz": high_hz}
    if band_limits_hz is not None:
        _null_unsupported_bands(bands, parameters["broadband"], null_reasons, recording_rate_hz, coverage)
    result["broadband"] = parameters["broadband"]
    result["bands"] = bands
    quality.update(dict(parameters["quality"].items()))
    quality["direct_index"] = direct_index
    quality["impulse_response_duration_s"] = round(len(ir) / fs, 6)
    usable_hz = min(high_hz, USABLE_NYQUIST_FRACTION * recording_rate_hz / 2)
    low_usable_hz = low_hz * 2**SWEEP_LOW_MARGIN_OCTAVES if band_limits_hz is not None else 20.0
    result["frequency_response"] = frequency_response(ir, fs, low_usable_hz, usable_hz)
    # what the web page draws (decay curves with their fits, impulse and fine frequency response), from this same ir
    result["plots"] = plot_data(ir, int(round(fs)), direct_index, room.decay_curves())
    warnings = []
    if quality["clipping"]["clipped"]:
        n_clipped = quality["clipping"]["clipped_samples"]
        warnings.append(f"{n_clipped} samples at full scale: the microphone clipped, loud parts are distorted")
    quality["warnings"] = warnings
    quality["null_reasons"] = null_reasons


def _analyze_into(task: AnalysisTask, result: dict[str, Any]) -> None:
    quality = result["quality"]
    recording = read_described(task.recording_path, quality)
    reference = load_reference(task.reference_path, tuple(sorted(task.reference_timing.items())))
    samples = recording.samples
    rate_hz = recording.info.sample_rate_hz
    quality.update(
        {"signal_sample_rate_hz": reference.sample_rate_hz, "resampled": rate_hz != reference.sample_rate_hz}
    )
    measured = measure_impulse_response(samples, rate_hz, reference)
    sync = measured.aligned.sync
    fs = reference.sample_rate_hz
    quality.update(
        {
            "offset_s": measured.aligned.offset_s,
            "drift_ppm": measured.aligned.drift_ppm,
            "chirp1_strength_db": sync.chirp1_strength_db,
            "chirp2_strength_db": sync.chirp2_strength_db,
            "direct_delay_ms": (measured.direct.onset_index - measured.ir.zero_index) / fs * 1000.0,
        }
    )
    fill_parameters(
        result,
        measured.ir.samples,
        fs,
        measured.direct.onset_index,
        (reference.timing["f_start_hz"], reference.timing["f_end_hz"]),
        rate_hz,
    )
    if task.debug_audio_dir:
        _write_debug_audio(task, measured, fs)


def _null_unsupported_bands(
    bands: dict[str, dict[str, Any]],
    broadband: dict[str, Any],
    null_reasons: dict[str, str],
    recording_rate_hz: int,
    timing: dict[str, Any],
) -> None:
    """Bands the recording or the sweep did not cover carry no measurement: null them with the reason."""
    usable_hz = USABLE_NYQUIST_FRACTION * recording_rate_hz / 2
    low_limit_hz = timing["f_start_hz"] * 2**SWEEP_LOW_MARGIN_OCTAVES
    missing = []
    for band in OCTAVE_BANDS_HZ:
        low_hz, high_hz = band_edges_hz(band)
        if high_hz > usable_hz:
            reason = f"the {band} Hz band lies above what a {recording_rate_hz} Hz recording holds"
        elif low_hz < low_limit_hz or high_hz > timing["f_end_hz"]:
            reason = f"the {band} Hz band lies outside the sweep ({timing['f_start_hz']:g}-{timing['f_end_hz']:g} Hz)"
        else:
            continue
        missing.append(band)
        for name in METRIC_FIELDS:
            bands[str(band)][name] = None
            null_reasons[f"bands.{band}.{name}"] = reason
    if missing and broadband.get("sti") is not None:
        broadband["sti"] = None
        null_reasons["broadband.sti"] = "STI needs all seven octave bands; missing: " + ", ".join(
            f"{band} Hz" for band in missing
        )


@lru_cache(maxsize=8)
def load_reference(path: str, timing_items: tuple[tuple[str, Any], ...]) -> Reference:
    """The reference signal, cached per worker process (a job's recordings share it)."""
    samples, rate_hz = read_wav(Path(path))
    timing = dict(timing_items)
    if rate_hz != timing["sample_rate_hz"] or len(samples) != timing["n_samples"]:
        raise ValueError(f"reference signal {path} does not match its timing")
    return Reference(samples=samples, timing=timing)


def _write_debug_audio(task: AnalysisTask, measured: Measured, fs: int) -> None:
    directory = Path(task.debug_audio_dir or ".") / task.job_id
    stem = os.path.splitext(task.upload_name)[0] or task.upload_name
    write_wav(directory / f"{stem}.aligned.wav", measured.aligned.samples.astype(np.float32), fs)
    ir = measured.ir.samples / max(float(np.max(np.abs(measured.ir.samples))), 1e-30)
    write_wav(directory / f"{stem}.ir.wav", ir.astype(np.float32), fs)


def _db20(value: float) -> float | None:
    return 20.0 * math.log10(value) if value > 0 else None
