"""`stop_when_client_leaves(request)`: cancel a request's work the moment its HTTP client disconnects.

uvicorn does not cancel an endpoint whose client has gone; it only drops the answer. For heavy work (a
simulation, an analysis) that is a worker computing for no one, so such endpoints wrap the work::

    async with stop_when_client_leaves(request):
        return await service.run(body)

A watcher task waits on the request's ``receive`` (which, once the body is read, yields only
``http.disconnect``) and cancels the endpoint's task; the pools turn that cancellation into ending the
worker process. The block then raises `ClientGone` (nobody reads it; the log shows a 400, not a 500).
Only for endpoints whose body has been read (FastAPI reads a declared body before the call), that have
none (the watcher drains what the client still sends), or that say when theirs is read (``after``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager

from starlette.requests import Request
from starlette.types import Receive

from sonalyze_protocol.errors import BadRequest
from sonalyze_protocol.handlers import ContextFactory, GatewayRequest, RequestContext


class ClientGone(BadRequest):
    """The client closed its connection before the answer; its work was stopped."""


async def _wait_for_disconnect(receive: Receive) -> bool:
    """True once the client has gone; False when ``receive`` cannot tell (then nothing is stopped)."""
    try:
        while (await receive())["type"] != "http.disconnect":
            pass  # the rest of a body nobody reads
    except Exception:
        return False
    return True


@asynccontextmanager
async def stop_when_client_leaves(request: Request, after: asyncio.Event | None = None) -> AsyncIterator[None]:
    """Cancel the enclosed block when ``request``'s client disconnects; it then raises `ClientGone`.

    ``after``: set once the block has read the request's body itself (a proxy streaming it on); the
    watcher listens only from then on."""
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        if after is not None:
            await after.wait()
        if await _wait_for_disconnect(request.receive):
            gone = True
            task.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        yield
    except asyncio.CancelledError:
        # the watcher only runs while the block awaits, so its cancellation always lands in the block
        if gone and task.uncancel() == 0:
            raise ClientGone("the client closed the connection; its work was stopped") from None
        raise
    finally:
        watcher.cancel()


def stopped_when_caller_leaves(events: Collection[str] | None = None) -> ContextFactory[RequestContext]:
    """The context factory of ``/gateway/handle`` for services whose events run heavy work: the gateway
    closes its connection when the phone's socket closes or its own timeout passes, and the work of
    ``events`` (all when None) stops; the other events run to the end as usual."""

    @asynccontextmanager
    async def factory(request: Request, body: GatewayRequest) -> AsyncIterator[RequestContext]:
        context = RequestContext(device_id=body.device_id, request_id=body.request_id, state=request.app.state)
        if events is not None and body.event not in events:
            yield context
            return
        async with stop_when_client_leaves(request):
            yield context

    return factory
