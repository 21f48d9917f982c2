"""One recording's result in the phone app's shape (phone-app spec section 6), beside our own fields.

Pure: takes a result item of the analysis (``upload_name, status, error, quality, broadband, bands,
frequency_response``) and returns the object ``analysis.run`` answers as ``results`` and the lobby
pushes as ``measurement.analysis_results``. The single numbers follow ISO 3382-1 Annex A: reverberation
times, EDT, C50, C80 and D50 are the mean of the 500 Hz and 1 kHz octave bands (DRR, which ISO 3382-1
does not define, likewise); a single number is null, with its reason, when either band is null.
STI is broadband by definition. Nothing here is ever NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

SINGLE_NUMBER_BANDS: Final = ("500", "1000")
SINGLE_NUMBER_METHOD: Final = "mean of the 500 Hz and 1 kHz octave bands (ISO 3382-1 Annex A)"
RT_FIELDS: Final = ("rt60_s", "edt_s", "t20_s", "t30_s")
CLARITY_FIELDS: Final = ("c50_db", "c80_db", "d50")


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """How one entry of ``display_metrics`` is made: from which value, shown how."""

    key: str
    source: str
    label: str
    unit: str
    decimals: int
    description: str
    icon: str
    category: str


DISPLAY_METRICS: Final = (
    MetricSpec(
        "rt60",
        "rt60_s",
        "RT60",
        "s",
        2,
        "Reverberation time: how long sound takes to fall by 60 dB (from T30, else T20).",
        "timer",
        "reverberation",
    ),
    MetricSpec(
        "edt",
        "edt_s",
        "EDT",
        "s",
        2,
        "Early decay time: the reverberation the ear perceives, from the first 10 dB of decay.",
        "speed",
        "reverberation",
    ),
    MetricSpec(
        "sti",
        "sti",
        "STI",
        "",
        2,
        "Speech transmission index, 0 (bad) to 1 (excellent) (IEC 60268-16, male speech at 60 dB(A)).",
        "record_voice_over",
        "intelligibility",
    ),
    MetricSpec(
        "c50", "c50_db", "C50", "dB", 1, "Speech clarity: early (0-50 ms) to late energy.", "hearing", "clarity"
    ),
    MetricSpec(
        "c80", "c80_db", "C80", "dB", 1, "Music clarity: early (0-80 ms) to late energy.", "music_note", "clarity"
    ),
    MetricSpec(
        "d50",
        "d50",
        "D50",
        "",
        2,
        "Definition: share of the energy arriving in the first 50 ms (0-1).",
        "graphic_eq",
        "intelligibility",
    ),
    MetricSpec(
        "drr",
        "drr_db",
        "DRR",
        "dB",
        1,
        "Direct-to-reverberant ratio: direct sound to the room's reflections.",
        "surround_sound",
        "direct_sound",
    ),
)


def single_numbers(item: dict[str, Any]) -> tuple[dict[str, float | None], dict[str, str]]:
    """The ISO 3382-1 single numbers of a result item and the reason for each null one."""
    bands = item.get("bands") or {}
    broadband = item.get("broadband") or {}
    null_reasons_in = (item.get("quality") or {}).get("null_reasons") or {}
    values: dict[str, float | None] = {}
    reasons: dict[str, str] = {}
    fields = {spec.source for spec in DISPLAY_METRICS if spec.source != "sti"} | set(RT_FIELDS)
    for name in sorted(fields):
        pair = [(bands.get(band) or {}).get(name) for band in SINGLE_NUMBER_BANDS]
        present = [value for value in pair if value is not None]
        if len(present) == len(pair):
            values[name] = round(sum(present) / len(present), 4)
            continue
        values[name] = None
        missing = [band for band, value in zip(SINGLE_NUMBER_BANDS, pair, strict=True) if value is None]
        why = "; ".join(null_reasons_in.get(f"bands.{band}.{name}", "not measured") for band in missing)
        reasons[name] = f"needs the {' and '.join(b + ' Hz' for b in missing)} band: {why}"
    values["sti"] = broadband.get("sti")
    if values["sti"] is None:
        reasons["sti"] = null_reasons_in.get("broadband.sti", "STI could not be computed")
    return values, reasons


def _formatted(value: float, spec: MetricSpec) -> str:
    text = f"{value:.{spec.decimals}f}"
    return f"{text} {spec.unit}" if spec.unit else text


def display_metrics(values: dict[str, float | None], reasons: dict[str, str]) -> tuple[list, list]:
    """``display_metrics`` (present values only, in table order) and the omitted ones with their reasons."""
    shown: list[dict[str, Any]] = []
    omitted: list[dict[str, str]] = []
    for order, spec in enumerate(DISPLAY_METRICS, start=1):
        value = values.get(spec.source)
        if value is None:
            omitted.append({"key": spec.key, "label": spec.label, "reason": reasons.get(spec.source, "not measured")})
            continue
        shown.append(
            {
                "key": spec.key,
                "label": spec.label,
                "value": value,
                "formatted_value": _formatted(value, spec),
                "unit": spec.unit,
                "description": spec.description,
                "icon": spec.icon,
                "category": spec.category,
                "sort_order": order,
            }
        )
    return shown, omitted


def _per_band(bands: dict[str, Any], fields: tuple[str, ...]) -> dict[str, dict[str, float | None]]:
    return {band: {name: (values or {}).get(name) for name in fields} for band, values in bands.items()}


def app_results(item: dict[str, Any]) -> dict[str, Any]:
    """The app-shaped results object of one result item (ok or failed)."""
    quality = item.get("quality") or {}
    bands = item.get("bands") or {}
    values, reasons = single_numbers(item)
    shown, omitted = display_metrics(values, reasons)
    rt: dict[str, Any] = {name: values[name] for name in RT_FIELDS}
    rt.update({"rt60": rt["rt60_s"], "edt": rt["edt_s"], "t20": rt["t20_s"], "t30": rt["t30_s"]})
    rt["bands"] = _per_band(bands, RT_FIELDS)
    clarity: dict[str, Any] = {name: values[name] for name in CLARITY_FIELDS}
    clarity.update({"c50": clarity["c50_db"], "c80": clarity["c80_db"]})
    clarity["bands"] = _per_band(bands, CLARITY_FIELDS)
    return {
        "upload_name": item.get("upload_name"),
        "speaker_slot_id": item.get("speaker_slot_id"),
        "mic_slot_id": item.get("mic_slot_id"),
        "status": item.get("status"),
        "error": item.get("error"),
        "source": quality.get("source", "sweep_deconvolution_generated"),
        "samplerate_hz": quality.get("recording_sample_rate_hz"),
        "single_number_method": SINGLE_NUMBER_METHOD,
        "rt": rt,
        "clarity": clarity,
        "drr": {"drr_db": values["drr_db"], "drr": values["drr_db"], "bands": _per_band(bands, ("drr_db",))},
        "sti": {"sti": values["sti"], "value": values["sti"]},
        "quality": quality,
        "frequency_response": item.get("frequency_response"),
        "display_metrics": shown,
        "omitted_metrics": omitted,
        "broadband": item.get("broadband"),
        "bands": item.get("bands"),
        "null_reasons": {**quality.get("null_reasons", {}), **{f"single.{k}": v for k, v in reasons.items()}},
    }
