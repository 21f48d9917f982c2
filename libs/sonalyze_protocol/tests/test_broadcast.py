import json

import httpx

from sonalyze_protocol.broadcast import BroadcastClient


class TestBroadcastClient:
    async def test_posts_devices_event_and_token(self) -> None:
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(200, json={"delivered": ["a"], "offline": ["b"]})

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            result = await BroadcastClient("http://gw/", "tok", http).push(["a", "b", "a"], "lobby.updated", {"x": 1})
        assert result is not None and result.delivered == ["a"] and result.offline == ["b"]
        assert str(seen[0].url) == "http://gw/internal/broadcast"
        assert seen[0].headers["X-Internal-Token"] == "tok"
        assert json.loads(seen[0].content) == {"device_ids": ["a", "b"], "event": "lobby.updated", "data": {"x": 1}}

    async def test_gateway_down_is_reported_not_raised(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused")

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            assert await BroadcastClient("http://gw", "tok", http).push(["a"], "e", {}) is None

    async def test_gateway_error_status_is_reported_not_raised(self) -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(401))) as http:
            assert await BroadcastClient("http://gw", "bad", http).push(["a"], "e", {}) is None

    async def test_no_devices_sends_nothing(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            raise AssertionError("must not be called")

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            result = await BroadcastClient("http://gw", "tok", http).push([], "e", {})
        assert result is not None and result.delivered == []

    async def test_several_gateways_the_next_one_takes_over_when_one_is_down(self) -> None:
        seen: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request.url.host)
            if request.url.host == "gw1":
                raise httpx.ConnectError("refused")
            return httpx.Response(200, json={"delivered": ["a"], "offline": []})

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            client = BroadcastClient("http://gw1/, http://gw2", "tok", http)
            first = await client.push(["a"], "e", {})
            second = await client.push(["a"], "e", {})
        assert first is not None and first.delivered == ["a"] and second is not None
        assert seen == ["gw1", "gw2", "gw2"]  # the one that answered is kept

    async def test_a_gateway_that_drops_the_connection_mid_request_hands_over_but_a_timeout_does_not(self) -> None:
        seen: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(str(request.url.host))
            if request.url.host == "gw1":
                raise httpx.ReadError("connection reset by peer")
            if request.url.host == "slow":
                raise httpx.ReadTimeout("no answer")
            return httpx.Response(200, json={"delivered": ["a"], "offline": []})

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            handed = await BroadcastClient("http://gw1,http://gw2", "tok", http).push(["a"], "e", {})
            slow = await BroadcastClient("http://slow,http://gw2", "tok", http).push(["a"], "e", {})
        assert handed is not None and handed.delivered == ["a"] and slow is None
        assert seen == ["gw1", "gw2", "slow"]
