"""/docs renders in a real headless Chromium with no network beyond 127.0.0.1: the
Swagger UI assets are installed with the package, not loaded from a CDN."""

from __future__ import annotations

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait


def test_docs_render_offline(browser: webdriver.Chrome, live_url: str) -> None:
    browser.get(live_url + "/docs")
    wait = WebDriverWait(browser, 30)
    title = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".info .title")))
    assert title.text.startswith("cep")
    ops = browser.find_elements(By.CSS_SELECTOR, ".opblock")
    paths = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert len(ops) >= 15 and {"/patterns/{name}", "/events", "/alerts/stream"} <= paths
    # every resource came from the service itself
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(r.startswith(live_url) for r in resources), resources
    assert any(r.endswith("/docs-assets/swagger-ui-bundle.js") for r in resources)
    # the alert is a typed schema: the models section lists it
    schemas = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "section.models")))
    assert "Alert" in schemas.text and "Problem" in schemas.text
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def test_an_operation_expands_and_shows_the_alert_schema(browser: webdriver.Chrome,
                                                          live_url: str) -> None:
    browser.get(live_url + "/docs")
    wait = WebDriverWait(browser, 30)
    summary = wait.until(ec.element_to_be_clickable(
        (By.CSS_SELECTOR, "#operations-alerts-get_alerts_alerts_get .opblock-summary")))
    summary.click()
    body = wait.until(ec.visibility_of_element_located(
        (By.CSS_SELECTOR, "#operations-alerts-get_alerts_alerts_get .opblock-body")))
    assert "last_id" in body.text
