"""Helpers for tests, benchmarks and screenshots: a generated music collection and the app in a thread."""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

NOTES = {"C": 261.63, "D": 293.66, "E": 329.63, "F": 349.23, "G": 392.0, "A": 440.0, "B": 493.88}


def write_collection(root: str | os.PathLike[str], *, variants: int = 1, seconds: float = 2.5,
                     sample_rate: int = 24000, seed: int = 0) -> list[Path]:  # fmt: skip
    """Write generated audio in three folders, ``variants`` files of each kind: ``tones/`` (sines),
    ``noise/`` (white and brown noise), ``chords/`` (major and minor triads; the first minor one as AIFF,
    a format browsers do not play). One variant gives seven files; formats: WAV, FLAC, Ogg, AIFF.

    Returns:
        The files written, sorted.
    """
    import soundfile as sf

    rng = np.random.default_rng(seed)
    root = Path(root)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    names = list(NOTES)

    def sine(freqs: list[float]) -> np.ndarray:
        return np.mean([np.sin(2 * math.pi * f * t + rng.uniform(0, 2 * math.pi)) for f in freqs], axis=0)

    files: dict[str, np.ndarray] = {}
    for v in range(variants):
        tag = "" if v == 0 else f"-{v}"
        base = NOTES[names[v % len(names)]] * 2 ** (v // len(names))
        files[f"tones/low{tag}.wav"] = sine([base / 2])
        files[f"tones/mid{tag}.flac"] = sine([base * 2])
        files[f"tones/high{tag}.wav"] = sine([base * 8])
        files[f"noise/white{tag}.wav"] = rng.standard_normal(t.size)
        files[f"noise/brown{tag}.ogg"] = np.cumsum(rng.standard_normal(t.size))
        files[f"chords/major{tag}.wav"] = sine([base, base * 5 / 4, base * 3 / 2])
        files[f"chords/minor{tag}.{'aiff' if v == 0 else 'wav'}"] = sine([base, base * 6 / 5, base * 3 / 2])
    for name, wave in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        wave = wave - wave.mean()
        sf.write(path, (0.5 * wave / np.abs(wave).max()).astype(np.float32), sample_rate)
    return sorted(root / name for name in files)


@contextmanager
def running_server(app: Any, *, host: str = "127.0.0.1", timeout: float = 20.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on a free port of ``host``; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the app did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


SCREENS = {"desktop": (1280, 900), "tablet": (768, 1024), "phone": (390, 844)}  # CSS pixels


class NoBrowser(RuntimeError):
    """Headless Chromium or its driver is not installed."""


def chromium_driver(*, width: int = 1280, height: int = 900) -> Any:
    """A Selenium driver of headless Chromium (Debian's ``chromium`` and ``chromium-driver``), audio muted
    and autoplay allowed. Quit it when done.

    Raises:
        NoBrowser: selenium, ``chromium`` or ``chromedriver`` is missing (the message says how to install it),
            or Chromium cannot start on this machine (the message gives the driver's reason).
    """
    import shutil

    try:
        from selenium import webdriver
    except ModuleNotFoundError as exc:
        raise NoBrowser("selenium is not installed: pip install 'muqkit[dev]'") from exc
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        raise NoBrowser("headless Chromium is not installed: apt-get install chromium chromium-driver "
                        "(scripts/setup.sh installs them when run as root)")  # fmt: skip
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--mute-audio",
                 "--autoplay-policy=no-user-gesture-required", f"--window-size={width},{height}",
                 "--no-first-run", "--hide-scrollbars"):
        options.add_argument(flag)  # fmt: skip
    from selenium.common.exceptions import WebDriverException

    try:
        chrome = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
    except WebDriverException as exc:  # e.g. a snap stand-in for chromium inside a container
        raise NoBrowser(f"headless Chromium ({binary}) cannot start here: {exc.msg}") from exc
    chrome.set_page_load_timeout(30)
    return chrome


def emulate_screen(driver: Any, width: int, height: int, *, mobile: bool = True) -> None:
    """Lay the page out as on a ``width`` x ``height`` (CSS pixels) screen, as a phone or tablet does when
    ``mobile`` (the page's viewport meta tag applies, scrollbars overlay the page); reload the page after."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})  # fmt: skip
