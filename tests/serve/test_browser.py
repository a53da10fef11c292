"""The page in headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by Selenium): a text
query shows the library's ranking, a result plays, more-like-this, tags, search by file and the map work; the
playing track shows everywhere, space plays and pauses, views live in the URL (Back, shared links), the track
list pages and filters, the server's errors reach the page; on a phone and a tablet nothing scrolls sideways
and Search, Play and the map can be reached and clicked."""

from __future__ import annotations

import shutil
import time
import urllib.parse
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


def js(driver, script: str, *args):  # noqa: ANN201
    return driver.execute_script(script, *args)


def page_ids(driver) -> list[int]:
    return [int(i) for i in js(driver, "return [...document.querySelectorAll('.result')].map(e => e.dataset.id)")]


def texts(driver, selector: str) -> list[str]:
    return js(driver, "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)", selector)


def playing(driver) -> bool:
    return bool(js(driver, "const a = document.getElementById('player'); "
                           "return !a.paused && a.currentTime > 0 && a.readyState >= 2"))  # fmt: skip


def paused(driver) -> bool:
    return bool(js(driver, "return document.getElementById('player').paused"))


def title(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "results-title").text


def message(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "message").text


def load(driver, url: str) -> None:
    driver.get(url)
    wait_for(lambda: js(driver, "return document.body.dataset.ready === '1'"), "the page to load")


def clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def clickable(driver, element) -> bool:
    """Scrolled to the middle of the screen, is ``element`` the one a tap at its centre reaches (nothing
    covers it) and inside the screen's width?"""
    return bool(js(driver, """
        const e = arguments[0];
        e.scrollIntoView({block: 'center', inline: 'center'});
        const r = e.getBoundingClientRect();
        if (r.width === 0 || r.height === 0 || r.left < 0 || r.right > window.innerWidth) return false;
        const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
        return hit !== null && (hit === e || e.contains(hit));""", element))  # fmt: skip


def tap(driver, element) -> None:
    assert clickable(driver, element), element.get_attribute("outerHTML")[:200]
    element.click()


def map_point(driver, track_id: int) -> list[float]:
    """A track's dot on the map's canvas (x, y), the canvas's width and height on screen, its own width."""
    return js(driver, "const p = window.muqkit.map.find(q => q.id === arguments[0]); const c = "
                      "document.getElementById('map'); const r = c.getBoundingClientRect(); "
                      "return [p.cx, p.cy, r.width, r.height, c.width];", track_id)  # fmt: skip


def click_map_point(driver, track_id: int) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = driver.find_element(By.ID, "map")
    js(driver, "arguments[0].scrollIntoView({block: 'center'})", canvas)
    x, y, width, height, size = map_point(driver, track_id)
    ActionChains(driver).move_to_element_with_offset(
        canvas, int(x * width / size - width / 2), int(y * height / size - height / 2)).click().perform()


