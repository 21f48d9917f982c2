"""Receiving an upload: stream the body to a temporary file, count bytes, validate, then publish.

The body is a raw audio file or ``multipart/form-data`` with the file in field ``file``. The size
limit is checked against ``Content-Length`` before a byte is read and again while streaming (a client
may lie or send chunked); nothing is renamed into ``uploads/`` until the whole body has arrived and
reads as a valid recording, and the temporary file is removed on every failure.
"""

from __future__ import annotations

import asyncio
from typing import IO, TYPE_CHECKING, Final

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from sonalyze_measurement.analysis.io import AudioRejected, inspect_audio
from sonalyze_measurement.storage import JobStore, check_upload_name
from sonalyze_protocol.errors import BadRequest, MessageTooLarge

if TYPE_CHECKING:  # the library declares its callback types for type checkers only
    from python_multipart.multipart import MultipartCallbacks

MULTIPART_OVERHEAD_BYTES: Final = 64 * 1024
"""Room for boundaries, part headers and small extra fields around the file in a multipart body."""
FILE_FIELD: Final = "file"


async def receive_upload(request: Request, jobs: JobStore, job_id: str, name: str, max_bytes: int) -> None:
    """Store the request's recording as upload ``name`` of ``job_id``; raises `AppError` subclasses."""
    check_upload_name(name)
    jobs.job_dir(job_id)
    content_type = request.headers.get("content-type", "")
    media_type, options = parse_options_header(content_type)
    multipart = media_type == b"multipart/form-data"
    limit = max_bytes + (MULTIPART_OVERHEAD_BYTES if multipart else 0)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(max_bytes)

    temp_path = jobs.new_temp_path(job_id)
    try:
        with open(temp_path, "wb") as handle:  # noqa: ASYNC230 (chunked writes of at most 64 KiB)
            if multipart:
                boundary = options.get(b"boundary")
                if not boundary:
                    raise BadRequest("multipart body without a boundary")
                await _stream_multipart(request, handle, boundary, max_bytes)
            else:
                await _stream_raw(request, handle, max_bytes)
        try:
            await asyncio.to_thread(inspect_audio, temp_path)
        except AudioRejected as exc:
            raise BadRequest(str(exc)) from None
        jobs.commit_upload(job_id, name, temp_path)
    except ClientDisconnect:
        raise BadRequest("the client disconnected before the upload was complete") from None
    finally:
        temp_path.unlink(missing_ok=True)


async def _stream_raw(request: Request, handle: IO[bytes], max_bytes: int) -> None:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_bytes:
            raise _too_large(max_bytes)
        handle.write(chunk)


async def _stream_multipart(request: Request, handle: IO[bytes], boundary: bytes, max_bytes: int) -> None:
    part = _FilePart(handle, max_bytes)
    parser = MultipartParser(boundary, part.callbacks())
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_bytes + MULTIPART_OVERHEAD_BYTES:
            raise _too_large(max_bytes)
        try:
            parser.write(chunk)
        except Exception as exc:  # python-multipart raises its own parse errors
            raise BadRequest(f"malformed multipart body: {exc}") from None
        if part.too_large:
            raise _too_large(max_bytes)
    parser.finalize()
    if not part.found:
        raise BadRequest(f"multipart body has no field {FILE_FIELD!r}")
    if not part.complete:
        raise BadRequest("multipart body ended in the middle of the file")


class _FilePart:
    """Callbacks for python-multipart that write the part named ``file`` to ``handle``."""

    def __init__(self, handle: IO[bytes], max_bytes: int) -> None:
        self.handle = handle
        self.max_bytes = max_bytes
        self.found = False
        self.complete = False
        self.too_large = False
        self._field = bytearray()
        self._value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._writing = False
        self._written = 0

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_end(self) -> None:
        self._headers[bytes(self._field).lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._writing = options.get(b"name") == FILE_FIELD.encode() and not self.found
        if self._writing:
            self.found = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._writing or self.too_large:
            return
        self._written += end - start
        if self._written > self.max_bytes:
            self.too_large = True
            return
        self.handle.write(data[start:end])

    def _part_end(self) -> None:
        if self._writing:
            self.complete = True
        self._writing = False


def _too_large(max_bytes: int) -> MessageTooLarge:
    return MessageTooLarge(f"upload exceeds MEASUREMENT_MAX_UPLOAD_MB ({max_bytes / 1024 / 1024:g} MB)")
