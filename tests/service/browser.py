"""Real headless Chromium for the studio tests: finding it, starting it, small page helpers.

The browser tests need Debian's ``chromium`` and ``chromium-driver`` packages and the
``selenium`` Python package (a dev extra). Without them the tests are skipped with a
message naming what is missing; with ``HISTOSYNTH_REQUIRE_BROWSER=1`` (set by ``.ci/run``,
which installs the packages) a missing browser fails the tests instead.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

APT_PACKAGES = {"chromium": ("chromium", "chromium-browser"), "chromium-driver": ("chromedriver",)}
"""Debian package -> the executables it provides."""

WAIT_S = 180.0
"""Generous: generation at 1024x1024 shares two cores with the rest of the suite."""


def find_browser() -> tuple[str, str]:
    """Paths of chromium and chromedriver; skip (or fail in CI) naming what is missing."""
    found = {pkg: next(filter(None, map(shutil.which, names)), None) for pkg, names in APT_PACKAGES.items()}
    missing = [f"the Debian package {pkg!r}" for pkg, path in found.items() if path is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the Python package 'selenium' (pip install -e '.[dev]')")
    if missing:
        message = (
            f"browser tests need {' and '.join(missing)}; install them with "
            "`apt-get install chromium chromium-driver` (.ci/run does this as root)"
        )
        if os.environ.get("HISTOSYNTH_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return str(found["chromium"]), str(found["chromium-driver"])


def start_chromium(downloads: Path) -> Any:
    """Headless Chromium at a laptop's window size, downloading into ``downloads``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1440,900", "--force-device-scale-factor=1", "--lang=en-US"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads), "download.prompt_for_download": False,
    })
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(driver))
    browser.set_script_timeout(60)
    # the viewport itself at 1440x900 (the window size includes the browser's frame)
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 1440, "height": 900, "deviceScaleFactor": 1, "mobile": False,
    })
    return browser


def wait_until(browser: Any, condition: Callable[[Any], Any], what: str, timeout: float = WAIT_S) -> Any:
    """Poll ``condition(browser)`` until it is truthy; the failure names ``what``."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.2).until(condition, message=f"waiting for {what}")


def canvas_colours(browser: Any, selector: str = "#mask-canvas") -> dict[str, int]:
    """Pixel count of each colour (#rrggbb) on a canvas."""
    counts: dict[str, int] = browser.execute_script(
        """
        const c = document.querySelector(arguments[0]);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const counts = {};
        for (let i = 0; i < d.length; i += 4) {
          const k = '#' + ((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]).toString(16).padStart(6, '0');
          counts[k] = (counts[k] || 0) + 1;
        }
        return counts;
        """,
        selector,
    )
    return counts


def opaque_pixels(browser: Any, element: Any) -> int:
    """Pixels of a canvas element that are not fully transparent."""
    count: int = browser.execute_script(
        """
        const c = arguments[0];
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n;
        """,
        element,
    )
    return count


def loaded(browser: Any, images: list[Any]) -> bool:
    """All ``images`` (img elements) finished loading with a size."""
    return bool(browser.execute_script(
        "return arguments[0].every(i => i.complete && i.naturalWidth > 0);", images
    ))


def image_pixels(browser: Any, img: Any) -> np.ndarray:
    """The pixels of an <img> whose source is a data: URL or a same-origin blob: URL."""
    src: str = img.get_attribute("src")
    if src.startswith("data:"):
        data = base64.b64decode(src.split(",", 1)[1])
    else:  # blob: URL, read from inside the page
        b64: str = browser.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            fetch(arguments[0]).then(r => r.blob()).then(b => {
              const reader = new FileReader();
              reader.onload = () => done(reader.result.split(',')[1]);
              reader.readAsDataURL(b);
            });
            """,
            src,
        )
        data = base64.b64decode(b64)
    return np.array(Image.open(io.BytesIO(data)).convert("RGB"))


def screenshot(browser: Any, name: str) -> None:
    """Save the viewport as ``$STUDIO_SCREENSHOTS/<name>.png`` when that variable is set."""
    folder = os.environ.get("STUDIO_SCREENSHOTS")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    browser.execute_script("window.scrollTo(0, 0);")  # the header in view, like a fresh page
    image = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
    image.save(Path(folder) / f"{name}.png", optimize=True)


def severe_console_errors(browser: Any) -> list[str]:
    """Browser console errors other than failed network requests (4xx answers are expected)."""
    return [
        e["message"] for e in browser.get_log("browser")
        if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]
    ]
