"""GET /v1/measurement/audio and /v1/measurement/signal, and the reference store behind them."""

from __future__ import annotations

import io

import pytest
import soundfile as sf


def _parse_timing(header: str) -> dict[str, float]:
    return {key.strip(): float(value) for key, value in (part.split("=") for part in header.split(";"))}


class TestAudio:
    async def test_default_signal_is_a_mono_16_bit_wav_with_id_and_timing(self, app) -> None:
        response = await app.client.get("/v1/measurement/audio", params={"sample_rate": 48000})
        assert response.status_code == 200
        assert response.headers["content-type"] == "audio/wav"
        info = sf.info(io.BytesIO(response.content))
        assert (info.format, info.subtype, info.channels, info.samplerate) == ("WAV", "PCM_16", 1, 48000)
        timing = _parse_timing(response.headers["x-signal-timing"])
        assert info.frames == timing["n_samples"]
        assert timing["sweep_start_s"] < timing["sweep_end_s"] < timing["chirp2_start_s"]
        described = (await app.client.get("/v1/measurement/signal", params={"sample_rate": 48000})).json()
        assert described["signal_id"] == response.headers["x-signal-id"]
        assert described["timing"]["sweep_start_s"] == timing["sweep_start_s"]

    @pytest.mark.parametrize("rate_hz", [44100, 96000])
    async def test_other_sample_rates(self, app, rate_hz: int) -> None:
        response = await app.client.get("/v1/measurement/audio", params={"sample_rate": rate_hz})
        assert response.status_code == 200
        info = sf.info(io.BytesIO(response.content))
        assert info.samplerate == rate_hz
        assert info.duration == pytest.approx(10.0, abs=0.01)

    async def test_same_query_gives_the_same_bytes_and_id(self, app) -> None:
        query = {"sample_rate": 44100, "duration_s": 3, "f_start_hz": 40, "f_end_hz": 18000}
        first = await app.client.get("/v1/measurement/audio", params=query)
        second = await app.client.get("/v1/measurement/audio", params=query)
        assert first.content == second.content
        assert first.headers["x-signal-id"] == second.headers["x-signal-id"]
        other = await app.client.get("/v1/measurement/audio", params={**query, "duration_s": 4})
        assert other.headers["x-signal-id"] != first.headers["x-signal-id"]
        assert _parse_timing(other.headers["x-signal-timing"])["sweep_duration_s"] == pytest.approx(4.0)

    async def test_reference_store_keeps_the_exact_samples(self, app) -> None:
        response = await app.client.get("/v1/measurement/audio", params={"sample_rate": 48000, "duration_s": 2})
        signal_id = response.headers["x-signal-id"]
        stored = app.data_dir / "signals" / f"{signal_id}.wav"
        assert stored.read_bytes() == response.content
        assert (app.data_dir / "signals" / f"{signal_id}.json").is_file()


class TestSignalDescription:
    async def test_defaults(self, app) -> None:
        described = (await app.client.get("/v1/measurement/signal")).json()
        assert described["sample_rate_hz"] == 48000
        assert described["duration_s"] == 5.0
        assert described["f_start_hz"] == 50.0
        assert described["f_end_hz"] == 20000.0
        timing = described["timing"]
        for part in (
            "lead_silence_s",
            "chirp1_start_s",
            "chirp_duration_s",
            "sweep_start_s",
            "sweep_duration_s",
            "decay_s",
            "chirp2_start_s",
            "tail_silence_s",
            "total_duration_s",
        ):
            assert part in timing

    async def test_low_sample_rate_lowers_the_default_end_frequency(self, app) -> None:
        described = (await app.client.get("/v1/measurement/signal", params={"sample_rate": 16000})).json()
        assert described["f_end_hz"] == pytest.approx(0.475 * 16000)


class TestBadQuery:
    @pytest.mark.parametrize(
        ("query", "named"),
        [
            ({"sample_rate": 1000}, "sample_rate"),
            ({"sample_rate": 500000}, "sample_rate"),
            ({"duration_s": 0.2}, "duration_s"),
            ({"duration_s": 100}, "duration_s"),
            ({"f_start_hz": 5}, "f_start_hz"),
            ({"f_end_hz": 30000}, "f_end_hz"),
            ({"sample_rate": 44100, "f_end_hz": 22000}, "f_end_hz"),
        ],
    )
    @pytest.mark.parametrize("path", ["/v1/measurement/audio", "/v1/measurement/signal"])
    async def test_out_of_bounds_is_400_naming_the_parameter(self, app, path: str, query: dict, named: str) -> None:
        response = await app.client.get(path, params=query)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "bad_request"
        assert named in error["message"]

    async def test_not_a_number_is_a_json_error(self, app) -> None:
        response = await app.client.get("/v1/measurement/audio", params={"sample_rate": "fast"})
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "bad_request"
