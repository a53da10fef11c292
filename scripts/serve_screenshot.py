"""The README's screenshot of ``muqkit serve`` (docs/img/serve.png), taken in headless Chromium.

Generates a collection (tones, noises and chords in three folders), indexes it with the ``mulan_small``
parity fixture (official format, random weights: the scores and tags show the app, not a trained model),
searches, shows the map coloured by folder and plays the first result, then saves a palette PNG.

    python scripts/serve_screenshot.py --out docs/img/serve.png
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO.parent / "shared" / "parity" / "mulan_small" / "mulan"


def wait_for(condition, timeout: float = 20.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the page did not get there in time")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "img" / "serve.png"))
    parser.add_argument("--model", default=str(FIXTURE), help="MuQ-MuLan folder (default: the parity fixture)")
    parser.add_argument("--query", default="a calm piano piece in a minor key")
    args = parser.parse_args()

    from PIL import Image
    from selenium.webdriver.common.by import By

    from muqkit.search.build import index_audio
    from muqkit.serve.app import create_app
    from muqkit.serve.backend import IndexBackend
    from muqkit.serve.embedder import Embedder, load_embedder
    from muqkit.serve.testing import chromium_driver, running_server, write_collection

    loaded = load_embedder(args.model)
    embedder = Embedder(loaded.model, name="mulan_small (random weights)", fingerprint=loaded.fingerprint)
    with tempfile.TemporaryDirectory() as folder:
        write_collection(Path(folder) / "music", variants=6)
        index, _ = index_audio(loaded.model, [Path(folder) / "music"], model_id=args.model,
                               model_sha256=loaded.fingerprint)  # fmt: skip
        driver = chromium_driver(width=1200, height=860)
        try:
            with running_server(create_app(IndexBackend(index, embedder))) as url:
                driver.get(url)
                wait_for(lambda: driver.execute_script("return document.body.dataset.ready === '1'"))
                driver.find_element(By.ID, "query").send_keys(args.query)
                driver.find_element(By.ID, "search-button").click()
                wait_for(lambda: args.query in driver.find_element(By.ID, "results-title").text)
                driver.find_elements(By.CSS_SELECTOR, ".result button.play")[0].click()
                driver.find_element(By.ID, "tab-map").click()
                points = str(len(index))
                wait_for(lambda: driver.find_element(By.ID, "map").get_attribute("data-points") == points)
                time.sleep(0.5)
                raw = Path(folder) / "raw.png"
                driver.save_screenshot(str(raw))
        finally:
            driver.quit()
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.open(raw).convert("RGB").quantize(colors=128).save(out, optimize=True)
    print(f"{out}: {out.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
