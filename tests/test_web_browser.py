"""The run page in headless Chromium (Playwright driving /usr/bin/chromium): a failed run's
schematic marks the failed and blocked nodes, Restart is pressed, and the page follows the
run to Success without a reload. Screenshots of the runs list and the run page go to
docs/screenshots/ with UPDATE_SCREENSHOTS=1 (committed, and looked at)."""
from __future__ import annotations

import os
import shutil

import pytest

from conftest import FLOWER_AUTH, ROOT, needs, run_cli
from test_web import cli_json, failed_run, web, web_server  # noqa: F401 (fixtures)

CHROMIUM = shutil.which("chromium")
DOC_SHOTS = ROOT / "docs" / "screenshots"
"""Where the committed screenshots live; the test writes there with UPDATE_SCREENSHOTS=1 (else
into its tmp dir, so running the suite leaves the checkout clean)."""

try:
    import playwright.sync_api as playwright
except ImportError:  # requirements-dev.txt has it
    playwright = None


@pytest.mark.slow
@needs("playwright is not installed (requirements-dev.txt)" if playwright is None else None)
@needs(None if CHROMIUM else "Debian's chromium is not installed (.ci/run installs it)")
def test_failed_run_page_restart_to_success_in_chromium(web, clean_redis, tmp_path):  # noqa: F811
    browser_http, env = web
    shots = DOC_SHOTS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    cli_json(env, "sweep", "--alphas", "1.0", "0.1", "0.01")
    run_id = failed_run(env, alphas=("1.0", "0.1", "0.01"), sleep="1")  # 1 s a stage: the page sees it run
    user, password = FLOWER_AUTH.split(":")
    shots.mkdir(parents=True, exist_ok=True)

    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        context = chromium.new_context(http_credentials={"username": user, "password": password},
                                       viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(browser_http.base + "/runs")
        assert page.locator(f'a[href="/runs/{run_id}"]').count() == 1
        page.screenshot(path=str(shots / "runs.png"), full_page=True)

        page.goto(browser_http.base + f"/runs/{run_id}")
        assert page.locator("#run-state").inner_text() == "Failed"
        failed = page.locator(".schematic .sc-node.state-Failed")
        blocked = page.locator(".schematic .sc-node.state-TriggerFailed")
        assert sorted(failed.nth(i).get_attribute("data-key") for i in range(failed.count())) == [
            "train_model[0]", "train_model[1]", "train_model[2]"]
        assert blocked.count() == 3 + 6  # each evaluate, and every cleanup
        assert all(blocked.nth(i).inner_text().endswith("blocked") for i in range(blocked.count()))
        page.screenshot(path=str(shots / "run_failed.png"), full_page=True)

        page.fill("#restart-fail-rate", "0")  # restart --fail-rate 0
        page.click("#restart-button")
        page.wait_for_url(f"**/runs/{run_id}")
        assert "restarted (failed tasks): 12 task(s) run again, fail_rate 0.0" in page.locator("#notice").inner_text()
        assert page.locator("#run-state").inner_text() in ("Pending", "Running")
        page.evaluate("window.notReloaded = true")
        page.locator("#run-state", has_text="Success").wait_for(timeout=90_000)
        assert page.evaluate("window.notReloaded") is True  # followed live, not by a reload
        assert page.locator(".schematic .sc-node.state-Failed").count() == 0
        assert page.locator(".results-table tbody tr").count() == 3
        page.screenshot(path=str(shots / "run_restarted.png"), full_page=True)

        page.goto(browser_http.base + "/flows")  # Quick Run: the form opens the new run's page
        page.fill("#f-alphas", "0.5 0.25")
        page.screenshot(path=str(shots / "flows.png"), full_page=True)
        page.click("#run-button")
        page.wait_for_url("**/runs/*")
        quick = page.url.rsplit("/", 1)[1]
        assert quick != run_id and "submitted" in page.locator("#notice").inner_text()
        page.locator("#run-state", has_text="Success").wait_for(timeout=60_000)

        page.goto(browser_http.base + "/labels")
        page.screenshot(path=str(shots / "labels.png"), full_page=True)
        page.goto(browser_http.base + "/schedule")
        page.screenshot(path=str(shots / "schedule.png"), full_page=True)

        wide = failed_run(env, alphas=tuple(str(0.01 * (i + 1)) for i in range(30)))  # folded: 30 branches
        page.goto(browser_http.base + f"/runs/{wide}")
        branches = page.locator('details[data-fold="branches"]')
        assert branches.get_attribute("open") is None and "30 Failed" in branches.inner_text()
        branches.locator("summary").click()  # unfolds on a click
        assert page.locator(".sc-branch").count() == 30
        page.screenshot(path=str(shots / "run_folded.png"))
        chromium.close()
    assert run_cli("status", run_id, "--json", env=env).returncode == 0