def test_page_searches_plays_tags_and_maps(browser, mulan_backend, mulan_dir, collection, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    from muqkit.serve.app import ServeConfig, create_app
    from muqkit.serve.testing import running_server

    driver = browser
    index, model = mulan_backend.index, mulan_backend.embedder.model
    ids = {path: i for i, path in enumerate(index.absolute_paths)}
    with running_server(create_app(mulan_backend, ServeConfig())) as url:
        load(driver, url)
        # the header names the model, not its folder on the server; a favicon; every track's duration
        info = driver.find_element(By.ID, "info").text
        assert "model mulan" in info and str(mulan_dir) not in driver.page_source
        icon = driver.execute_async_script("const done = arguments[0]; fetch(document.querySelector("
                                           "'link[rel=icon]').href).then(r => done([r.status, r.headers.get("
                                           "'content-type')]))")  # fmt: skip
        assert icon == [200, "image/svg+xml"]
        assert title(driver) == "Tracks" and page_ids(driver) == list(range(7))
        durations = [clock(mulan_backend.duration(i)) for i in range(7)]
        assert texts(driver, ".result .duration") == durations == ["0:02"] * 7

        # a text query: the page's order is the library's search, its scores labelled as text similarity
        query = "a calm piano piece in a minor key"
        driver.find_element(By.ID, "query").send_keys(query)
        driver.find_element(By.ID, "search-button").click()
        wait_for(lambda: query in title(driver), "the results")
        expected = index.search(model.extract_text_latents([query]), k=10)[0]
        assert page_ids(driver) == [ids[h.path] for h in expected]
        assert texts(driver, ".result .score .value") == [f"{h.score:.3f}" for h in expected]
        assert set(texts(driver, ".result .score .kind")) == {"text"}
        assert "text-to-music similarity" in driver.find_element(By.ID, "score-label").text
        assert urllib.parse.parse_qs(urllib.parse.urlparse(driver.current_url).query) == {"q": [query]}
        driver.save_screenshot(str(tmp_path / "results.png"))

        # play the first result: its row is highlighted with Pause on it; Pause and Play on the row, then space
        js(driver, "document.getElementById('player').loop = true")  # the clips are 2.5 s long
        first = driver.find_elements(By.CSS_SELECTOR, ".result")[0]
        top = int(first.get_attribute("data-id"))
        first.find_element(By.CSS_SELECTOR, "button.play").click()
        wait_for(lambda: playing(driver), "the audio element to play")
        row_state = lambda: js(driver, "return [...document.querySelectorAll('.result')].map(e => "  # noqa: E731
                                       "[e.classList.contains('playing'), e.querySelector('button.play').textContent])")
        wait_for(lambda: row_state()[0] == [True, "Pause"], "the playing row")
        assert all(state == [False, "Play"] for state in row_state()[1:])
        assert "Playing: " in driver.find_element(By.ID, "now-playing").text
        first.find_element(By.CSS_SELECTOR, "button.play").click()
        wait_for(lambda: paused(driver) and row_state()[0] == [True, "Play"], "Pause on the row to pause")
        first.find_element(By.CSS_SELECTOR, "button.play").click()
        wait_for(lambda: playing(driver), "Play on the row to play again")
        ActionChains(driver).send_keys(Keys.SPACE).perform()  # the row's button has the focus: space is play/pause
        wait_for(lambda: paused(driver), "space to pause")
        time.sleep(0.3)
        assert paused(driver)  # the focused button did not take the space as a click
        ActionChains(driver).send_keys(Keys.SPACE).perform()
        wait_for(lambda: playing(driver), "space to play")
        assert js(driver, "return window.scrollY") == 0  # and the page did not scroll
        box = driver.find_element(By.ID, "query")
        box.send_keys(" x")  # typing a space in a text box types it
        assert box.get_attribute("value") == query + " x" and not paused(driver)
        box.clear()
        box.send_keys(query)

        # more like this: the track's neighbours, itself left out, scores labelled as audio similarity; in the URL
        first.find_element(By.CSS_SELECTOR, "button.more").click()
        wait_for(lambda: "More like" in title(driver), "more like this")
        assert page_ids(driver) == [h.track.id for h in mulan_backend.more_like_this(top, k=10)]
        assert top not in page_ids(driver)
        assert set(texts(driver, ".result .score .kind")) == {"audio"}
        assert f"similar={top}" in driver.current_url
        # Back shows the text query again, Forward more like this
        driver.back()
        wait_for(lambda: title(driver) == f'Results for "{query}"', "Back to the text query")
        assert page_ids(driver) == [ids[h.path] for h in expected]
        assert driver.find_element(By.ID, "query").get_attribute("value") == query
        driver.forward()
        wait_for(lambda: "More like" in title(driver), "Forward to more like this")

        # tags of a track, from an edited list
        tag_list = driver.find_element(By.ID, "tag-list")
        tag_list.clear()
        tag_list.send_keys("piano, drums, noise, strings")
        driver.find_elements(By.CSS_SELECTOR, ".result button.tags-button")[0].click()
        rows = lambda: driver.find_elements(By.CSS_SELECTOR, "#tags tbody tr")  # noqa: E731
        wait_for(lambda: len(rows()) == 4, "four tag rows")
        expected_tags = mulan_backend.tags(page_ids(driver)[0], ["piano", "drums", "noise", "strings"])
        assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows()] == [t.tag for t in expected_tags]

        # search with a file: the file itself comes first; the same file chosen again searches again
        example = collection / "tones" / "high.wav"
        driver.find_element(By.ID, "upload").send_keys(str(example))
        wait_for(lambda: "Like high.wav" in title(driver), "search by file")
        assert page_ids(driver)[0] == ids[str(example)]
        assert set(texts(driver, ".result .score .kind")) == {"audio"}
        driver.find_elements(By.CSS_SELECTOR, ".result button.more")[0].click()
        wait_for(lambda: "More like high.wav" in title(driver), "more like the file's track")
        driver.find_element(By.ID, "upload").send_keys(str(example))
        wait_for(lambda: "Like high.wav" in title(driver), "the same file to search again")
        driver.back()  # an upload's results are a history entry too
        wait_for(lambda: "More like high.wav" in title(driver), "Back from the upload")
        driver.forward()
        wait_for(lambda: "Like high.wav" in title(driver), "Forward to the upload's results")

        # the map: every track drawn; pointing at a dot names it; clicking one plays it (the AIFF one,
        # transcoded) and rings it
        driver.find_element(By.ID, "tab-map").click()
        canvas = driver.find_element(By.ID, "map")
        wait_for(lambda: canvas.get_attribute("data-points") == str(len(index)), "the map")
        target = ids[str(collection / "chords" / "minor.aiff")]
        x, y, width, height, size = map_point(driver, target)
        ActionChains(driver).move_to_element_with_offset(
            canvas, int(x * width / size - width / 2), int(y * height / size - height / 2)).perform()
        tip = driver.find_element(By.ID, "map-tip")
        wait_for(lambda: tip.is_displayed(), "the name of the dot under the pointer")
        assert tip.get_attribute("data-id") == str(target) and tip.text == "minor.aiff (chords)"
        ActionChains(driver).click().perform()
        wait_for(lambda: js(driver, "return document.getElementById('player').dataset.trackId") == str(target),
                 "the clicked point to load")  # fmt: skip
        wait_for(lambda: playing(driver), "the clicked point to play")
        wait_for(lambda: canvas.get_attribute("data-playing") == str(target), "the playing dot's ring")
        ring = js(driver, "const c = document.getElementById('map'); const p = window.muqkit.map.find("
                          "q => q.id === arguments[0]); return [...c.getContext('2d').getImageData("
                          "Math.round(p.cx + 10), Math.round(p.cy), 1, 1).data]", target)  # fmt: skip
        assert ring[3] > 200 and max(ring[:3]) < 90, ring  # the ring's dark stroke, 10 px from the dot's centre
        driver.save_screenshot(str(tmp_path / "map.png"))

        # the map coloured by each track's best tag of the edited list
        Select(driver.find_element(By.ID, "map-colour")).select_by_value("tag")
        best = set(mulan_backend.best_tags(["piano", "drums", "noise", "strings"]))
        legend = lambda: set(driver.find_element(By.ID, "legend").text.split())  # noqa: E731
        wait_for(lambda: legend() == best, f"a legend of the best tags {sorted(best)}")

        # a shared link runs its query
        other = "bright high tones"
        load(driver, f"{url}/?{urllib.parse.urlencode({'q': other, 'k': 5})}")
        wait_for(lambda: other in title(driver), "the shared link's query")
        hits = index.search(model.extract_text_latents([other]), k=5)[0]
        assert page_ids(driver) == [ids[h.path] for h in hits]
        assert driver.find_element(By.ID, "k").get_attribute("value") == "5"
    for name in ("results.png", "map.png"):
        assert (tmp_path / name).stat().st_size > 10_000


