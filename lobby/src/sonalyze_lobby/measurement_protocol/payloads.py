"""The wire payloads of the lobby's pushes and answers, built from a `SessionState`.

Pure functions, one per payload; the shapes (and their key order) are `sonalyze_protocol.measurement_events`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from sonalyze_lobby.measurement_protocol.effects import SendPush
from sonalyze_lobby.measurement_protocol.state import (
    CYCLE_STEPS,
    STEP_TIMEOUT_CODE,
    SessionState,
    Slot,
    Step,
    cycle_order,
    recordings_list,
    upload_name_for,
)
from sonalyze_protocol import measurement_events as events
from sonalyze_protocol.measurement_events import (
    AnalysisComplete,
    AnalysisFailedError,
    AnalysisResults,
    DeviceReportedError,
    PhaseUpdate,
    RequestAudio,
    SessionCancelled,
    SessionComplete,
    SessionStatus,
    SpeakerComplete,
    StartMeasurement,
    StartPlayback,
    StartRecording,
    StepTimeoutError,
    StopRecording,
)

# step -> (phase, phase_description) of ``measurement.phase_update``; the app's timeline follows ``phase``
PHASES: Final[dict[Step, tuple[str, str]]] = {
    Step.IDLE: ("waiting_for_start", "Waiting for the host to start the next speaker"),
    Step.AWAITING_READY: ("waiting_for_ready", "Waiting for the speaker and every microphone to be ready"),
    Step.AWAITING_AUDIO: ("audio_requested", "The speaker is downloading the measurement signal"),
    Step.AWAITING_RECORDING: ("recording", "The microphones are starting to record"),
    Step.AWAITING_PLAYBACK: ("playing", "The speaker is playing the sweep"),
    Step.AWAITING_UPLOADS: ("uploading", "The microphones are uploading their recordings"),
    Step.FAILED: ("failed", "This speaker's cycle failed; the host may retry it"),
    Step.ANALYZING: ("processing", "Analysing the recordings"),
    Step.COMPLETE: ("completed", "The measurement is complete"),
    Step.CANCELLED: ("cancelled", "The measurement was cancelled"),
}


# --- the commands of the cycle steps ------------------------------------------------------------------


def command_pushes(state: SessionState, device_ids: Iterable[str]) -> list[SendPush]:
    """The command the current step waits on, addressed to ``device_ids`` (also used to re-send it)."""
    targets = tuple(d for d in state.device_ids if d in set(device_ids))
    if not targets:
        return []
    speaker = state.current_speaker
    assert speaker is not None
    match state.step:
        case Step.AWAITING_READY:
            return [SendPush(targets, events.START_MEASUREMENT, start_measurement(state, speaker))]
        case Step.AWAITING_AUDIO:
            return [SendPush(targets, events.REQUEST_AUDIO, request_audio(state, speaker))]
        case Step.AWAITING_RECORDING:
            return [SendPush(targets, events.START_RECORDING, start_recording(state, speaker))]
        case Step.AWAITING_PLAYBACK:
            return [SendPush(targets, events.START_PLAYBACK, start_playback(state, speaker))]
        case Step.AWAITING_UPLOADS:
            return [
                SendPush((mic.device_id,), events.STOP_RECORDING, stop_recording(state, speaker, mic))
                for mic in state.microphones
                if mic.device_id in targets
            ]
        case _:
            return []


def start_measurement(state: SessionState, speaker: Slot) -> StartMeasurement:
    return {
        "session_id": state.session_id,
        "speaker_slot_id": speaker.slot_id,
        "job_id": state.job_id,
        "speaker_device_id": speaker.device_id,
        "speaker_index": state.speaker_index,
        "speaker_count": len(state.speakers),
        "microphone_slot_ids": [m.slot_id for m in state.microphones],
        "signal_id": state.signal.signal_id,
        "current_speaker_slot_id": speaker.slot_id,
    }


def request_audio(state: SessionState, speaker: Slot) -> RequestAudio:
    data: RequestAudio = {
        "session_id": state.session_id,
        "speaker_slot_id": speaker.slot_id,
        "audio_url": state.signal.audio_url,
        "signal_id": state.signal.signal_id,
    }
    if state.signal.audio_sha256 is not None:
        data["expected_hash"] = state.signal.audio_sha256
    return data


def start_recording(state: SessionState, speaker: Slot) -> StartRecording:
    return {
        "session_id": state.session_id,
        "speaker_slot_id": speaker.slot_id,
        "signal_id": state.signal.signal_id,
        "audio_url": state.signal.audio_url,
        "signal_duration_s": state.signal.duration_s,
    }


def start_playback(state: SessionState, speaker: Slot) -> StartPlayback:
    return {"session_id": state.session_id, "speaker_slot_id": speaker.slot_id, "signal_id": state.signal.signal_id}


def stop_recording(state: SessionState, speaker: Slot, mic: Slot) -> StopRecording:
    name = upload_name_for(speaker.slot_id, mic.slot_id)
    return {
        "session_id": state.session_id,
        "speaker_slot_id": speaker.slot_id,
        "mic_slot_id": mic.slot_id,
        "job_id": state.job_id,
        "upload_name": name,
        "upload_url": f"/v1/jobs/{state.job_id}/uploads/{name}",
        "upload_endpoint": upload_endpoint(state),
    }


def upload_endpoint(state: SessionState) -> str:
    """The uploads base of the session's job (the app appends its upload name)."""
    return f"{state.upload_base_url}/v1/jobs/{state.job_id}/uploads/"


