"""A measurement session's state: its steps, its line-up and everything `advance` reads and replaces.

Frozen dataclasses only; `transitions` makes new ones. One speaker cycle, with the devices each step waits for::

    idle/failed --start_speaker--> awaiting_ready        (speaker + microphones)  push start_measurement
                                   awaiting_audio        (speaker)                push request_audio
                                   awaiting_recording    (microphones)            push start_recording
                                   awaiting_playback     (speaker)                push start_playback
                                   awaiting_uploads      (microphones)            push stop_recording (one each)
                 -> the next speaker's awaiting_ready, or after the last one:
                                   analyzing  --analysis done/failed-->  complete
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from sonalyze_lobby.roles import Role
from sonalyze_protocol.errors import BadRequest
from sonalyze_protocol.measurement_events import RecordingEntry


class Step(StrEnum):
    IDLE = "idle"
    AWAITING_READY = "awaiting_ready"
    AWAITING_AUDIO = "awaiting_audio"
    AWAITING_RECORDING = "awaiting_recording"
    AWAITING_PLAYBACK = "awaiting_playback"
    AWAITING_UPLOADS = "awaiting_uploads"
    FAILED = "failed"
    ANALYZING = "analyzing"
    COMPLETE = "complete"
    CANCELLED = "cancelled"


CYCLE_STEPS: Final = (
    Step.AWAITING_READY,
    Step.AWAITING_AUDIO,
    Step.AWAITING_RECORDING,
    Step.AWAITING_PLAYBACK,
    Step.AWAITING_UPLOADS,
)
FINAL_STEPS: Final = frozenset({Step.COMPLETE, Step.CANCELLED})
# while a session is in one of these it holds its lobby in measurement_running
HOLDING_STEPS: Final = frozenset({Step.IDLE, Step.FAILED, *CYCLE_STEPS})
STEP_TIMER: Final = "step"
GRACE_TIMER_PREFIX: Final = "grace:"
STEP_TIMEOUT_CODE: Final = "step_timeout"
UPLOAD_NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9._-]{1,100}")


@dataclass(frozen=True, slots=True)
class Slot:
    device_id: str
    slot_id: str


@dataclass(frozen=True, slots=True)
class CountedRecording:
    """An upload the measurement service confirmed, attributed to one (speaker, microphone) pair."""

    speaker_slot_id: str
    mic_slot_id: str
    device_id: str
    upload_name: str

    def as_dict(self) -> RecordingEntry:
        return {
            "speaker_slot_id": self.speaker_slot_id,
            "mic_slot_id": self.mic_slot_id,
            "device_id": self.device_id,
            "upload_name": self.upload_name,
        }


@dataclass(frozen=True, slots=True)
class SignalInfo:
    """The sweep every speaker plays: its id, where devices fetch it, its length and (if known) its hash."""

    signal_id: str
    audio_url: str
    duration_s: float
    audio_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long each wait lasts; the playback wait is ``playback_margin_s`` plus the signal's length."""

    ready_s: float = 20.0
    audio_s: float = 30.0
    recording_s: float = 10.0
    playback_margin_s: float = 15.0
    upload_s: float = 60.0
    idle_s: float = 900.0
    analysis_s: float = 180.0
    disconnect_grace_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Failure:
    """Why the last cycle stopped; shown in the status until the next cycle starts."""

    code: str
    step: Step
    message: str
    device_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionState:
    session_id: str
    lobby_id: str
    job_id: str
    admin_device_id: str
    speakers: tuple[Slot, ...]
    microphones: tuple[Slot, ...]
    signal: SignalInfo
    timeouts: Timeouts = field(default_factory=Timeouts)
    # prefix of ``upload_endpoint`` (the lobby's PUBLIC_BASE_URL; empty: a path relative to the gateway)
    upload_base_url: str = ""
    step: Step = Step.IDLE
    speaker_index: int = 0
    cycle: int = 0
    awaited: frozenset[str] = frozenset()
    recordings: tuple[CountedRecording, ...] = ()
    disconnected: frozenset[str] = frozenset()
    # timer key -> generation of the armed timer; a firing with another generation is stale
    timers: Mapping[str, int] = field(default_factory=dict)
    next_generation: int = 1
    failure: Failure | None = None
    results: Any = None
    analysis_error: str | None = None
    cancel_reason: str | None = None

    @property
    def current_speaker(self) -> Slot | None:
        if self.speaker_index < len(self.speakers):
            return self.speakers[self.speaker_index]
        return None

    @property
    def device_ids(self) -> tuple[str, ...]:
        """Every speaker and microphone, in session order."""
        return tuple(s.device_id for s in (*self.speakers, *self.microphones))

    @property
    def members(self) -> tuple[str, ...]:
        """Who hears about the session: its devices and the admin."""
        return tuple(dict.fromkeys((*self.device_ids, self.admin_device_id)))

    @property
    def is_final(self) -> bool:
        return self.step in FINAL_STEPS

    @property
    def holds_lobby(self) -> bool:
        return self.step in HOLDING_STEPS

    def is_member(self, device_id: str) -> bool:
        """The admin, a speaker or a microphone of this session."""
        return device_id == self.admin_device_id or device_id in self.device_ids

    def role_of(self, device_id: str) -> Role:
        """The device's role in this session (`Role.NONE`: not a speaker or microphone, maybe the admin)."""
        if any(s.device_id == device_id for s in self.speakers):
            return Role.SPEAKER
        if any(m.device_id == device_id for m in self.microphones):
            return Role.MICROPHONE
        return Role.NONE


