"""Screenshots of ``muqkit serve`` (docs/img/serve*.png), taken in headless Chromium.

Generates a collection (tones, noises and chords in three folders), indexes it with the ``mulan_small``
parity fixture (official format, random weights: the scores and tags show the app, not a trained model),
searches, plays the first result and shows the map coloured by folder, on three screens: a desktop
(``serve.png``, 1200 x 860), a tablet (``serve-tablet.png``, 768 x 1024) and a phone (``serve-phone.png``,
390 x 844, the results; ``serve-phone-map.png``, the map below them, its playing dot ringed). Each is saved
as a palette PNG.

    python scripts/serve_screenshot.py --out-dir docs/img
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO.parent / "shared" / "parity" / "mulan_small" / "mulan"
SCREENS = {"serve.png": (1200, 860, False), "serve-tablet.png": (768, 1024, True), "serve-phone.png": (390, 844, True)}


def wait_for(condition, timeout: float = 20.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the page did not get there in time")
        time.sleep(0.05)


def click(driver, element) -> None:  # noqa: ANN001
    """Scroll ``element`` to the middle of the screen (as a user would, clear of the fixed player), click it."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def save(raw: Path, out: Path) -> None:
    from PIL import Image

    out.parent.mkdir(parents=True, exist_ok=True)
    Image.open(raw).convert("RGB").quantize(colors=128).save(out, optimize=True)
    print(f"{out}: {out.stat().st_size // 1024} KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=str(REPO / "docs" / "img"))
    parser.add_argument("--model", default=str(FIXTURE), help="MuQ-MuLan folder (default: the parity fixture)")
    parser.add_argument("--query", default="a calm piano piece in a minor key")
    args = parser.parse_args()

    from selenium.webdriver.common.by import By

    from muqkit.search.build import index_audio
    from muqkit.serve.app import create_app
    from muqkit.serve.backend import IndexBackend
    from muqkit.serve.embedder import Embedder, load_embedder
    from muqkit.serve.testing import chromium_driver, emulate_screen, running_server, write_collection

    loaded = load_embedder(args.model)
    embedder = Embedder(loaded.model, name="mulan_small (random weights)", fingerprint=loaded.fingerprint)
    out_dir = Path(args.out_dir)
    with tempfile.TemporaryDirectory() as folder:
        write_collection(Path(folder) / "music", variants=6)
        index, _ = index_audio(loaded.model, [Path(folder) / "music"], model_id=args.model,
                               model_sha256=loaded.fingerprint)  # fmt: skip
        driver = chromium_driver(width=1200, height=860)
        raw = Path(folder) / "raw.png"
        try:
            with running_server(create_app(IndexBackend(index, embedder))) as url:
                for name, (width, height, mobile) in SCREENS.items():
                    emulate_screen(driver, width, height, mobile=mobile)
                    driver.get(f"{url}/?q={args.query.replace(' ', '+')}")
                    wait_for(lambda: driver.execute_script("return document.body.dataset.ready === '1'"))
                    wait_for(lambda: args.query in driver.find_element(By.ID, "results-title").text)
                    first = driver.find_elements(By.CSS_SELECTOR, ".result button.play")[0]
                    click(driver, first)
                    click(driver, driver.find_element(By.ID, "tab-map"))
                    wait_for(lambda: driver.find_element(By.ID, "map").get_attribute("data-points") == str(len(index)))
                    wait_for(lambda: driver.find_element(By.ID, "map").get_attribute("data-playing") != "")
                    driver.execute_script("window.scrollTo(0, 0)")
                    time.sleep(0.5)
                    driver.save_screenshot(str(raw))
                    save(raw, out_dir / name)
                    if name == "serve-phone.png":  # the map, below the results on a phone
                        driver.execute_script("document.querySelector('aside').scrollIntoView({block: 'start'})")
                        time.sleep(0.3)
                        driver.save_screenshot(str(raw))
                        save(raw, out_dir / "serve-phone-map.png")
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
