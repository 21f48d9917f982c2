"""HTTP calls from the coordinator to the measurement service (``MEASUREMENT_URL``, PLAN.md "Internal contracts").

Every failure becomes an `AppError`: an unknown job or upload -> ``not_found``, a slow service ->
``timeout``, an unreachable or failing one -> ``service_unavailable``; the message names the call.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final
from urllib.parse import urlencode

import httpx

from sonalyze_lobby.measurement_protocol import SignalInfo
from sonalyze_protocol.auth import INTERNAL_TOKEN_HEADER
from sonalyze_protocol.errors import AppError, BadRequest, ErrorCode, NotFound, ServiceUnavailable, Timeout
from sonalyze_protocol.logs import REQUEST_ID_HEADER, request_id_var

AUDIO_PATH: Final = "/v1/measurement/audio"


class MeasurementClient:
    """The calls the protocol makes; one shared ``httpx.AsyncClient``."""

    def __init__(self, base_url: str, client: httpx.AsyncClient, *, token: str = "", timeout_s: float = 30.0) -> None:
        self._base = base_url.rstrip("/")
        self._client = client
        self._token = token
        self._timeout_s = timeout_s
        self._signals: dict[str, SignalInfo] = {}
        self._describing: dict[str, asyncio.Future[SignalInfo]] = {}

    def _headers(self) -> dict[str, str]:
        headers = {INTERNAL_TOKEN_HEADER: self._token} if self._token else {}
        if (rid := request_id_var.get()) is not None:
            headers[REQUEST_ID_HEADER] = rid
        return headers

    async def _call(
        self, what: str, method: str, path: str, *, timeout_s: float | None = None, **kwargs: Any
    ) -> httpx.Response:
        try:
            response = await self._client.request(
                method, self._base + path, headers=self._headers(), timeout=timeout_s or self._timeout_s, **kwargs
            )
        except httpx.TimeoutException:
            raise Timeout(f"the measurement service did not answer {what} in time") from None
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"the measurement service is unreachable ({what}): {exc}") from None
        if response.status_code >= 500:
            raise ServiceUnavailable(f"the measurement service failed {what}: {_reason(response)}")
        return response

    async def get_signal(self, sample_rate_hz: int) -> SignalInfo:
        """The sweep for ``sample_rate_hz``, remembered per rate: its id, length and SHA-256.

        All three come from the signal's JSON description (contract C1: ``signal_id``, ``total_duration_s``,
        ``audio_hash``); the audio itself is never downloaded here.
        """
        query = urlencode({"sample_rate": sample_rate_hz})
        if (known := self._signals.get(query)) is not None:
            return known
        # one description in flight per rate: the start-up warm-up and a first create_session share it
        if (pending := self._describing.get(query)) is None:
            pending = asyncio.ensure_future(self._describe_signal(query))
            self._describing[query] = pending
            pending.add_done_callback(lambda _: self._describing.pop(query, None))
        return await asyncio.shield(pending)

    async def _describe_signal(self, query: str) -> SignalInfo:
        described = await self._call("the signal description", "GET", f"/v1/measurement/signal?{query}")
        if described.status_code in (400, 422):
            raise BadRequest(f"data.sample_rate_hz: the measurement service refused it: {_reason(described)}")
        _raise_for_client_error(described, "the signal description")
        body = described.json()
        signal_id = str(body["signal_id"])
        audio_hash = body.get("audio_hash")
        duration_s = body.get("total_duration_s")
        if not isinstance(audio_hash, str) or not isinstance(duration_s, int | float):
            raise ServiceUnavailable(
                "the measurement service described the signal without audio_hash or total_duration_s"
            )
        info = SignalInfo(
            signal_id=signal_id,
            audio_url=f"{AUDIO_PATH}?{query}",
            duration_s=float(duration_s),
            audio_sha256=audio_hash.lower(),
        )
        self._signals[query] = info
        return info

    async def register_session(self, session_id: str, job_id: str, signal_id: str) -> None:
        """``PUT /v1/measurement/sessions/{id}`` (contract C2): the session's signal is then served by id."""
        what = f"the registration of session {session_id}"
        body = {"job_id": job_id, "signal_id": signal_id}
        response = await self._call(what, "PUT", f"/v1/measurement/sessions/{session_id}", json=body)
        if response.status_code == 404:
            raise NotFound(f"measurement job {job_id} does not exist ({what}: {_reason(response)})")
        _raise_for_client_error(response, what)

    async def announce_recording(
        self, job_id: str, upload_name: str, *, speaker_slot_id: str, mic_slot_id: str, device_id: str, signal_id: str
    ) -> None:
        body = {
            "speaker_slot_id": speaker_slot_id,
            "mic_slot_id": mic_slot_id,
            "device_id": device_id,
            "signal_id": signal_id,
        }
        what = f"the announcement of {upload_name}"
        response = await self._call(what, "PUT", f"/v1/jobs/{job_id}/recordings/{upload_name}", json=body)
        if response.status_code == 404:
            raise NotFound(f"measurement job {job_id} does not exist")
        _raise_for_client_error(response, what)

    async def upload_exists(self, job_id: str, upload_name: str) -> bool:
        response = await self._call(f"the check of {upload_name}", "GET", f"/v1/jobs/{job_id}/uploads/{upload_name}")
        if response.status_code == 404:
            return False
        _raise_for_client_error(response, f"the check of {upload_name}")
        return True

    async def analyze(self, job_id: str, timeout_s: float) -> Any:
        response = await self._call(
            f"the analysis of job {job_id}", "POST", f"/v1/jobs/{job_id}/analyze", timeout_s=timeout_s
        )
        _raise_for_client_error(response, f"the analysis of job {job_id}")
        return response.json()


def _reason(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
        return f"{response.status_code} {error.get('code', '')}: {error.get('message', '')}".strip()
    except (ValueError, AttributeError):
        return f"{response.status_code} {response.text[:200]}"


def _raise_for_client_error(response: httpx.Response, what: str) -> None:
    if response.status_code >= 400:
        error: dict[str, Any] = {}
        with contextlib.suppress(ValueError, AttributeError):
            error = response.json().get("error") or {}
        code = error.get("code")
        known = isinstance(code, str) and code in ErrorCode._value2member_map_
        message = f"the measurement service refused {what}: {_reason(response)}"
        raise AppError(message, code=code if known else ErrorCode.BAD_REQUEST)
