"""The five operations on every entity, through the app: create, upsert, get, patch, delete, list, errors."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

Builders = Any  # conftest.Builders, the `make` fixture


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Case:
    """How to exercise one entity generically."""

    path: str
    build: str  # the Builders method
    natural_key: tuple[str, ...]
    change: dict[str, Any]  # a patchable field and a new value for it
    required: str | None  # a create field that may not be missing
    not_null: str  # a field a PATCH may omit but not null
    group: Callable[[Builders, int], Awaitable[tuple[dict[str, str], list[dict[str, Any]]]]]


async def _devices(make: Builders, n: int) -> tuple[dict[str, str], list[dict[str, Any]]]:
    since = datetime.now(UTC).isoformat()
    return {"created_after": since}, [await make.device() for _ in range(n)]


async def _lobbies(make: Builders, n: int) -> tuple[dict[str, str], list[dict[str, Any]]]:
    admin = unique("admin")
    return {"admin_device_id": admin}, [await make.lobby(admin_device_id=admin) for _ in range(n)]


async def _participants(make: Builders, n: int) -> tuple[dict[str, str], list[dict[str, Any]]]:
    lobby_id = (await make.lobby())["lobby_id"]
    return {"lobby_id": lobby_id}, [await make.participant(lobby_id=lobby_id) for _ in range(n)]


async def _measurements(make: Builders, n: int) -> tuple[dict[str, str], list[dict[str, Any]]]:
    job_id = unique("job")
    return {"job_id": job_id}, [await make.measurement(job_id=job_id) for _ in range(n)]


async def _analysis_outputs(make: Builders, n: int) -> tuple[dict[str, str], list[dict[str, Any]]]:
    measurement_id = (await make.measurement())["id"]
    return {"measurement_id": measurement_id}, [
        await make.analysis_output(measurement_id=measurement_id) for _ in range(n)
    ]


async def _simulation_jobs(make: Builders, n: int) -> tuple[dict[str, str], list[dict[str, Any]]]:
    device_id = unique("dev")
    return {"device_id": device_id}, [await make.simulation_job(device_id=device_id) for _ in range(n)]


async def _simulation_results(make: Builders, n: int) -> tuple[dict[str, str], list[dict[str, Any]]]:
    job_id = (await make.simulation_job())["id"]
    return {"job_id": job_id}, [await make.simulation_result(job_id=job_id) for _ in range(n)]


CASES = [
    Case("/v1/devices", "device", ("device_id",), {"meta": {"model": "Pixel 8"}}, "device_id", "device_id", _devices),
    Case("/v1/lobbies", "lobby", ("lobby_id",), {"status": "closed"}, "lobby_id", "lobby_id", _lobbies),
    Case("/v1/participants", "participant", ("lobby_id", "device_id"), {"role": "microphone"}, "device_id",
         "device_id", _participants),
    Case("/v1/measurements", "measurement", ("job_id", "upload_name"), {"sample_rate_hz": 44100}, "upload_name",
         "job_id", _measurements),
    Case("/v1/analysis-outputs", "analysis_output", ("measurement_id", "analysis_run"), {"status": "failed"},
         "analysis_run", "metrics", _analysis_outputs),
    Case("/v1/simulation-jobs", "simulation_job", ("id",), {"status": "done"}, None, "status", _simulation_jobs),
    Case("/v1/simulation-results", "simulation_result", ("id",), {"source_id": "s2"}, "job_id", "job_id",
         _simulation_results),
]  # fmt: skip
IDS = [case.path.removeprefix("/v1/") for case in CASES]


def error_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
class TestCreateAndRead:
    async def test_post_answers_201_and_get_returns_the_record(
        self, case: Case, make: Builders, client: httpx.AsyncClient
    ) -> None:
        created = await getattr(make, case.build)()
        got = await client.get(f"{case.path}/{created['id']}")
        assert got.status_code == 200
        assert got.json() == created
        assert created["created_at"].endswith("Z") or created["created_at"].endswith("+00:00")

    async def test_post_with_an_existing_key_updates_it_with_200(
        self, case: Case, make: Builders, client: httpx.AsyncClient
    ) -> None:
        created = await getattr(make, case.build)()
        key = {name: created[name] for name in case.natural_key}
        if case.path == "/v1/analysis-outputs":  # names its measurement by (job_id, upload_name) this time
            key = {name: created[name] for name in ("job_id", "upload_name", "analysis_run")}
        if case.path == "/v1/simulation-results":
            key["job_id"] = created["job_id"]
        again = await client.post(case.path, json={**key, **case.change})
        assert again.status_code == 200, again.text
        assert again.json()["id"] == created["id"]
        for name, value in case.change.items():
            assert again.json()[name] == value
        listed = await client.get(case.path, params={"created_after": "2000-01-01T00:00:00Z", "limit": 500})
        same = [item for item in listed.json()["items"] if all(item[k] == created[k] for k in case.natural_key)]
        assert len(same) == 1

    async def test_get_of_an_unknown_id_is_404(self, case: Case, client: httpx.AsyncClient) -> None:
        response = await client.get(f"{case.path}/{unique('missing')}")
        assert response.status_code == 404
        assert error_code(response) == "not_found"


@pytest.mark.parametrize("case", CASES, ids=IDS)
class TestPatchAndDelete:
    async def test_patch_changes_only_the_given_fields(
        self, case: Case, make: Builders, client: httpx.AsyncClient
    ) -> None:
        created = await getattr(make, case.build)()
        response = await client.patch(f"{case.path}/{created['id']}", json=case.change)
        assert response.status_code == 200, response.text
        body = response.json()
        for name, value in created.items():
            expected = case.change.get(name, value)
            if name != "updated_at":
                assert body[name] == expected, name
        assert (await client.get(f"{case.path}/{created['id']}")).json() == body

    async def test_patch_with_null_for_a_required_field_is_422(
        self, case: Case, make: Builders, client: httpx.AsyncClient
    ) -> None:
        created = await getattr(make, case.build)()
        response = await client.patch(f"{case.path}/{created['id']}", json={case.not_null: None})
        assert response.status_code == 422
        assert error_code(response) == "bad_request"

    async def test_patch_and_delete_of_an_unknown_id_are_404(self, case: Case, client: httpx.AsyncClient) -> None:
        missing = f"{case.path}/{unique('missing')}"
        assert (await client.patch(missing, json=case.change)).status_code == 404
        response = await client.delete(missing)
        assert response.status_code == 404
        assert error_code(response) == "not_found"

    async def test_delete_answers_204_then_the_record_is_gone(
        self, case: Case, make: Builders, client: httpx.AsyncClient
    ) -> None:
        created = await getattr(make, case.build)()
        response = await client.delete(f"{case.path}/{created['id']}")
        assert response.status_code == 204
        assert (await client.get(f"{case.path}/{created['id']}")).status_code == 404


WITH_REQUIRED = [case for case in CASES if case.required]  # a simulation job has no required field


@pytest.mark.parametrize("case", WITH_REQUIRED, ids=[c.path.removeprefix("/v1/") for c in WITH_REQUIRED])
class TestMissingFields:
    async def test_a_missing_required_field_is_422(self, case: Case, make: Builders, client: httpx.AsyncClient) -> None:
        created = await getattr(make, case.build)()
        body = {k: v for k, v in created.items() if k in case.natural_key and k != case.required}
        body.pop("measurement_id", None)
        response = await client.post(case.path, json=body)
        assert response.status_code == 422
        assert error_code(response) == "bad_request"
        assert f"body.{case.required}: Field required" in response.json()["error"]["message"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
class TestInvalidBodies:
    async def test_an_unknown_field_is_422(self, case: Case, client: httpx.AsyncClient) -> None:
        response = await client.post(case.path, json={"no_such_field": 1})
        assert response.status_code == 422
        assert "no_such_field" in response.text

    async def test_a_field_of_the_wrong_type_is_422(
        self, case: Case, make: Builders, client: httpx.AsyncClient
    ) -> None:
        created = await getattr(make, case.build)()
        name = next(iter(case.change))
        response = await client.patch(f"{case.path}/{created['id']}", json={name: [1, 2]})
        assert response.status_code == 422
        assert error_code(response) == "bad_request"

    async def test_a_body_that_is_not_json_is_422(self, case: Case, client: httpx.AsyncClient) -> None:
        response = await client.post(case.path, content=b"{not json", headers={"content-type": "application/json"})
        assert response.status_code == 422
        assert error_code(response) == "bad_request"


@pytest.mark.parametrize("case", CASES, ids=IDS)
class TestList:
    async def test_filter_selects_the_group_oldest_first(
        self, case: Case, make: Builders, client: httpx.AsyncClient
    ) -> None:
        await getattr(make, case.build)()  # outside the group
        params, records = await case.group(make, 3)
        response = await client.get(case.path, params=params)
        assert response.status_code == 200
        page = response.json()
        assert [item["id"] for item in page["items"]] == [r["id"] for r in records]
        assert page["total"] == 3

    async def test_pages_walk_the_list_without_gaps_or_repeats(
        self, case: Case, make: Builders, client: httpx.AsyncClient
    ) -> None:
        params, records = await case.group(make, 5)
        seen: list[str] = []
        for offset in (0, 2, 4):
            page = (await client.get(case.path, params={**params, "limit": 2, "offset": offset})).json()
            assert page["total"] == 5
            assert (page["limit"], page["offset"]) == (2, offset)
            seen += [item["id"] for item in page["items"]]
        assert seen == [r["id"] for r in records]
        beyond = (await client.get(case.path, params={**params, "offset": 5})).json()
        assert beyond["items"] == [] and beyond["total"] == 5

    async def test_created_after_excludes_older_records(
        self, case: Case, make: Builders, client: httpx.AsyncClient
    ) -> None:
        params, records = await case.group(make, 3)
        after = records[0]["created_at"]
        page = (await client.get(case.path, params={**params, "created_after": after})).json()
        assert [item["id"] for item in page["items"]] == [r["id"] for r in records[1:]]

    @pytest.mark.parametrize("query", [{"limit": 501}, {"limit": 0}, {"offset": -1}, {"created_after": "yesterday"}])
    async def test_out_of_range_paging_or_bad_filters_are_422(
        self, case: Case, client: httpx.AsyncClient, query: dict[str, Any]
    ) -> None:
        response = await client.get(case.path, params=query)
        assert response.status_code == 422
        assert error_code(response) == "bad_request"

    async def test_an_unknown_filter_is_422(self, case: Case, client: httpx.AsyncClient) -> None:
        response = await client.get(case.path, params={"colour": "blue"})
        assert response.status_code == 422

    async def test_the_maximum_page_size_is_accepted(self, case: Case, client: httpx.AsyncClient) -> None:
        response = await client.get(case.path, params={"limit": 500})
        assert response.status_code == 200
        assert len(response.json()["items"]) <= 500
