"""Recording into the storage service: `StorageClient` (HTTP) and `StorageRecorder` (typed, through an outbox).

Services call the recorder; nothing they do waits on storage or fails because of it::

    recorder = await StorageRecorder.open("lobby", storage_url=settings.storage_url,
                                          outbox_dir=settings.outbox_dir, token=settings.internal_auth_token)
    await recorder.lobby(lobby_id, code=code, admin_device_id=admin, status="open", opened_at=now)
    ...
    await recorder.aclose()

Each method queues one upsert on the record's natural key, so a write delivered twice is stored once:
devices by ``device_id``; lobbies by ``lobby_id``; participants by ``(lobby_id, device_id)``; measurements
by ``(job_id, upload_name)``; analysis outputs by ``(job_id, upload_name, analysis_run)``; simulation jobs
and results by their ids. Fields left ``None`` are not sent, so a later call with fewer fields never
erases what an earlier one recorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx

from sonalyze_protocol.auth import INTERNAL_TOKEN_HEADER
from sonalyze_protocol.json_rule import jsonable
from sonalyze_protocol.logs import DEVICE_ID_HEADER, REQUEST_ID_HEADER
from sonalyze_protocol.outbox import Backoff, Delivery, DeliveryOutcome, Outbox, OutboxEntry

DEFAULT_BACKOFF = Backoff()

logger = logging.getLogger("sonalyze.storage_client")

PATH_BY_KIND: Final[dict[str, str]] = {
    "device": "/v1/devices",
    "device_batch": "/v1/devices/bulk",
    "lobby": "/v1/lobbies",
    "participant": "/v1/participants",
    "measurement": "/v1/measurements",
    "analysis_output": "/v1/analysis-outputs",
    "simulation_job": "/v1/simulation-jobs",
    "simulation_result": "/v1/simulation-results",
}
# storage away or not itself yet: wait and try again; any other 4xx means the write itself is wrong
RETRY_STATUSES: Final = frozenset({401, 403, 404, 405, 408, 425, 429})
OUTBOX_FILE_SUFFIX: Final = ".outbox.sqlite3"


def classify_status(status_code: int) -> DeliveryOutcome:
    if 200 <= status_code < 300:
        return DeliveryOutcome.DELIVERED
    if status_code == 409:
        return DeliveryOutcome.CONFLICT
    if status_code >= 500 or status_code in RETRY_STATUSES:
        return DeliveryOutcome.RETRY
    return DeliveryOutcome.REJECTED


class StorageClient:
    """POSTs outbox entries to storage (`deliver`) and reads records back (`list_all`)."""

    def __init__(
        self, base_url: str, client: httpx.AsyncClient, *, token: str | None = None, timeout_s: float = 10.0
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._client = client
        self._token = token
        self._timeout_s = timeout_s

    def _headers(self, request_id: str | None = None, device_id: str | None = None) -> dict[str, str]:
        headers = {}
        if self._token:
            headers[INTERNAL_TOKEN_HEADER] = self._token
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        if device_id:
            headers[DEVICE_ID_HEADER] = device_id
        return headers

    async def deliver(self, entry: OutboxEntry) -> Delivery:
        path = PATH_BY_KIND.get(entry.kind)
        if path is None:
            return Delivery(DeliveryOutcome.REJECTED, f"unknown kind {entry.kind!r}")
        try:
            response = await self._client.post(
                self._base_url + path,
                json=entry.payload,
                headers=self._headers(entry.request_id, entry.device_id),
                timeout=self._timeout_s,
            )
        except httpx.TimeoutException:
            return Delivery(DeliveryOutcome.RETRY, "storage timed out")
        except httpx.HTTPError as exc:
            return Delivery(DeliveryOutcome.RETRY, f"storage unreachable: {type(exc).__name__}")
        outcome = classify_status(response.status_code)
        detail = "" if outcome is DeliveryOutcome.DELIVERED else f"HTTP {response.status_code}: {response.text[:300]}"
        return Delivery(outcome, detail)

    async def list_all(self, kind: str, page_size: int = 500, **filters: str) -> list[dict[str, Any]]:
        """Every record of ``kind`` matching ``filters`` (follows the pages); raises on HTTP errors."""
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            params = {**filters, "limit": str(page_size), "offset": str(offset)}
            response = await self._client.get(
                self._base_url + PATH_BY_KIND[kind], params=params, headers=self._headers(), timeout=self._timeout_s
            )
            response.raise_for_status()
            page = response.json()
            items.extend(page["items"])
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                return items


def _fields(**fields: Any) -> dict[str, Any]:
    return {name: jsonable(value) for name, value in fields.items() if value is not None}


def outbox_path(outbox_dir: str | Path, service: str) -> Path:
    return Path(outbox_dir) / f"{service}{OUTBOX_FILE_SUFFIX}"


class StorageRecorder:
    """Typed writes into storage through an `Outbox`. Every method returns True once the write is
    queued on local disk, False (and logs) if even that failed; none raises and none waits for storage."""

    def __init__(self, outbox: Outbox, *, owned_client: httpx.AsyncClient | None = None) -> None:
        self.outbox = outbox
        self._owned_client = owned_client
        self._background: set[asyncio.Task[bool]] = set()

    @classmethod
    async def open(
        cls,
        service: str,
        *,
        storage_url: str,
        outbox_dir: str | Path,
        token: str | None = None,
        timeout_s: float = 10.0,
        backoff: Backoff = DEFAULT_BACKOFF,
        client: httpx.AsyncClient | None = None,
    ) -> StorageRecorder:
        """Open ``<outbox_dir>/<service>.outbox.sqlite3`` and start delivering to ``storage_url``."""
        owned = None if client is not None else httpx.AsyncClient()
        http = client if client is not None else owned
        assert http is not None
        storage = StorageClient(storage_url, http, token=token, timeout_s=timeout_s)
        try:
            outbox = await Outbox.open(outbox_path(outbox_dir, service), storage.deliver, backoff=backoff,
                                       name=f"{service}-outbox")  # fmt: skip
        except BaseException:
            if owned is not None:
                await owned.aclose()
            raise
        return cls(outbox, owned_client=owned)

    @classmethod
    async def from_settings(cls, service: str, settings: Any) -> StorageRecorder | None:
        """The recorder a service's lifespan opens: None (recording off, logged) when ``OUTBOX_DIR`` is unset.

        ``settings`` needs ``outbox_dir``, ``storage_url`` and ``internal_auth_token``.
        """
        if settings.outbox_dir is None:
            logger.info("recording into storage is off: OUTBOX_DIR is not set")
            return None
        recorder = await cls.open(
            service,
            storage_url=settings.storage_url,
            outbox_dir=settings.outbox_dir,
            token=settings.internal_auth_token,
        )
        logger.info("recording into storage at %s through %s", settings.storage_url, settings.outbox_dir)
        return recorder

    def in_background(self, write: Coroutine[Any, Any, bool]) -> None:
        """Run one recorder call without awaiting it, from code that cannot await (a sync callback):
        ``recorder.in_background(recorder.device_seen(device_id))``. `aclose` waits for these."""
        task = asyncio.get_running_loop().create_task(write)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def aclose(self, drain_timeout_s: float = 1.0) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        try:
            await self.outbox.aclose(drain_timeout_s)
        finally:
            if self._owned_client is not None:
                await self._owned_client.aclose()

    async def status(self) -> dict[str, int]:
        """``{"pending": n, "dead": m}`` for a service's health output."""
        pending, dead = await self.outbox.counts()
        return {"pending": pending, "dead": dead}

    async def _put(self, kind: str, key: str, payload: dict[str, Any]) -> bool:
        try:
            await self.outbox.put(kind, key, payload)
        except Exception:
            logger.exception("could not queue %s %s for storage", kind, key)
            return False
        return True

    async def device_seen(
        self, device_id: str, at: datetime | None = None, *, meta: dict[str, Any] | None = None
    ) -> bool:
        """The device was seen at ``at`` (default now): widens its first/last-seen window."""
        at = at or datetime.now(UTC)
        payload = _fields(device_id=device_id, first_seen_at=at, last_seen_at=at, meta=meta)
        return await self._put("device", device_id, payload)

    async def devices_seen(self, windows: Mapping[str, tuple[datetime, datetime]]) -> bool:
        """Many devices' seen windows (``device_id -> (first, last)``) as one bulk write: a connect storm
        of 1000 phones costs storage one request instead of 1000 (at most 1000 devices per call)."""
        if not windows:
            return True
        devices = [
            _fields(device_id=device_id, first_seen_at=first, last_seen_at=last)
            for device_id, (first, last) in windows.items()
        ]
        key = f"{len(devices)} devices from {devices[0]['device_id']}"
        return await self._put("device_batch", key, {"devices": devices})

    async def lobby(
        self,
        lobby_id: str,
        *,
        code: str | None = None,
        admin_device_id: str | None = None,
        status: str | None = None,
        opened_at: datetime | None = None,
        closed_at: datetime | None = None,
        meta: dict[str, Any] | None = None,
    ) -> bool:
        payload = _fields(lobby_id=lobby_id, code=code, admin_device_id=admin_device_id, status=status,
                          opened_at=opened_at, closed_at=closed_at, meta=meta)  # fmt: skip
        return await self._put("lobby", lobby_id, payload)

    async def participant(
        self,
        lobby_id: str,
        device_id: str,
        *,
        role: str | None = None,
        role_slot_id: str | None = None,
        joined_at: datetime | None = None,
        left_at: datetime | None = None,
        meta: dict[str, Any] | None = None,
    ) -> bool:
        """Record the lobby (`lobby`) first: storage refuses a participant of an unknown lobby."""
        payload = _fields(lobby_id=lobby_id, device_id=device_id, role=role, role_slot_id=role_slot_id,
                          joined_at=joined_at, left_at=left_at, meta=meta)  # fmt: skip
        return await self._put("participant", f"{lobby_id}/{device_id}", payload)

    async def measurement(
        self,
        job_id: str,
        upload_name: str,
        *,
        lobby_id: str | None = None,
        device_id: str | None = None,
        speaker_slot_id: str | None = None,
        mic_slot_id: str | None = None,
        signal_id: str | None = None,
        sample_rate_hz: int | None = None,
        duration_s: float | None = None,
        size_bytes: int | None = None,
        recorded_at: datetime | None = None,
        meta: dict[str, Any] | None = None,
    ) -> bool:
        payload = _fields(job_id=job_id, upload_name=upload_name, lobby_id=lobby_id, device_id=device_id,
                          speaker_slot_id=speaker_slot_id, mic_slot_id=mic_slot_id, signal_id=signal_id,
                          sample_rate_hz=sample_rate_hz, duration_s=duration_s, size_bytes=size_bytes,
                          recorded_at=recorded_at, meta=meta)  # fmt: skip
        return await self._put("measurement", f"{job_id}/{upload_name}", payload)

    async def analysis_output(
        self,
        job_id: str,
        upload_name: str,
        analysis_run: str,
        *,
        status: str = "ok",
        error: str | None = None,
        speaker_slot_id: str | None = None,
        mic_slot_id: str | None = None,
        metrics: dict[str, Any] | None = None,
        quality: dict[str, Any] | None = None,
    ) -> bool:
        """One recording's result of one analysis run; record the `measurement` first."""
        payload = _fields(job_id=job_id, upload_name=upload_name, analysis_run=analysis_run, status=status,
                          error=error, speaker_slot_id=speaker_slot_id, mic_slot_id=mic_slot_id,
                          metrics=metrics, quality=quality)  # fmt: skip
        return await self._put("analysis_output", f"{job_id}/{upload_name}/{analysis_run}", payload)

    async def simulation_job(
        self,
        job_id: str,
        *,
        status: str | None = None,
        method: str | None = None,
        device_id: str | None = None,
        lobby_id: str | None = None,
        error: str | None = None,
        completed_at: datetime | None = None,
        request: dict[str, Any] | None = None,
        summary: dict[str, Any] | None = None,
    ) -> bool:
        """``job_id``: letters, digits and ``._:-``, at most 128 characters (a UUID fits)."""
        payload = _fields(id=job_id, status=status, method=method, device_id=device_id, lobby_id=lobby_id,
                          error=error, completed_at=completed_at, request=request, summary=summary)  # fmt: skip
        return await self._put("simulation_job", job_id, payload)

    async def simulation_result(
        self,
        result_id: str,
        job_id: str,
        *,
        source_id: str | None = None,
        microphone_id: str | None = None,
        metrics: dict[str, Any] | None = None,
        payload: dict[str, Any] | None = None,
    ) -> bool:
        """Record the `simulation_job` first; ``result_id`` such as ``f"{job_id}:{pair_index}"``."""
        body = _fields(id=result_id, job_id=job_id, source_id=source_id, microphone_id=microphone_id,
                       metrics=metrics, payload=payload)  # fmt: skip
        return await self._put("simulation_result", result_id, body)


async def outbox_health(recorder: StorageRecorder | None) -> dict[str, int] | None:
    """What ``/health`` shows as ``outbox``: the recorder's pending and dead counts, None when recording is off."""
    if recorder is None:
        return None
    try:
        return await recorder.status()
    except Exception:  # a closed or broken queue file must not fail the health check
        logger.exception("outbox counts unavailable")
        return None
