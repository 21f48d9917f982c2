"""The simulator against itself and against theory: a few cells of the validation grid (issue 15).

The whole grid, with the image-source comparisons, is printed by ``bench/simulation_grid.py``; these cells
guard what holds: the hybrid's T30 within 10 % of Eyring where the field is diffuse (scattering 0.6, or 0.3
at absorption 0.3; at absorption 0.15 and scattering 0.3 the ray tracer itself sits 10-11 % under Eyring), its
EDT, C50 and C80 within one JND of high-order image sources at every position without scattering, a rectangle
entered as a polygon within 2 % / 0.5 dB of the shoebox for every method, and no energy step where the hybrid
hands over from image sources to rays. Runs at 16 kHz in one process (about two minutes).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sonalyze_simulation import hybrid
from sonalyze_simulation import validation as v
from sonalyze_simulation.acoustics import pyroom
from sonalyze_simulation.planning import make_plan
from sonalyze_simulation.schemas import SimulationRequest
from sonalyze_simulation.simulate import _hybrid_responses, direct_index

ROOM = v.ROOMS[1]  # 8 x 6 x 3 m
SMALL = v.ROOMS[0]  # 5 x 4 x 2.5 m


@pytest.mark.parametrize(("absorption", "scattering"), [(0.15, 0.6), (0.3, 0.3), (0.3, 0.6)])
def test_hybrid_t30_within_10_percent_of_eyring_in_a_diffuse_field(absorption: float, scattering: float) -> None:
    parameters, eyring = v.run(v.request(ROOM, "hybrid", absorption, scattering))
    for i, band in enumerate(("500", "1000", "2000")):
        t30 = parameters["bands"][band]["t30_s"]
        assert t30 is not None, parameters["null_reasons"]
        assert abs(t30 / eyring[2 + i] - 1.0) <= 0.10, (band, t30, eyring[2 + i])


def test_default_scattering_brings_the_issue_room_to_eyring() -> None:
    """Issue 15: 8 x 6 x 3 m, absorption 0.3, defaults: T30 was 0.480 s against Eyring's 0.361 s (+33 %)."""
    request = v.request(ROOM, "hybrid", 0.3, 0.3)
    body = request.model_dump()
    body["room"]["default_material"] = {"absorption": 0.3}  # scattering left to the default
    parameters, eyring = v.run(type(request).model_validate(body))
    t30 = parameters["bands"]["1000"]["t30_s"]
    assert abs(t30 / eyring[3] - 1.0) <= 0.10, (t30, eyring[3])


def _clockwise_from_another_corner(request: SimulationRequest) -> SimulationRequest:
    """The same rectangle entered clockwise, starting at its far corner."""
    body = request.model_dump()
    (x0, y0), (x1, _), (_, y1), _ = body["room"]["vertices"]
    body["room"]["vertices"] = [[x1, y1], [x1, y0], [x0, y0], [x0, y1]]
    return type(request).model_validate(body)


def _shifted(request: SimulationRequest, dx_m: float = 1.5, dy_m: float = -2.0) -> SimulationRequest:
    """The same room, source and microphone moved by (dx, dy)."""
    body = request.model_dump()
    body["room"]["vertices"] = [[x + dx_m, y + dy_m] for x, y in body["room"]["vertices"]]
    for key in ("sources", "microphones"):
        for item in body[key]:
            x, y, z = item["position_m"]
            item["position_m"] = [x + dx_m, y + dy_m, z]
    return type(request).model_validate(body)


@pytest.mark.parametrize(
    ("method", "scattering"),
    [("ism", 0.0), ("ray_tracing", 0.0), ("ray_tracing", 0.3), ("hybrid", 0.0), ("hybrid", 0.3), ("hybrid", 0.6)],
)
def test_rectangle_polygon_gives_the_shoebox(method: str, scattering: float) -> None:
    """Issue 15: within 2 % (T30, EDT) and 0.5 dB (C50, C80), every method. The rays made this fail: the same seed
    ran another Monte-Carlo realisation in the polygon (EDT up to 27 %, C50 3 dB apart) until both rooms were
    given the same ray tracer, wall frames and random sequence (`sonalyze_simulation.acoustics.pyroom`); image
    sources left to their default order once failed too (a polygon's order was capped at 10, the shoebox's at 50)."""
    shoebox, _ = v.run(v.request(SMALL, method, 0.3, scattering))
    polygon_request = v.request(SMALL, method, 0.3, scattering, polygon=True)
    for request in (polygon_request, _clockwise_from_another_corner(polygon_request), _shifted(polygon_request)):
        polygon, _ = v.run(request)
        diff = v.compare_polygon(polygon, shoebox)
        assert diff.t30_pct is not None and abs(diff.t30_pct) <= 2.0, diff
        assert diff.edt_pct is not None and abs(diff.edt_pct) <= 2.0, diff
        assert diff.c50_db is not None and abs(diff.c50_db) <= 0.5, diff
        assert diff.c80_db is not None and abs(diff.c80_db) <= 0.5, diff


