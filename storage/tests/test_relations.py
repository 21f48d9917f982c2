"""Foreign keys, natural keys and the upsert rules each entity adds to the generic ones."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

Builders = Any  # conftest.Builders, the `make` fixture


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def error_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


class TestMissingParents:
    async def test_a_participant_of_an_unknown_lobby_is_409(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/participants", json={"lobby_id": unique("lobby"), "device_id": "d"})
        assert response.status_code == 409
        assert error_code(response) == "conflict"
        assert "lobby" in response.json()["error"]["message"]

    async def test_an_analysis_output_of_an_unknown_measurement_is_409(self, client: httpx.AsyncClient) -> None:
        by_key = {"job_id": unique("job"), "upload_name": "a.wav", "analysis_run": "r"}
        by_id = {"measurement_id": unique("m"), "analysis_run": "r"}
        for body in (by_key, by_id):
            response = await client.post("/v1/analysis-outputs", json=body)
            assert response.status_code == 409, body
            assert error_code(response) == "conflict"

    async def test_a_simulation_result_of_an_unknown_job_is_409(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/simulation-results", json={"job_id": unique("sim")})
        assert response.status_code == 409
        assert error_code(response) == "conflict"

    async def test_patching_a_participant_into_an_unknown_lobby_is_409(
        self, make: Builders, client: httpx.AsyncClient
    ) -> None:
        participant = await make.participant()
        response = await client.patch(f"/v1/participants/{participant['id']}", json={"lobby_id": unique("lobby")})
        assert response.status_code == 409
        assert error_code(response) == "conflict"
        assert (await client.get(f"/v1/participants/{participant['id']}")).json() == participant

    async def test_patching_a_simulation_result_onto_an_unknown_job_is_409(
        self, make: Builders, client: httpx.AsyncClient
    ) -> None:
        result = await make.simulation_result()
        response = await client.patch(f"/v1/simulation-results/{result['id']}", json={"job_id": unique("sim")})
        assert response.status_code == 409


class TestDuplicateNaturalKeys:
    async def test_patching_a_lobby_to_another_lobbys_id_is_409(
        self, make: Builders, client: httpx.AsyncClient
    ) -> None:
        first, second = await make.lobby(), await make.lobby()
        response = await client.patch(f"/v1/lobbies/{second['id']}", json={"lobby_id": first["lobby_id"]})
        assert response.status_code == 409
        assert error_code(response) == "conflict"

    async def test_patching_a_measurement_onto_another_upload_is_409(
        self, make: Builders, client: httpx.AsyncClient
    ) -> None:
        first = await make.measurement()
        second = await make.measurement(job_id=first["job_id"])
        response = await client.patch(f"/v1/measurements/{second['id']}", json={"upload_name": first["upload_name"]})
        assert response.status_code == 409

    async def test_patching_a_participant_onto_another_device_of_the_lobby_is_409(
        self, make: Builders, client: httpx.AsyncClient
    ) -> None:
        first = await make.participant()
        second = await make.participant(lobby_id=first["lobby_id"])
        response = await client.patch(f"/v1/participants/{second['id']}", json={"device_id": first["device_id"]})
        assert response.status_code == 409

    async def test_patching_an_analysis_run_onto_an_existing_run_is_409(
        self, make: Builders, client: httpx.AsyncClient
    ) -> None:
        first = await make.analysis_output()
        second = await make.analysis_output(measurement_id=first["measurement_id"])
        response = await client.patch(
            f"/v1/analysis-outputs/{second['id']}", json={"analysis_run": first["analysis_run"]}
        )
        assert response.status_code == 409

    async def test_concurrent_posts_of_one_key_make_one_record(self, client: httpx.AsyncClient) -> None:
        body = {"job_id": unique("job"), "upload_name": "same.wav", "sample_rate_hz": 48000}
        responses = await asyncio.gather(*(client.post("/v1/measurements", json=body) for _ in range(8)))
        assert sorted(r.status_code for r in responses).count(201) == 1
        assert {r.status_code for r in responses} <= {200, 201}
        listed = (await client.get("/v1/measurements", params={"job_id": body["job_id"]})).json()
        assert listed["total"] == 1


class TestCascades:
    async def test_deleting_a_lobby_deletes_its_participants(self, make: Builders, client: httpx.AsyncClient) -> None:
        participant = await make.participant()
        lobby = (await client.get("/v1/lobbies", params={"lobby_id": participant["lobby_id"]})).json()["items"][0]
        assert (await client.delete(f"/v1/lobbies/{lobby['id']}")).status_code == 204
        assert (await client.get(f"/v1/participants/{participant['id']}")).status_code == 404

    async def test_renaming_a_lobby_carries_its_participants_along(
        self, make: Builders, client: httpx.AsyncClient
    ) -> None:
        participant = await make.participant()
        lobby = (await client.get("/v1/lobbies", params={"lobby_id": participant["lobby_id"]})).json()["items"][0]
        renamed = unique("lobby")
        assert (await client.patch(f"/v1/lobbies/{lobby['id']}", json={"lobby_id": renamed})).status_code == 200
        assert (await client.get(f"/v1/participants/{participant['id']}")).json()["lobby_id"] == renamed

    async def test_deleting_a_measurement_deletes_its_analysis_outputs(
        self, make: Builders, client: httpx.AsyncClient
    ) -> None:
        output = await make.analysis_output()
        assert (await client.delete(f"/v1/measurements/{output['measurement_id']}")).status_code == 204
        assert (await client.get(f"/v1/analysis-outputs/{output['id']}")).status_code == 404

    async def test_renaming_an_upload_carries_its_analysis_outputs_along(
        self, make: Builders, client: httpx.AsyncClient
    ) -> None:
        output = await make.analysis_output()
        new_name = unique("renamed") + ".wav"
        response = await client.patch(f"/v1/measurements/{output['measurement_id']}", json={"upload_name": new_name})
        assert response.status_code == 200
        assert (await client.get(f"/v1/analysis-outputs/{output['id']}")).json()["upload_name"] == new_name

    async def test_deleting_a_simulation_job_deletes_its_results(
        self, make: Builders, client: httpx.AsyncClient
    ) -> None:
        result = await make.simulation_result()
        assert (await client.delete(f"/v1/simulation-jobs/{result['job_id']}")).status_code == 204
        assert (await client.get(f"/v1/simulation-results/{result['id']}")).status_code == 404


class TestUpsertRules:
    async def test_device_seen_widens_the_window_in_any_order(self, client: httpx.AsyncClient) -> None:
        device_id = unique("dev")
        for at in ("2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"):
            response = await client.post("/v1/devices", json={"device_id": device_id, "first_seen_at": at,
                                                              "last_seen_at": at})  # fmt: skip
            assert response.status_code in (200, 201)
        device = response.json()
        assert device["first_seen_at"].startswith("2026-01-01T00:00:00")
        assert device["last_seen_at"].startswith("2026-01-03T00:00:00")

    async def test_bulk_devices_create_and_widen_in_one_request(self, client: httpx.AsyncClient) -> None:
        known, new = unique("dev"), unique("dev")
        await client.post("/v1/devices", json={"device_id": known, "first_seen_at": "2026-01-02T00:00:00Z",
                                               "last_seen_at": "2026-01-02T00:00:00Z", "meta": {"os": "x"}})  # fmt: skip
        body = {"devices": [
            {"device_id": known, "first_seen_at": "2026-01-01T00:00:00Z", "last_seen_at": "2026-01-01T12:00:00Z"},
            {"device_id": new, "first_seen_at": "2026-01-05T00:00:00Z", "last_seen_at": "2026-01-05T00:00:00Z"},
            {"device_id": new, "first_seen_at": "2026-01-04T00:00:00Z", "last_seen_at": "2026-01-06T00:00:00Z"},
        ]}  # fmt: skip
        response = await client.post("/v1/devices/bulk", json=body)
        assert (response.status_code, response.json()) == (200, {"created": 1, "updated": 1})
        again = await client.post("/v1/devices/bulk", json=body)  # redelivered: nothing changes
        assert again.json() == {"created": 0, "updated": 2}
        stored = {
            d: (await client.get("/v1/devices", params={"device_id": d})).json()["items"][0] for d in (known, new)
        }
        assert stored[known]["first_seen_at"].startswith("2026-01-01T00:00:00")
        assert stored[known]["last_seen_at"].startswith("2026-01-02T00:00:00")  # a late write never narrows it
        assert stored[known]["meta"] == {"os": "x"}
        assert stored[new]["first_seen_at"].startswith("2026-01-04T00:00:00")
        assert stored[new]["last_seen_at"].startswith("2026-01-06T00:00:00")

    async def test_bulk_devices_set_meta_and_leave_unchanged_records_unwritten(self, client: httpx.AsyncClient) -> None:
        device = unique("dev")
        seen = {"device_id": device, "first_seen_at": "2026-01-02T00:00:00Z", "last_seen_at": "2026-01-03T00:00:00Z"}
        await client.post("/v1/devices/bulk", json={"devices": [seen]})
        before = (await client.get("/v1/devices", params={"device_id": device})).json()["items"][0]
        inside = {**seen, "first_seen_at": "2026-01-02T12:00:00Z"}  # inside the stored window: no change
        assert (await client.post("/v1/devices/bulk", json={"devices": [inside]})).json() == {
            "created": 0,
            "updated": 1,
        }
        unchanged = (await client.get("/v1/devices", params={"device_id": device})).json()["items"][0]
        assert unchanged == before
        await client.post("/v1/devices/bulk", json={"devices": [{"device_id": device, "meta": {"os": "android"}}]})
        after = (await client.get("/v1/devices", params={"device_id": device})).json()["items"][0]
        assert after["meta"] == {"os": "android"}
        assert (after["first_seen_at"], after["last_seen_at"]) == (before["first_seen_at"], before["last_seen_at"])
        assert after["updated_at"] >= before["updated_at"]

    @pytest.mark.parametrize("devices", [[], [{"device_id": ""}], [{"device_id": "x"}] * 1001])
    async def test_bulk_devices_refuses_an_empty_bad_or_oversize_batch(
        self, client: httpx.AsyncClient, devices: list[dict[str, str]]
    ) -> None:
        response = await client.post("/v1/devices/bulk", json={"devices": devices})
        assert (response.status_code, response.json()["error"]["code"]) == (422, "bad_request")

    async def test_a_repeated_post_keeps_fields_it_does_not_mention(
        self, make: Builders, client: httpx.AsyncClient
    ) -> None:
        lobby = await make.lobby(code="ABC123", status="open")
        response = await client.post("/v1/lobbies", json={"lobby_id": lobby["lobby_id"], "status": "closed"})
        assert response.status_code == 200
        assert response.json()["code"] == "ABC123"
        assert response.json()["status"] == "closed"

    async def test_an_analysis_output_named_either_way_is_one_record(
        self, make: Builders, client: httpx.AsyncClient
    ) -> None:
        measurement = await make.measurement()
        by_key = {"job_id": measurement["job_id"], "upload_name": measurement["upload_name"], "analysis_run": "r1"}
        first = await client.post("/v1/analysis-outputs", json={**by_key, "metrics": {"rt60_s": 0.5}})
        by_id = {"measurement_id": measurement["id"], "analysis_run": "r1"}
        again = await client.post("/v1/analysis-outputs", json={**by_id, "metrics": {"rt60_s": 0.6}})
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["id"] == first.json()["id"]
        assert again.json()["metrics"] == {"rt60_s": 0.6}
        assert again.json()["job_id"] == measurement["job_id"]

    async def test_an_analysis_output_whose_names_disagree_is_409(
        self, make: Builders, client: httpx.AsyncClient
    ) -> None:
        first, other = await make.measurement(), await make.measurement()
        body = {"measurement_id": first["id"], "job_id": other["job_id"], "upload_name": other["upload_name"],
                "analysis_run": "r"}  # fmt: skip
        response = await client.post("/v1/analysis-outputs", json=body)
        assert response.status_code == 409

    async def test_an_analysis_output_without_a_measurement_is_422(self, client: httpx.AsyncClient) -> None:
        for body in ({"analysis_run": "r"}, {"job_id": "j", "analysis_run": "r"}):
            response = await client.post("/v1/analysis-outputs", json=body)
            assert response.status_code == 422, body

    async def test_a_simulation_job_without_an_id_gets_one_and_is_never_merged(self, client: httpx.AsyncClient) -> None:
        first = await client.post("/v1/simulation-jobs", json={"method": "ism"})
        second = await client.post("/v1/simulation-jobs", json={"method": "ism"})
        assert (first.status_code, second.status_code) == (201, 201)
        assert first.json()["id"] != second.json()["id"]
        assert first.json()["status"] == "pending"

    async def test_metrics_round_trip_as_json(self, make: Builders, client: httpx.AsyncClient) -> None:
        metrics = {"broadband": {"rt60_s": 0.61, "sti": 0.7}, "bands": {"125": {"rt60_s": None}}, "n": [1, 2, 3]}
        output = await make.analysis_output(metrics=metrics, quality={"drift_ppm": -12.5})
        got = (await client.get(f"/v1/analysis-outputs/{output['id']}")).json()
        assert got["metrics"] == metrics
        assert got["quality"] == {"drift_ppm": -12.5}
