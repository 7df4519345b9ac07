"""Browser tests: a real headless Chromium (Debian's `chromium` + `chromium-driver`,
installed by .ci/run) driven with Selenium, against a real `cep` app served by uvicorn.

`browser` is one session-scoped WebDriver: a fresh profile, no network beyond
127.0.0.1 (other hosts do not resolve, so a page that needs a CDN fails here as it
would offline). `live_url` serves a fresh embedded service for one test."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from service.api.app import create_app
from service.config import ApiConfig, Settings

CHROMIUM = os.environ.get("CEP_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CEP_CHROMEDRIVER", "/usr/bin/chromedriver")


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: browser tests need Debian's chromium "
                    "and chromium-driver (apt-get install -y chromium chromium-driver; "
                    ".ci/run does it)")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager: no driver downloads
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--window-size=1280,900",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def serve(settings: Settings) -> Iterator[str]:
    app = create_app(settings, tick_s=0.05)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                            lifespan="on", ws="none", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        app.state.service.hub.close()
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def live_url(tmp_path: Path) -> Iterator[str]:
    """A started embedded service with no patterns, on a free port."""
    settings = Settings(
        patterns_dir=tmp_path / "patterns", models_dir=tmp_path / "models",
        data_dir=tmp_path / "var", alerts_file=tmp_path / "out" / "alerts.jsonl",
        dead_letters_file=tmp_path / "out" / "dead.jsonl", api=ApiConfig(),
    )
    yield from serve(settings)