@pytest.mark.parametrize("method", ["ism", "ray_tracing"])
def test_rectangle_polygon_keeps_each_wall_its_material(method: str) -> None:
    """One absorbing wall (x = width) and an absorbing floor: wall 1 of the shoebox, wall 0 of the same rectangle
    entered clockwise from its far corner; its image sources run on the shoebox lattice, its walls renamed."""
    absorbing = {"absorption": 0.9, "scattering": 0.1}
    box = v.request(SMALL, method, 0.1, 0.1).model_dump()
    box["room"]["surfaces"] = {"walls": {1: absorbing}, "floor": {"absorption": 0.6, "scattering": 0.1}}
    polygon = _clockwise_from_another_corner(v.request(SMALL, method, 0.1, 0.1, polygon=True)).model_dump()
    polygon["room"]["surfaces"] = {"walls": {0: absorbing}, "floor": {"absorption": 0.6, "scattering": 0.1}}
    for body in (box, polygon):
        room = pyroom.build_room(make_plan(SimulationRequest.model_validate(body), v.NO_LIMITS).plan, engine="ism")
        absorption = {wall.name: round(float(wall.absorption[0]), 3) for wall in room.walls}
        assert absorption == {"east": 0.9, "floor": 0.6, "west": 0.1, "south": 0.1, "north": 0.1, "ceiling": 0.1}
    shoebox, _ = v.run(SimulationRequest.model_validate(box))
    for body in (polygon, _shifted(SimulationRequest.model_validate(polygon)).model_dump()):
        diff = v.compare_polygon(v.run(SimulationRequest.model_validate(body))[0], shoebox)
        for value, limit in ((diff.t30_pct, 2.0), (diff.edt_pct, 2.0), (diff.c50_db, 0.5), (diff.c80_db, 0.5)):
            assert value is not None and abs(value) <= limit, diff
    uniform, _ = v.run(v.request(SMALL, method, 0.1, 0.1))
    assert shoebox["bands"]["1000"]["c80_db"] > uniform["bands"]["1000"]["c80_db"] + 1.0  # the materials count


@pytest.mark.parametrize("scattering", [0.0, 0.3, 0.6])
def test_no_energy_step_at_the_hand_over(scattering: float) -> None:
    """The energy of the 20 ms before the transition and of the 20 ms after it differ only by the decay."""
    planned = make_plan(v.request(SMALL, "hybrid", 0.2, scattering), v.NO_LIMITS)
    plan = planned.plan
    ir = _hybrid_responses(plan, polygon=False)[0][0]
    fs = plan.sample_rate_hz
    distance_m = math.dist(plan.sources[0].position_m, plan.microphones[0].position_m)
    room = pyroom.build_room(plan, engine="ism")
    pyroom.compute_impulse_responses(room, polygon=False)
    distances_m, orders = pyroom.image_distances_m(room, 0, 0)
    t_x = hybrid.transition_s(distances_m, orders, plan.max_order, distance_m, 343.0, plan.hybrid_early_s)
    x = round(t_x * fs) + pyroom.fractional_delay_offset_samples()
    w = int(0.02 * fs)
    before = float(np.sum(ir[x - w : x] ** 2))
    after = float(np.sum(ir[x : x + w] ** 2))
    decay_db = 60.0 * 0.02 / planned.eyring_rt60_s[3]  # what 20 ms of Eyring decay takes off
    step_db = 10.0 * math.log10(after / before) + decay_db
    assert direct_index(distance_m, fs) < x
    assert abs(step_db) <= 2.0, (step_db, decay_db)


def test_air_absorption_shortens_the_hybrid_tail_as_eyring_says() -> None:
    """Air takes 30 dB/s off the 8 kHz band's energy (m = 0.0203/m): the hybrid's tail must carry it too."""
    body = v.request(ROOM, "hybrid", 0.15, 0.6).model_dump()
    body["air_absorption"] = True
    request = type(v.request(ROOM, "hybrid", 0.15, 0.6)).model_validate(body | {"sample_rate_hz": 48000})
    parameters, eyring = v.run(request)
    t30 = parameters["bands"]["8000"]["t30_s"]
    assert t30 is not None, parameters["null_reasons"]
    assert abs(t30 / eyring[6] - 1.0) <= 0.15, (t30, eyring[6])