@pytest.fixture
def library(mulan_backend, collection, tmp_path):
    """60 tracks (more than a page) in three folders; only the first three files exist (the others were
    moved since the index was built)."""
    import numpy as np

    from muqkit.search import VectorIndex
    from muqkit.serve.backend import IndexBackend

    root = tmp_path / "library"
    paths = [root / f"set{i % 3}" / f"track{i:02d}.wav" for i in range(60)]
    for path in paths[:3]:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(collection / "tones" / "low.wav", path)
    meta = mulan_backend.index.meta
    vectors = np.random.default_rng(0).standard_normal((60, meta.dim)).astype(np.float32)
    index = VectorIndex.create(meta.dim, model_id=meta.model_id, model_sha256=meta.model_sha256)
    index.add([str(p) for p in paths], vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    return IndexBackend(index, mulan_backend.embedder)


def test_track_list_pages_filters_and_shows_server_errors(browser, library, tmp_path):
    from selenium.webdriver.common.by import By

    from muqkit.serve.app import create_app
    from muqkit.serve.testing import running_server

    driver = browser
    names = [t.name for t in library.tracks]
    shown_names = lambda: texts(driver, ".result .name")  # noqa: E731
    with running_server(create_app(library)) as url:
        load(driver, url)
        assert shown_names() == names[:50] and texts(driver, ".result .rank") == [str(i) for i in range(1, 51)]
        assert driver.find_element(By.ID, "page-info").text == "1\u201350 of 60"
        assert driver.find_element(By.ID, "prev-page").get_attribute("disabled") is not None
        # the next page: tracks 51 to 60, in the URL
        driver.find_element(By.ID, "next-page").click()
        wait_for(lambda: shown_names() == names[50:], "the second page")
        assert texts(driver, ".result .rank") == [str(i) for i in range(51, 61)]
        assert "page=2" in driver.current_url and driver.find_element(By.ID, "page-info").text == "51\u201360 of 60"
        assert driver.find_element(By.ID, "next-page").get_attribute("disabled") is not None
        driver.back()
        wait_for(lambda: shown_names() == names[:50], "Back to the first page")
        # a filter on the path (folder and name), in the URL; a shared link to it
        driver.find_element(By.ID, "track-filter").send_keys("set2/track5")
        matches = [t.name for t in library.tracks if "set2/track5" in t.path]
        wait_for(lambda: shown_names() == matches, "the filtered tracks")
        assert driver.find_element(By.ID, "page-info").text == f"1\u2013{len(matches)} of {len(matches)}"
        assert "filter=set2%2Ftrack5" in driver.current_url
        load(driver, f"{url}/?filter=track59")
        wait_for(lambda: shown_names() == ["track59.wav"], "the shared filter")
        assert driver.find_element(By.ID, "track-filter").get_attribute("value") == "track59"
        # the file was moved: the page says so, as the server does, not "no supported source"
        assert texts(driver, ".result .duration") == [""]
        driver.find_element(By.CSS_SELECTOR, ".result button.play").click()
        wait_for(lambda: "its file is missing" in message(driver), "the server's error")
        assert "track59.wav" in message(driver) and str(tmp_path) not in message(driver)
        # a track whose file is there plays, with its duration shown
        load(driver, f"{url}/?filter=track00")
        wait_for(lambda: shown_names() == ["track00.wav"], "track00")
        assert texts(driver, ".result .duration") == ["0:02"]
        driver.find_element(By.CSS_SELECTOR, ".result button.play").click()
        wait_for(lambda: playing(driver), "track00 to play")
        assert message(driver) == ""


@pytest.mark.parametrize(("width", "height"), [(390, 844), (768, 1024)], ids=["phone", "tablet"])
def test_phone_and_tablet(browser, mulan_backend, collection, tmp_path, width, height):
    """Below 900 px the panels stack: nothing scrolls sideways, and Search, Play and the map can be reached
    and clicked (once: a 0 px results column, the Tags/Map panel over the first Play button, the Search
    button off screen, the player without its seek bar)."""
    from selenium.webdriver.common.by import By

    from muqkit.serve.app import create_app
    from muqkit.serve.testing import emulate_screen, running_server

    driver = browser
    # wider than the screen: a page scrolls sideways, or (on a phone) its layout widens past the screen
    sideways = f"return Math.max(document.documentElement.scrollWidth, window.innerWidth) - {width}"
    try:
        emulate_screen(driver, width, height)
        with running_server(create_app(mulan_backend)) as url:
            load(driver, url)
            assert js(driver, sideways) <= 0
            query = "a calm piano piece in a minor key"
            driver.find_element(By.ID, "query").send_keys(query)
            tap(driver, driver.find_element(By.ID, "search-button"))
            wait_for(lambda: query in title(driver), "the results")
            assert len(page_ids(driver)) == 7 and js(driver, sideways) <= 0
            # every result's buttons inside the screen; the results column holds the names
            boxes = js(driver, "return [...document.querySelectorAll('.result button, .result .name')].map("
                               "e => { const r = e.getBoundingClientRect(); return [r.left, r.right, r.width]; })")
            assert all(left >= 0 and right <= width and w > 20 for left, right, w in boxes), boxes
            # the panels stack: the Tags/Map panel below the results, not over them
            bottom, top = js(driver, "return [document.getElementById('results-panel').getBoundingClientRect().bottom,"
                                     " document.querySelector('aside').getBoundingClientRect().top]")  # fmt: skip
            assert top >= bottom
            first = driver.find_elements(By.CSS_SELECTOR, ".result button.play")[0]
            tap(driver, first)
            wait_for(lambda: playing(driver), "the first result to play")
            player = js(driver, "return document.getElementById('player').getBoundingClientRect().width")
            assert player >= 0.85 * width  # room for the seek bar
            driver.save_screenshot(str(tmp_path / "results.png"))
            # the map, below the results: its tab and its dots
            tap(driver, driver.find_element(By.ID, "tab-map"))
            canvas = driver.find_element(By.ID, "map")
            wait_for(lambda: canvas.get_attribute("data-points") == str(len(mulan_backend.tracks)), "the map")
            assert clickable(driver, canvas) and js(driver, sideways) <= 0
            assert canvas.size["width"] >= min(width - 60, 400)
            target = next(t.id for t in mulan_backend.tracks if t.name == "minor.aiff")
            click_map_point(driver, target)
            wait_for(lambda: js(driver, "return document.getElementById('player').dataset.trackId") == str(target),
                     "the tapped dot to load")  # fmt: skip
            wait_for(lambda: playing(driver), "the tapped dot to play")
            driver.save_screenshot(str(tmp_path / "map.png"))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    for name in ("results.png", "map.png"):
        assert (tmp_path / name).stat().st_size > 5_000
