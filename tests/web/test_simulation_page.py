"""The simulation page: the room form with the material catalogue, the top view, results with plots, the cost guard."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]


async def test_simulation_page(suite, browser, artifacts_dir, painted_pixels) -> None:
    gateway = suite.config.url("gateway")
    page = await browser.new_page(viewport={"width": 1280, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    await page.goto(gateway + "/")
    await page.get_by_role("button", name="Simulation").click()

    # materials come from the catalogue, grouped by category, for every surface of the shoebox
    default = page.locator("#mat-default")
    await expect(default.locator("optgroup")).not_to_have_count(0)
    assert await default.locator("option").count() > 20
    await expect(page.locator("#sim-materials select")).to_have_count(2 + 1 + 4)  # default, floor, ceiling, 4 walls
    floor_choice = await page.locator("#mat-floor optgroup[label='floor coverings'] option").first.get_attribute(
        "value"
    )
    await page.select_option("#mat-floor", floor_choice)
    ceiling_choice = await page.locator("#mat-ceiling optgroup[label='ceiling absorbers'] option").first.get_attribute(
        "value"
    )
    await page.select_option("#mat-ceiling", ceiling_choice)

    # the top view shows the room and the positions as typed
    await expect(page.locator("#sim-topview rect.source")).to_have_count(1)
    await expect(page.locator("#sim-topview circle.microphone")).to_have_count(2)
    await page.fill("textarea[name=microphones]", "m1: 4.5, 3.0, 1.2\nm2: 3.0, 2.5, 1.1\nm3: 5.0, 1.0, 1.5")
    await expect(page.locator("#sim-topview circle.microphone")).to_have_count(3)

    await page.click("#sim-run")
    await page.wait_for_function(
        "() => document.querySelectorAll('#sim-results section.pair').length || document.querySelector('#sim-error').textContent",
        timeout=120_000,
    )
    assert not await page.locator("#sim-error").inner_text()
    await expect(page.locator("#sim-results section.pair")).to_have_count(3)
    await expect(page.locator("#sim-status")).to_contain_text("Simulated 3 pairs")
    for section in await page.locator("#sim-results section.pair").all():
        float(await section.locator('td[data-metric="t30_s"][data-band="1000"]').inner_text())
        for plot_class in ("plot-decay", "plot-ir", "plot-ir-db", "plot-fr"):
            figure = section.locator(f"figure.{plot_class}")
            assert int(await figure.get_attribute("data-points")) > 10
            assert await painted_pixels(figure) > 500, plot_class
    await page.screenshot(path=str(artifacts_dir / "simulation.png"), full_page=True)

    # a request the cost guard refuses: its message, with the estimate and the budget
    await page.select_option("select[name=method]", "ism")
    await page.fill("input[name=max_order]", "100")
    await page.fill("textarea[name=sources]", "\n".join(f"s{i}: {1 + i}, 1.0, 1.2" for i in range(3)))
    await page.fill("textarea[name=microphones]", "\n".join(f"m{i}: {1 + 0.4 * i:.1f}, 3.0, 1.2" for i in range(10)))
    await page.click("#sim-run")
    error = page.locator("#sim-error")
    await expect(error).to_contain_text("The simulation was refused", timeout=30_000)
    await expect(error).to_contain_text("over the budget")
    await expect(error).to_contain_text("reduce max_order")
    await expect(error).to_have_attribute("data-code", "bad_request")

    # a floor plan: one material choice per wall, and the top view follows the corners
    await page.check("input[name=room_type][value=polygon]")
    await expect(page.locator("#sim-materials select")).to_have_count(2 + 1 + 6)
    points = await page.locator("#sim-topview polygon").get_attribute("points")
    assert len(points.split()) == 6
    assert not problems, problems
    await page.close()