def upload_name_for(speaker_slot_id: str, mic_slot_id: str) -> str:
    """The file a microphone uploads for one speaker; both slot ids in it, so the job can tell them apart."""
    return f"{speaker_slot_id}__{mic_slot_id}.wav"


def app_upload_name_for(mic_device_id: str, speaker_slot_id: str) -> str:
    """The name the Sonalyze app gives the same file (its own convention, accepted beside ours)."""
    return f"recording_{mic_device_id}_{speaker_slot_id}.wav"


def is_valid_upload_name(name: str) -> bool:
    """The measurement service's rule: 1-100 of ``[A-Za-z0-9._-]``, not made only of dots."""
    return UPLOAD_NAME_PATTERN.fullmatch(name) is not None and name.strip(".") != ""


def check_line_up(speakers: tuple[Slot, ...], microphones: tuple[Slot, ...]) -> None:
    """At least one of each, no device twice, no slot id twice within a list; raises `BadRequest`."""
    if not speakers:
        raise BadRequest("data.speakers: at least one speaker is needed")
    if not microphones:
        raise BadRequest("data.microphones: at least one microphone is needed")
    for name, slots in (("speakers", speakers), ("microphones", microphones)):
        seen_devices: set[str] = set()
        seen_slots: set[str] = set()
        for slot in slots:
            if slot.device_id in seen_devices:
                raise BadRequest(f"data.{name}: device {slot.device_id} is listed twice")
            if slot.slot_id in seen_slots:
                raise BadRequest(f"data.{name}: slot {slot.slot_id} is listed twice")
            seen_devices.add(slot.device_id)
            seen_slots.add(slot.slot_id)
    both = {s.device_id for s in speakers} & {m.device_id for m in microphones}
    if both:
        raise BadRequest(f"device {sorted(both)[0]} cannot be both speaker and microphone")
    names = {upload_name_for(s.slot_id, m.slot_id) for s in speakers for m in microphones}
    if len(names) != len(speakers) * len(microphones):
        raise BadRequest("slot ids give two (speaker, microphone) pairs the same upload name; choose other slot ids")


def cycle_order(step: Step) -> int:
    return CYCLE_STEPS.index(step)


def awaited_in(state: SessionState, step: Step) -> frozenset[str]:
    """The devices ``step`` waits for in the current speaker's cycle."""
    speaker = state.current_speaker
    speaker_ids = frozenset({speaker.device_id}) if speaker else frozenset()
    mic_ids = frozenset(m.device_id for m in state.microphones)
    match step:
        case Step.AWAITING_READY:
            return speaker_ids | mic_ids
        case Step.AWAITING_AUDIO | Step.AWAITING_PLAYBACK:
            return speaker_ids
        case Step.AWAITING_RECORDING | Step.AWAITING_UPLOADS:
            return mic_ids
        case _:
            return frozenset()


def recordings_list(state: SessionState) -> list[RecordingEntry]:
    """Counted recordings in speaker order, then microphone order."""
    speaker_rank = {s.slot_id: i for i, s in enumerate(state.speakers)}
    mic_rank = {m.slot_id: i for i, m in enumerate(state.microphones)}
    ordered = sorted(state.recordings, key=lambda r: (speaker_rank[r.speaker_slot_id], mic_rank[r.mic_slot_id]))
    return [r.as_dict() for r in ordered]