# --- progress and endings -----------------------------------------------------------------------------


def speaker_complete(state: SessionState, speaker: Slot) -> SpeakerComplete:
    """Sent while ``state.speaker_index`` still points at ``speaker``."""
    next_index = state.speaker_index + 1
    next_speaker = state.speakers[next_index] if next_index < len(state.speakers) else None
    return {
        "session_id": state.session_id,
        "speaker_slot_id": speaker.slot_id,
        "speaker_index": state.speaker_index,
        "recordings": [r.as_dict() for r in state.recordings if r.speaker_slot_id == speaker.slot_id],
        "next_speaker_slot_id": next_speaker.slot_id if next_speaker else None,
        "completed_speaker_slot_id": speaker.slot_id,
        "remaining_speakers": len(state.speakers) - next_index,
        "remaining_speaker_slot_ids": [s.slot_id for s in state.speakers[next_index:]],
    }


def session_complete(state: SessionState) -> SessionComplete:
    return {
        "session_id": state.session_id,
        "job_id": state.job_id,
        "recordings": recordings_list(state),
        "completed_speakers": [s.slot_id for s in state.speakers],
    }


def session_cancelled(state: SessionState, reason: str, by: str | None) -> SessionCancelled:
    return {"session_id": state.session_id, "reason": reason, "cancelled_by": by}


def step_timeout_error(state: SessionState, missing_ids: list[str], reason: str) -> StepTimeoutError:
    speaker = state.current_speaker
    message = f"step {state.step.value} timed out ({reason}) waiting for {', '.join(missing_ids)}"
    return {
        "session_id": state.session_id,
        "code": STEP_TIMEOUT_CODE,
        "step": state.step.value,
        "missing_device_ids": missing_ids,
        "speaker_slot_id": speaker.slot_id if speaker else None,
        "reason": reason,
        "message": message,
        "error_device_id": missing_ids[0] if missing_ids else None,
        "error_message": message,
        "error_code": STEP_TIMEOUT_CODE,
    }


def device_reported_error(
    state: SessionState, device_id: str, error_message: str, error_code: str | None
) -> DeviceReportedError:
    speaker = state.current_speaker
    return {
        "session_id": state.session_id,
        "code": "device_error",
        "step": state.step.value,
        "device_id": device_id,
        "error_device_id": device_id,
        "error_code": error_code or "device_error",
        "error_message": error_message,
        "speaker_slot_id": speaker.slot_id if speaker else None,
        "message": f"device {device_id} reported: {error_message}",
    }


def analysis_failed_error(state: SessionState, reason: str) -> AnalysisFailedError:
    message = f"the analysis of job {state.job_id} failed: {reason}"
    return {
        "session_id": state.session_id,
        "job_id": state.job_id,
        "code": "analysis_failed",
        "step": Step.ANALYZING.value,
        "message": message,
        "reason": reason,
        "error_device_id": None,
        "error_message": message,
        "error_code": "analysis_failed",
    }


def analysis_complete(state: SessionState, results: Any, summary: Any) -> AnalysisComplete:
    data: AnalysisComplete = {"session_id": state.session_id, "job_id": state.job_id, "results": results}
    if summary is not None:
        data["summary"] = summary
    return data


