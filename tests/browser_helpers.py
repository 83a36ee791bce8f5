"""Headless Chromium for the ``browser`` tests (Debian's chromium + chromium-driver, via selenium).

Without them the tests skip with :data:`INSTALL_HINT`. The page is opened with the network
switched off (DevTools network emulation), so a report that needed a CDN would fail to draw.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np

INSTALL_HINT = ("browser tests need headless Chromium: apt-get install chromium chromium-driver, "
                "and pip install selenium (in the test extra)")  # fmt: skip
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
DRIVER = ("chromedriver", "chromium-driver")


def _which(names: tuple[str, ...]) -> str | None:
    return next((p for p in map(shutil.which, names) if p), None)


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return INSTALL_HINT
    if _which(CHROMIUM) is None or _which(DRIVER) is None:
        return INSTALL_HINT
    return None


def start_browser(width: int = 1100, height: int = 900):
    """A headless Chromium (software WebGL) with its console log kept and the network off."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _which(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--hide-scrollbars",
                f"--window-size={width},{height}", "--use-angle=swiftshader",
                "--enable-unsafe-swiftshader", "--force-device-scale-factor=1"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(_which(DRIVER)))
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})  # fmt: skip
    return driver


def open_report(driver, path: Path, timeout: float = 120.0) -> None:
    """Load ``path`` and wait until the 3D viewer has drawn."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(Path(path).resolve().as_uri())
    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script("return document.body.dataset.viewer") == "ready")


def draws(driver) -> int:
    return int(driver.execute_script("return document.body.dataset.viewerDraws || '0'"))


def wait_draw(driver, before: int, timeout: float = 60.0) -> None:
    """Wait until the viewer has drawn again after ``before`` draws."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: draws(d) > before)


def screenshot(driver, element_id: str) -> np.ndarray:
    """(H, W, 3) uint8 screenshot of one element."""
    from PIL import Image

    element = driver.find_element("id", element_id)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    return np.asarray(Image.open(io.BytesIO(element.screenshot_as_png)).convert("RGB"))


def severe_logs(driver) -> list[str]:
    """Console entries of level SEVERE (script errors, failed loads) and caught window errors."""
    logs = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return logs + list(driver.execute_script("return window.align3dErrors || []"))