# The hybrid against high-order image sources on the early response (issue 15). Which reference, and why:
# image sources are specular, so they are the reference of a room without scattering (same physics: any
# difference is the hybrid's join). There the hybrid lets the image sources carry the response for as long as
# their order reaches (`hybrid.early_s`), so each position, each mid band, is held to one JND (5 %, 1 dB): the
# 10-20 % and 2-3 dB one position used to miss by, with the image sources handing over after 80 ms, were the
# rays' statistical tail standing in for a specular response. With scattering image sources are not the
# reference: their late field is carried by grazing paths and decays 35-75 % slower than Eyring in these boxes,
# and the ray tracer alone (no join at all) departs from them as much as the hybrid (EDT -19 %, C80 +2 dB on
# average). There the reference is the ray tracer itself, same scattering, averaged over seeds; its early
# response at one position varies between seeds, so the mean over cells is held to one JND and each position
# to a looser bound that still catches a join that loses or gains energy (the old join: EDT -40 %, C50 +5 dB).
JND = {"edt_s": 5.0, "c50_db": 1.0, "c80_db": 1.0}
PER_POSITION = {"edt_s": 25.0, "c50_db": 3.0, "c80_db": 3.5}


def _cells(rooms: tuple[v.Room, ...] = (SMALL, ROOM)) -> list[tuple[v.Room, float]]:
    return [(placed, absorption) for room in rooms for placed in v.placements(room) for absorption in (0.1, 0.3, 0.5)]


def _check(errors: list[dict[str, float | None]], keys: tuple[str, ...]) -> None:
    for key in keys:
        # both null (0.0: EDT of a strong direct sound at absorption 0.5) says nothing; one null is a miss
        assert sum(e[key] is None for e in errors) <= len(errors) // 4, (key, errors)
        values = [e[key] for e in errors if e[key] is not None and e[key] != 0.0]
        assert len(values) >= len(errors) // 2, (key, errors)
        assert abs(float(np.mean(values))) <= JND[key], (key, float(np.mean(values)), values)
        assert max(abs(x) for x in values) <= PER_POSITION[key], (key, values)


@pytest.mark.parametrize("room", v.ROOMS, ids=[room.name for room in v.ROOMS])
def test_hybrid_without_scattering_matches_high_order_image_sources_at_every_position(room: v.Room) -> None:
    """Each position, absorption 0.1-0.5, each band 500 Hz-2 kHz: EDT within 5 %, C50 and C80 within 1 dB."""
    for cell, absorption in _cells((room,)):
        hybrid_values, eyring = v.run(v.request(cell, "hybrid", absorption, 0.0))
        errors = v.compare(hybrid_values, v.reference(cell, absorption), eyring)
        where = (cell.source_m, cell.microphone_m, absorption, errors)
        assert errors.edt_vs_ism_pct is not None and abs(errors.edt_vs_ism_pct) <= JND["edt_s"], where
        assert errors.c50_vs_ism_db is not None and abs(errors.c50_vs_ism_db) <= JND["c50_db"], where
        assert errors.c80_vs_ism_db is not None and abs(errors.c80_vs_ism_db) <= JND["c80_db"], where


def test_hybrid_with_scattering_matches_the_ray_tracer_on_the_early_response() -> None:
    errors = []
    for room, absorption in _cells()[::2]:
        hybrid_values, _ = v.run(v.request(room, "hybrid", absorption, 0.3))
        rays = [v.run(v.request(room, "ray_tracing", absorption, 0.3, seed=seed))[0] for seed in (11, 12, 13, 14)]
        mean_rays = v.mean_parameters(rays)
        errors.append(v.early_errors(hybrid_values, mean_rays))
    _check(errors, ("edt_s", "c50_db", "c80_db"))


@pytest.mark.parametrize("scattering", [0.0, 0.3])
def test_readme_room_early_response_and_sti(scattering: float) -> None:
    """The README's request (5 x 4 x 2.5 m, absorption 0.2, 48 kHz): once EDT 0.28 against 0.47 s, C50 9.6 against
    4.3 dB, STI 0.83 against 0.74 (issue 15). Against image sources without scattering, the ray tracer with."""
    room = v.Room("readme", (5.0, 4.0, 2.5), (2.5, 0.5, 1.2), (2.5, 3.5, 1.2))
    hybrid_values, _ = v.run(v.request(room, "hybrid", 0.2, scattering, sample_rate_hz=48000))
    if scattering == 0.0:
        references = [v.reference(room, 0.2, sample_rate_hz=48000)]
    else:
        references = [
            v.run(v.request(room, "ray_tracing", 0.2, scattering, seed=seed, sample_rate_hz=48000))[0]
            for seed in (1, 2, 3, 4)
        ]
    sti = float(np.mean([r["broadband"]["sti"] for r in references]))
    assert abs(hybrid_values["broadband"]["sti"] - sti) <= 0.03, (hybrid_values["broadband"]["sti"], sti)
    for key, limit in (("edt_s", 5.0), ("c50_db", 1.0), ("c80_db", 1.0)):
        value = v.mid_mean(hybrid_values, key)
        ref = float(np.mean([v.mid_mean(r, key) for r in references]))
        error = 100.0 * (value / ref - 1.0) if key.endswith("_s") else value - ref
        assert abs(error) <= limit, (key, value, ref)
