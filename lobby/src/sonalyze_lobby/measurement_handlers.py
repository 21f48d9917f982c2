"""Gateway events of the measurement protocol (``measurement.*``), merged into the lobby's handler table.

Handlers parse, apply the lobby's rules (admin, joined participants, one session per lobby) and hand
the message to the coordinator (`session_runner.Coordinator`); the state machine decides the rest.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from sonalyze_lobby import service
from sonalyze_lobby.context import LobbyContext
from sonalyze_lobby.measurement_protocol import (
    CancelSession,
    ErrorReported,
    Message,
    PlaybackComplete,
    Ready,
    RecordingStarted,
    RecordingUploaded,
    SessionState,
    Slot,
    SpeakerAudioReady,
    StartSpeaker,
    check_line_up,
    payloads,
    status,
)
from sonalyze_lobby.models import Lobby, LobbyState
from sonalyze_lobby.session_runner import Coordinator, NewSession
from sonalyze_lobby.session_store import running_session_of
from sonalyze_protocol import measurement_events as events
from sonalyze_protocol.errors import BadRequest, Conflict, Forbidden, InvalidState, NotFound, ServiceUnavailable
from sonalyze_protocol.handlers import Handler
from sonalyze_protocol.ids import DeviceId
from sonalyze_protocol.measurement_events import SessionStatus

# both slot ids go into an upload name (``<speaker>__<mic>.wav``), which the measurement service caps at 100
SLOT_ID_MAX_CHARS: Final = 47
SlotId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+$", min_length=1, max_length=SLOT_ID_MAX_CHARS)]
JobId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+$", min_length=1, max_length=128)]
SessionId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SlotIn(_Input):
    device_id: DeviceId
    slot_id: SlotId


class CreateSession(_Input):
    job_id: JobId
    lobby_id: uuid.UUID
    speakers: list[SlotIn] = Field(min_length=1, max_length=32)
    microphones: list[SlotIn] = Field(min_length=1, max_length=64)
    sample_rate_hz: int | None = Field(default=None, ge=8_000, le=192_000)


class SessionRef(_Input):
    session_id: SessionId


class CancelSessionIn(SessionRef):
    reason: str | None = Field(default=None, max_length=500)


class SpeakerAudioReadyIn(SessionRef):
    audio_hash: str | None = Field(default=None, max_length=200)


class RecordingUploadedIn(SessionRef):
    upload_name: str = Field(min_length=1, max_length=200)


class ErrorReportIn(SessionRef):
    error_message: str = Field(min_length=1, max_length=2000)
    error_code: str | None = Field(default=None, max_length=100)


def _coordinator(ctx: LobbyContext) -> Coordinator:
    if ctx.coordinator is None:
        raise ServiceUnavailable("the measurement coordinator is not running")
    return ctx.coordinator


def _ack(state: SessionState) -> dict[str, Any]:
    return {"session_id": state.session_id, "state": state.step.value}


def _check_lobby(lobby: Lobby, coordinator: Coordinator, device_ids: list[str], actor: str) -> None:
    """Admin only, every device joined, the lobby free (open, or running without a session: ``lobby.start``)."""
    service.require_admin(lobby, actor, "create a measurement session")
    service.require_not_closed(lobby)
    joined = {p.device_id for p in lobby.joined}
    for device_id in device_ids:
        if device_id not in joined:
            raise NotFound(f"device {device_id} is not a joined participant of lobby {lobby.code}")
    if (other := coordinator.holding(str(lobby.id))) is not None:
        raise Conflict(
            f"lobby {lobby.code} already runs measurement session {other.session_id} (step {other.step.value})",
            session_id=other.session_id,
        )
    if lobby.state not in (LobbyState.OPEN, LobbyState.MEASUREMENT_RUNNING):
        raise InvalidState(f"lobby {lobby.code} is {lobby.state.value}")


async def create_session(ctx: LobbyContext, data: CreateSession) -> SessionStatus:
    """Register the session (and so check the job) with the measurement service, check the admin,
    the line-up and the lobby, and open the session. One outgoing call and one transaction: the app starts the
    speaker 500 ms after sending this, whether or not the answer has come."""
    coordinator = _coordinator(ctx)
    measurement = coordinator.measurement
    sample_rate_hz = data.sample_rate_hz or coordinator.settings.measurement_sample_rate_hz
    signal = await measurement.get_signal(sample_rate_hz)  # known since the lobby started: no call
    session_id = coordinator.new_session_id()
    # one call: the measurement service checks the job (unknown: not_found) and from now on serves the
    # session's signal by id (/v1/measurement/audio?session_id=...), as the app asks for it. It comes
    # before the lobby's checks so that they and the state change share one transaction; a refused
    # request leaves only an unused registration behind. Recordings are announced to the job when each
    # is reported (see VerifyUpload), not here: the app's 500 ms timer.
    await measurement.register_session(session_id, data.job_id, signal.signal_id)

    async with coordinator.lobby_lock(str(data.lobby_id)):
        lobby = await service.get_lobby(ctx.session, data.lobby_id, for_update=True)
        service.require_admin(lobby, ctx.device_id, "create a measurement session")  # before judging the rest
        speakers = tuple(Slot(s.device_id, s.slot_id) for s in data.speakers)
        microphones = tuple(Slot(m.device_id, m.slot_id) for m in data.microphones)
        check_line_up(speakers, microphones)
        device_ids = [s.device_id for s in (*speakers, *microphones)]
        _check_lobby(lobby, coordinator, device_ids, ctx.device_id)
        disconnected = frozenset(p.device_id for p in lobby.joined if not p.connected)

        async def commit(state: SessionState, deadlines: Mapping[str, datetime]) -> None:
            if (other_id := await running_session_of(ctx.session, lobby.id)) is not None:  # on another replica
                raise Conflict(f"lobby {lobby.code} already runs measurement session {other_id}", session_id=other_id)
            coordinator.add_row(ctx.session, state, deadlines)  # stored with the lobby's change
            if lobby.state is LobbyState.OPEN:
                await service.set_state(ctx, lobby, LobbyState.MEASUREMENT_RUNNING)
            else:
                await ctx.session.commit()

        state = await coordinator.open_session(
            NewSession(
                lobby_id=str(data.lobby_id),
                job_id=data.job_id,
                admin_device_id=ctx.device_id,
                speakers=speakers,
                microphones=microphones,
                signal=signal,
                disconnected=disconnected,
                upload_base_url=ctx.settings.public_base_url,
                session_id=session_id,
            ),
            commit,
        )
    return status(state)


async def _send(ctx: LobbyContext, session_id: str, message: Message) -> SessionState:
    return await _coordinator(ctx).send(session_id, message)


async def start_speaker(ctx: LobbyContext, data: SessionRef) -> SessionStatus:
    return status(await _send(ctx, data.session_id, StartSpeaker(ctx.device_id)))


async def session_status(ctx: LobbyContext, data: SessionRef) -> SessionStatus:
    return _coordinator(ctx).status_for(data.session_id, ctx.device_id)


async def cancel_session(ctx: LobbyContext, data: CancelSessionIn) -> SessionStatus:
    return status(await _send(ctx, data.session_id, CancelSession(ctx.device_id, data.reason)))


async def ready(ctx: LobbyContext, data: SessionRef) -> dict[str, Any]:
    return _ack(await _send(ctx, data.session_id, Ready(ctx.device_id)))


async def speaker_audio_ready(ctx: LobbyContext, data: SpeakerAudioReadyIn) -> dict[str, Any]:
    return _ack(await _send(ctx, data.session_id, SpeakerAudioReady(ctx.device_id, data.audio_hash)))


async def recording_started(ctx: LobbyContext, data: SessionRef) -> dict[str, Any]:
    return _ack(await _send(ctx, data.session_id, RecordingStarted(ctx.device_id)))


async def playback_complete(ctx: LobbyContext, data: SessionRef) -> dict[str, Any]:
    return _ack(await _send(ctx, data.session_id, PlaybackComplete(ctx.device_id)))


async def recording_uploaded(ctx: LobbyContext, data: RecordingUploadedIn) -> dict[str, Any]:
    """Answers once the measurement service has confirmed the upload (``not_found`` if it has not got it)."""
    state = await _send(ctx, data.session_id, RecordingUploaded(ctx.device_id, data.upload_name))
    return {**_ack(state), "upload_name": data.upload_name, "counted": True}


async def report_error(ctx: LobbyContext, data: ErrorReportIn) -> dict[str, Any]:
    return _ack(await _send(ctx, data.session_id, ErrorReported(ctx.device_id, data.error_message, data.error_code)))


class BroadcastResultsIn(SessionRef):
    job_id: JobId | None = None
    results: dict[str, Any]


async def broadcast_results(ctx: LobbyContext, data: BroadcastResultsIn) -> dict[str, Any]:
    """The host relays results it got (``analysis.run``) to the session's other devices as
    ``measurement.analysis_results``; the size is bounded by the gateway's frame limit."""
    state = _coordinator(ctx).get(data.session_id)
    if ctx.device_id != state.admin_device_id:
        raise Forbidden("only the session's host may send measurement.broadcast_results")
    if data.job_id is not None and data.job_id != state.job_id:
        raise BadRequest(f"data.job_id: session {state.session_id} measures job {state.job_id}, not {data.job_id}")
    others = [d for d in state.members if d != ctx.device_id]
    payload = payloads.host_results(state, data.results, ctx.device_id)
    result = await ctx.broadcaster.push(others, events.ANALYSIS_RESULTS, dict(payload))
    return {"session_id": state.session_id, "recipients": others, "delivered": result.delivered if result else []}


MEASUREMENT_HANDLERS: dict[str, Handler[LobbyContext, Any]] = {
    "measurement.create_session": Handler(CreateSession, create_session),
    "measurement.start_speaker": Handler(SessionRef, start_speaker),
    "measurement.session_status": Handler(SessionRef, session_status),
    "measurement.cancel_session": Handler(CancelSessionIn, cancel_session),
    "measurement.ready": Handler(SessionRef, ready),
    "measurement.speaker_audio_ready": Handler(SpeakerAudioReadyIn, speaker_audio_ready),
    "measurement.recording_started": Handler(SessionRef, recording_started),
    "measurement.playback_complete": Handler(SessionRef, playback_complete),
    "measurement.recording_uploaded": Handler(RecordingUploadedIn, recording_uploaded),
    "measurement.error": Handler(ErrorReportIn, report_error),
    # older app builds' names for ready and playback_complete
    "measurement.client_ready": Handler(SessionRef, ready),
    "measurement.speaker_finished": Handler(SessionRef, playback_complete),
    "measurement.broadcast_results": Handler(BroadcastResultsIn, broadcast_results),
}
