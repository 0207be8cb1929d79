"""The report in a real browser: headless Debian Chromium driven by Selenium, from file://."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from report_fake_run import EVIL_RULE, EVIL_TITLES, confidence, make_run, rule

from recsae.report import write_report

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
N_LATENTS = 30

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def driver() -> Iterator[object]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Chromium is not installed (/usr/bin/chromium, /usr/bin/chromedriver); "
                    "run scripts/install_browser.sh")
    # selenium is in the `test` extra: its absence is a broken environment, not a skip.
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="recsae-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                 "--window-size=1300,1000"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    drv.set_page_load_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def severe_logs(drv) -> list[dict]:
    return [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]


def visible_ids(drv) -> list[int]:
    """Latent ids of the rows the browser actually lays out, top to bottom."""
    return drv.execute_script(
        "return Array.from(document.querySelectorAll('#latent-table tbody tr'))"
        ".filter(r => r.getClientRects().length > 0).map(r => +r.dataset.latent);")


def no_alert(drv) -> bool:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        drv.switch_to.alert  # noqa: B018 (raises when there is none)
    except NoAlertPresentException:
        return True
    return False


def by_conf_desc(ids: list[int]) -> list[int]:
    """Confidence descending, ties by id, missing confidence last (the page's order)."""
    known = [j for j in ids if confidence(j) == confidence(j)]
    missing = [j for j in ids if confidence(j) != confidence(j)]
    return sorted(known, key=lambda j: (-confidence(j), j)) + missing


def test_report_sorts_filters_and_opens_a_latent_without_console_errors(driver, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    drv = driver
    page = write_report(make_run(tmp_path / "run", n_latents=N_LATENTS))
    drv.get(page.resolve().as_uri())
    assert severe_logs(drv) == []
    assert no_alert(drv)
    assert drv.execute_script("return document.querySelectorAll('img').length") == 0

    ids = list(range(N_LATENTS))
    assert visible_ids(drv) == by_conf_desc(ids)  # default: most confident first

    header = drv.find_element(By.CSS_SELECTOR, "th[data-sort=id] button")
    header.click()
    assert visible_ids(drv) == ids
    header.click()
    assert visible_ids(drv) == ids[::-1]
    drv.find_element(By.CSS_SELECTOR, "th[data-sort=rule] button").click()
    rules = [rule(j) for j in visible_ids(drv)]
    named = [r for r in rules if r]
    assert named == sorted(named, key=str.lower) or named == sorted(named)
    assert rules[-1] is None  # latents without a rule go last

    box = drv.find_element(By.ID, "f-text")
    box.send_keys("horror")
    expected = [j for j in ids if "horror" in (rule(j) or "").lower()]
    assert sorted(visible_ids(drv)) == expected
    count = drv.find_element(By.ID, "latent-count").text
    assert count == f"showing {len(expected)} of {N_LATENTS} latents"

    box.clear()
    box.send_keys(Keys.BACKSPACE)  # clear() fires no input event
    drv.find_element(By.ID, "f-conf").send_keys("0.8")
    assert sorted(visible_ids(drv)) == [j for j in ids if confidence(j) >= 0.8]
    drv.find_element(By.CSS_SELECTOR, "th[data-sort=conf] button").click()
    assert visible_ids(drv) == [j for j in by_conf_desc(ids) if confidence(j) >= 0.8]
    drv.find_element(By.ID, "f-reset").click()
    assert len(visible_ids(drv)) == N_LATENTS

    # Open the latent whose rule and titles are hostile: they must show as plain text.
    drv.find_element(By.CSS_SELECTOR, "tr[data-latent='2'] td:nth-child(2)").click()
    assert drv.execute_script("return location.hash") == "#latent-2"
    view = drv.find_element(By.ID, "latent-view")
    # the view follows the hash on its hashchange event, which the browser fires asynchronously
    WebDriverWait(drv, 10).until(lambda _: view.is_displayed())
    assert drv.find_element(By.CSS_SELECTOR, "#latent-view h2").text.startswith("Latent 2")
    assert EVIL_RULE in view.text
    assert any(t in view.text for t in EVIL_TITLES)
    assert drv.find_elements(By.CSS_SELECTOR, "#latent-view svg.chart rect")  # histogram
    assert len(drv.find_elements(By.CSS_SELECTOR, "#latent-view ol.seqs > li")) == 5
    assert "drop random" in view.text  # the ablation effect measured for this latent
    assert no_alert(drv)
    assert drv.execute_script("return document.querySelectorAll('img').length") == 0

    shot = tmp_path / "report-latent-view.png"
    drv.save_screenshot(str(shot))
    print(f"screenshot: {shot}")

    drv.find_element(By.ID, "v-next").click()
    assert drv.execute_script("return location.hash") != "#latent-2"
    drv.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    WebDriverWait(drv, 10).until(lambda _: not view.is_displayed())

    # Dark mode: the page follows prefers-color-scheme.
    light = drv.execute_script("return getComputedStyle(document.body).backgroundColor")
    drv.execute_cdp_cmd("Emulation.setEmulatedMedia",
                        {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    dark = drv.execute_script("return getComputedStyle(document.body).backgroundColor")
    assert light != dark
    shot_dark = tmp_path / "report-dark.png"
    drv.save_screenshot(str(shot_dark))
    print(f"screenshot: {shot_dark}")
    drv.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})

    assert severe_logs(drv) == []


def test_report_of_an_empty_run_folder_loads_without_console_errors(driver, tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    drv = driver
    drv.get(write_report(run).resolve().as_uri() + "#latent-0")
    from selenium.webdriver.common.by import By

    assert "Not available" in drv.find_element(By.ID, "latents").text
    assert severe_logs(drv) == []


def test_a_real_runs_latent_view_shows_its_examples(driver, tiny_run):
    import json

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    examples = json.loads((tiny_run / "report_data" / "latent_examples.json").read_text())["latents"]
    j, ex = max(examples.items(), key=lambda kv: (len(kv[1]["examples"]), -int(kv[0])))
    drv = driver
    drv.get((tiny_run / "report" / "index.html").resolve().as_uri())
    drv.find_element(By.CSS_SELECTOR, f"tr[data-latent='{j}'] td:nth-child(2)").click()
    view = drv.find_element(By.ID, "latent-view")
    WebDriverWait(drv, 10).until(lambda _: view.is_displayed())  # shown on the (asynchronous) hashchange
    assert drv.find_element(By.CSS_SELECTOR, "#latent-view h2").text.startswith(f"Latent {j}")
    shown = drv.find_elements(By.CSS_SELECTOR, "#latent-view ol.seqs > li")
    assert len(shown) == min(5, len(ex["examples"])) > 0
    for li, x in zip(shown, ex["examples"], strict=False):
        assert x["recent_titles"][-1] in li.text  # each example's latest item, as a title
    assert drv.find_elements(By.CSS_SELECTOR, "#latent-view svg.chart rect")  # its activation histogram
    assert severe_logs(drv) == []
