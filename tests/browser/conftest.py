"""Browser tests: Debian's headless `chromium`, driven by Selenium through
`/usr/bin/chromedriver` (both installed by `.ci/run`: `apt-get install chromium
chromium-driver`). One browser per session; each test module starts its own real
`cep serve`.

Without chromium, chromedriver or selenium the tests are skipped with the reason
(`make test` on a developer machine without a browser still runs the rest).
Host names other than 127.0.0.1/localhost do not resolve in this browser, so a page
that needs the internet (a CDN) fails here as it would offline. `live_url` serves a
fresh embedded service (no patterns) in this process for one test.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_server import live_server

from service.api.app import create_app
from service.config import ApiConfig, Settings

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--window-size=1400,1000",
    # no network beyond this machine: a page that needs a CDN fails here as offline
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless Chromium (selenium WebDriver) for the whole session."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    binary = _chromium()
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if binary is None or not Path(driver_path).exists():
        pytest.skip("chromium and chromium-driver are not installed (.ci/run installs them)")
    profile = tempfile.mkdtemp(prefix="cep-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def serve(settings: Settings) -> Iterator[str]:
    with live_server(create_app(settings, tick_s=0.05)) as url:
        yield url


@pytest.fixture
def live_url(tmp_path: Path) -> Iterator[str]:
    """A started embedded service with no patterns, on a free port."""
    settings = Settings(
        patterns_dir=tmp_path / "patterns", models_dir=tmp_path / "models",
        data_dir=tmp_path / "var", alerts_file=tmp_path / "out" / "alerts.jsonl",
        dead_letters_file=tmp_path / "out" / "dead.jsonl", api=ApiConfig(),
    )
    yield from serve(settings)
