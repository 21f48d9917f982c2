"""The hybrid's hand-over rule: how long the image sources carry the response, and at which order (issue 15)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from sonalyze_simulation import hybrid
from sonalyze_simulation.planning import Limits, PlannedSimulation, make_plan
from sonalyze_simulation.schemas import SimulationRequest

UNLIMITED = Limits(max_pairs=64, cost_budget_s=1e9)


class TestSpecularOrders:
    def test_without_scattering_every_order_is_specular(self) -> None:
        assert hybrid.specular_orders(0.0) == math.inf

    @pytest.mark.parametrize(("scattering", "orders"), [(0.1, 6.58), (0.3, 1.94), (1.0, 0.0)])
    def test_half_the_energy_stays_specular_up_to_that_order(self, scattering: float, orders: float) -> None:
        assert hybrid.specular_orders(scattering) == pytest.approx(orders, abs=0.01)

    def test_refuses_a_coefficient_outside_0_1(self) -> None:
        with pytest.raises(ValueError, match="scattering"):
            hybrid.specular_orders(1.2)


class TestEarly:
    def test_defaults_give_the_first_10_db_or_80_ms(self) -> None:
        assert hybrid.early_s(0.3) == pytest.approx(0.05)
        assert hybrid.early_s(2.0) == pytest.approx(hybrid.EARLY_S)

    def test_without_scattering_the_image_sources_carry_two_rt60(self) -> None:
        assert hybrid.early_s(0.5, 0.0, 3.2, 343.0) == pytest.approx(1.0)

    @pytest.mark.parametrize("absorption", [0.05, 0.3, 0.6])
    @pytest.mark.parametrize("mean_free_path_m", [3.2, 20.0])
    def test_at_scattering_0_3_never_beyond_the_first_10_db(self, absorption: float, mean_free_path_m: float) -> None:
        """Eyring: RT60 = 13.8 l / (c (-ln(1 - a))), so 1.9 mean free paths are within RT/6 for a < 0.68."""
        eyring_s = 13.8 * mean_free_path_m / (343.0 * -math.log1p(-absorption))
        early = hybrid.early_s(eyring_s, 0.3, mean_free_path_m, 343.0)
        assert early <= max(hybrid.early_s(eyring_s), eyring_s / 6.0)


def _plan(room: dict[str, Any], scattering: float, limits: Limits = UNLIMITED, n_pairs: int = 1) -> PlannedSimulation:
    body = {
        "room": room | {"default_material": {"absorption": 0.15, "scattering": scattering}},
        "sources": [{"id": "s", "position_m": [1.5, 1.5, 1.5]}],
        "microphones": [{"id": f"m{i}", "position_m": [5.5, 4.0 + 0.1 * i, 1.2]} for i in range(n_pairs)],
        "method": "hybrid",
        "sample_rate_hz": 16000,
    }
    return make_plan(SimulationRequest.model_validate(body), limits)


SHOEBOX = {"type": "shoebox", "dimensions_m": [8.0, 6.0, 3.0]}
L_SHAPE = {"type": "polygon", "vertices": [[0, 0], [8, 0], [8, 6], [3, 6], [3, 3], [0, 3]], "height_m": 3.0}


class TestOrder:
    def test_a_specular_shoebox_gets_a_high_order(self) -> None:
        assert _plan(SHOEBOX, 0.0).plan.max_order == hybrid.LATTICE_MAX_ORDER

    def test_scattering_0_3_keeps_the_budget_capped_order(self) -> None:
        assert _plan(SHOEBOX, 0.3).plan.max_order == 8

    def test_a_general_polygon_keeps_its_search_budget(self) -> None:
        order = _plan(L_SHAPE, 0.0).plan.max_order
        assert order is not None
        assert hybrid.search_nodes(order, 8) <= hybrid.POLYGON_NODE_BUDGET

    def test_the_order_is_lowered_to_half_the_budget_but_not_below_the_first_10_db(self) -> None:
        limits = Limits(max_pairs=64, cost_budget_s=20.0)
        many = _plan(SHOEBOX, 0.0, limits, n_pairs=16)
        assert many.plan.max_order is not None and 8 < many.plan.max_order < hybrid.LATTICE_MAX_ORDER
        assert many.cost.total_s <= limits.cost_budget_s / 2
        tight = _plan(SHOEBOX, 0.0, Limits(max_pairs=64, cost_budget_s=0.4))
        assert tight.plan.max_order == 8