def automatic_results(state: SessionState, results: Any) -> list[AnalysisResults]:
    """One ``measurement.analysis_results`` per counted recording whose entry carries ``app_results``
    (the app's shape): every phone sees results even when the host never relays them."""
    entries = results.get("results") if isinstance(results, dict) else results
    if not isinstance(entries, list):
        return []
    by_name = {e.get("upload_name"): e for e in entries if isinstance(e, dict)}
    payloads: list[AnalysisResults] = []
    for recording in recordings_list(state):
        entry = by_name.get(recording["upload_name"])
        app_results = entry.get("app_results") if entry else None
        if not isinstance(app_results, dict):
            continue
        payloads.append(
            {
                "session_id": state.session_id,
                "job_id": state.job_id,
                "results": app_results,
                "recording_upload": recording["upload_name"],
                **recording,
                "source": "automatic",
            }
        )
    return payloads


def host_results(state: SessionState, results: dict[str, Any], from_device_id: str) -> AnalysisResults:
    """The results the host relays (``measurement.broadcast_results``) to the session's other devices."""
    return {
        "session_id": state.session_id,
        "job_id": state.job_id,
        "results": results,
        "from_device_id": from_device_id,
        "source": "host",
    }


# --- views ---------------------------------------------------------------------------------------------


def phase_progress(state: SessionState) -> PhaseUpdate:
    """The data of ``measurement.phase_update``: the phase and how far each wait has come."""
    phase, description = PHASES[state.step]
    speaker = state.current_speaker
    mic_ids = {m.device_id for m in state.microphones}
    order = cycle_order(state.step) if state.step in CYCLE_STEPS else -1
    ready_total = 1 + len(mic_ids)
    if state.step is Step.AWAITING_READY:
        ready_count = ready_total - len(state.awaited)
    else:
        ready_count = ready_total if order > 0 else 0
    if state.step is Step.AWAITING_RECORDING:
        started = len(mic_ids - state.awaited)
    else:
        started = len(mic_ids) if order > cycle_order(Step.AWAITING_RECORDING) else 0
    uploads = sum(1 for r in state.recordings if speaker is not None and r.speaker_slot_id == speaker.slot_id)
    return {
        "session_id": state.session_id,
        "job_id": state.job_id,
        "phase": phase,
        "phase_description": description,
        "step": state.step.value,
        "current_speaker_slot_id": speaker.slot_id if speaker else None,
        "speaker_device_id": speaker.device_id if speaker else None,
        "speaker_index": state.speaker_index,
        "total_speakers": len(state.speakers),
        "cycle": state.cycle,
        "devices_ready": ready_count,
        "total_devices": ready_total,
        "recordings_started": started,
        "total_microphones": len(mic_ids),
        "uploads_received": uploads,
        "recordings_received": len(state.recordings),
        "total_recordings": len(state.speakers) * len(mic_ids),
    }


def status(state: SessionState) -> SessionStatus:
    """The full state as the wire shows it (``measurement.session_status`` and ``create_session``)."""
    speaker = state.current_speaker
    failure = state.failure
    return {
        "session_id": state.session_id,
        "lobby_id": state.lobby_id,
        "job_id": state.job_id,
        "state": state.step.value,
        "step": state.step.value,
        "speakers": [{"device_id": s.device_id, "slot_id": s.slot_id} for s in state.speakers],
        "microphones": [{"device_id": m.device_id, "slot_id": m.slot_id} for m in state.microphones],
        "current_speaker": {"device_id": speaker.device_id, "slot_id": speaker.slot_id} if speaker else None,
        "speaker_index": state.speaker_index,
        "cycle": state.cycle,
        "awaiting_device_ids": [d for d in state.device_ids if d in state.awaited],
        "disconnected_device_ids": [d for d in state.device_ids if d in state.disconnected],
        "recordings": recordings_list(state),
        "signal_id": state.signal.signal_id,
        "audio_url": state.signal.audio_url,
        "audio_duration_seconds": state.signal.duration_s,
        "last_error": (
            {
                "code": failure.code,
                "step": failure.step.value,
                "message": failure.message,
                "device_ids": list(failure.device_ids),
            }
            if failure
            else None
        ),
        "results": state.results,
        "analysis_error": state.analysis_error,
        "cancel_reason": state.cancel_reason,
    }
