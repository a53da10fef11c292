"""The page in headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by Selenium): a text
query shows the library's ranking, a result plays, more-like-this, tags, search by file and the map work."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest


@pytest.fixture(scope="module")
def browser():
    from muqkit.serve.testing import NoBrowser, chromium_driver

    try:
        driver = chromium_driver()
    except NoBrowser as exc:
        pytest.skip(str(exc))
    yield driver
    driver.quit()


def wait_for(condition: Callable[[], object], what: str, timeout: float = 10.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def page_ids(driver) -> list[int]:
    ids = driver.execute_script("return [...document.querySelectorAll('.result')].map(e => e.dataset.id)")
    return [int(i) for i in ids]


def playing(driver) -> bool:
    return bool(driver.execute_script("const a = document.getElementById('player'); "
                                      "return !a.paused && a.currentTime > 0 && a.readyState >= 2"))  # fmt: skip


def test_page_searches_plays_tags_and_maps(browser, mulan_backend, collection, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from muqkit.serve.app import ServeConfig, create_app
    from muqkit.serve.testing import running_server

    driver = browser
    with running_server(create_app(mulan_backend, ServeConfig())) as url:
        driver.get(url)
        wait_for(lambda: driver.execute_script("return document.body.dataset.ready === '1'"), "the page to load")

        # a text query: the page's order is the library's search
        query = "a calm piano piece in a minor key"
        driver.find_element(By.ID, "query").send_keys(query)
        driver.find_element(By.ID, "search-button").click()
        wait_for(lambda: query in driver.find_element(By.ID, "results-title").text, "the results")
        index, model = mulan_backend.index, mulan_backend.embedder.model
        expected = index.search(model.extract_text_latents([query]), k=10)[0]
        ids = {path: i for i, path in enumerate(index.absolute_paths)}
        assert page_ids(driver) == [ids[h.path] for h in expected]
        shown = driver.execute_script("return [...document.querySelectorAll('.result .score')].map(e => e.textContent)")
        assert shown == [f"{h.score:.3f}" for h in expected]
        driver.save_screenshot(str(tmp_path / "results.png"))

        # play the first result until the audio element plays
        first = driver.find_elements(By.CSS_SELECTOR, ".result")[0]
        first.find_element(By.CSS_SELECTOR, "button.play").click()
        wait_for(lambda: playing(driver), "the audio element to play")

        # more like this: the track's neighbours, itself left out
        top = int(first.get_attribute("data-id"))
        first.find_element(By.CSS_SELECTOR, "button.more").click()
        wait_for(lambda: "More like" in driver.find_element(By.ID, "results-title").text, "more like this")
        assert page_ids(driver) == [h.track.id for h in mulan_backend.more_like_this(top, k=10)]
        assert top not in page_ids(driver)

        # tags of a track, from an edited list
        tag_list = driver.find_element(By.ID, "tag-list")
        tag_list.clear()
        tag_list.send_keys("piano, drums, noise, strings")
        driver.find_elements(By.CSS_SELECTOR, ".result button.tags-button")[0].click()
        rows = lambda: driver.find_elements(By.CSS_SELECTOR, "#tags tbody tr")  # noqa: E731
        wait_for(lambda: len(rows()) == 4, "four tag rows")
        expected_tags = mulan_backend.tags(page_ids(driver)[0], ["piano", "drums", "noise", "strings"])
        assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows()] == [t.tag for t in expected_tags]

        # search with a file: the file itself comes first
        example = collection / "tones" / "high.wav"
        driver.find_element(By.ID, "upload").send_keys(str(example))
        wait_for(lambda: "Like high.wav" in driver.find_element(By.ID, "results-title").text, "search by file")
        assert page_ids(driver)[0] == ids[str(example)]

        # the map: every track drawn; clicking a point plays it (the AIFF one, transcoded)
        driver.find_element(By.ID, "tab-map").click()
        canvas = driver.find_element(By.ID, "map")
        wait_for(lambda: canvas.get_attribute("data-points") == str(len(index)), "the map")
        target = ids[str(collection / "chords" / "minor.aiff")]
        x, y, width, height, size = driver.execute_script(
            "const p = window.muqkit.map.find(q => q.id === arguments[0]); const c = document.getElementById('map');"
            "const r = c.getBoundingClientRect(); return [p.cx, p.cy, r.width, r.height, c.width];", target)
        ActionChains(driver).move_to_element_with_offset(
            canvas, int(x * width / size - width / 2), int(y * height / size - height / 2)).click().perform()
        wait_for(lambda: driver.execute_script("return document.getElementById('player').dataset.trackId")
                 == str(target), "the clicked point to load")  # fmt: skip
        wait_for(lambda: playing(driver), "the clicked point to play")
        driver.save_screenshot(str(tmp_path / "map.png"))

        # the map coloured by each track's best tag of the edited list
        from selenium.webdriver.support.ui import Select

        Select(driver.find_element(By.ID, "map-colour")).select_by_value("tag")
        best = set(mulan_backend.best_tags(["piano", "drums", "noise", "strings"]))
        legend = lambda: set(driver.find_element(By.ID, "legend").text.split())  # noqa: E731
        wait_for(lambda: legend() == best, f"a legend of the best tags {sorted(best)}")
    for name in ("results.png", "map.png"):
        assert (tmp_path / name).stat().st_size > 10_000
