"""The analyst console in a real headless Chromium against a real `cep serve`.

The flow of the issue: load the console, type a pattern with an error and see the
diagnostic at the right place, fix it, backtest a sample, deploy it, post events and
see its alert arrive live. Also: read-only without a token, user text never rendered
as HTML, the health and models screens, no request leaves the machine.

The tests share one service, so event times grow from test to test in file order
(one watermark per stream).

Screenshots of every screen are written to `$CEP_CONSOLE_SCREENSHOTS` when it is set
(`CEP_CONSOLE_SCREENSHOTS=docs/console make test` refreshes those of docs/console.md).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_server import AUTH, Server, cep_serve
from screens import save_screenshot

pytestmark = pytest.mark.timeout(300)

T0 = 1_700_000_000_000

EDITED_WITH_ERROR = [
    "pattern decline_burst {",
    'description "three declines on a card within two minutes"',
    "from transactions",
    "key card_id",
    "within 2m",
    "match",
    'declined{3,} where status == "declined" and amount > > 0',
    "emit severity high { card = key, declines = count(declined) }",
    "}",
]
EDITED = [line.replace(" and amount > > 0", "") for line in EDITED_WITH_ERROR]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real `cep serve` for the module: embedded mode, an API token, three example
    patterns and the example model `txn_risk` (which risky_burst scores with)."""
    root = tmp_path_factory.mktemp("console")
    with cep_serve(root, ["decline_burst", "card_testing", "risky_burst"]) as s:
        yield s


def wait_for(cond: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = cond()
        except Exception as exc:  # stale elements while the page re-renders
            last = exc
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or cond}: last {last!r}")


def css(browser: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(browser.find_elements(By.CSS_SELECTOR, selector))


def one(browser: Any, selector: str) -> Any:
    return wait_for(lambda: (css(browser, selector) or [None])[0], what=selector)


def click(browser: Any, selector: str) -> None:
    """Click, retrying while the element is being re-rendered."""
    def attempt() -> bool:
        one(browser, selector).click()
        return True

    wait_for(attempt, what=f"a click on {selector}")


def open_console(browser: Any, server: Server, token: str | None = None) -> None:
    browser.get(server.url + "/ui/")
    if token is None:
        browser.execute_script("sessionStorage.clear()")
        browser.refresh()
    wait_for(lambda: browser.execute_script("return document.body.dataset.ready") == "1",
             what="the console to start")
    if token is not None:
        one(browser, "#token").send_keys(token)
        one(browser, "#token-use").click()
        wait_for(lambda: "token set" in one(browser, "#token-state").text)


def type_lines(browser: Any, lines: list[str]) -> None:
    """Type into the editor as a user does (Escape closes completion before Enter)."""
    from selenium.webdriver.common.keys import Keys

    content = one(browser, "#editor .cm-content")
    content.click()
    content.send_keys(Keys.CONTROL, "a")
    content.send_keys(Keys.DELETE)
    for i, line in enumerate(lines):
        content.send_keys(line)
        content.send_keys(Keys.ESCAPE)
        if i < len(lines) - 1:
            content.send_keys(Keys.ENTER)


def editor_text(browser: Any) -> str:
    return str(browser.execute_script(
        "return [...document.querySelectorAll('#editor .cm-line')]"
        ".map(l => l.textContent).join('\\n')"))


def severe_logs(browser: Any) -> list[dict[str, Any]]:
    return [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


CHARTS_JS = """
return Object.fromEntries([...document.querySelectorAll('#health-charts figure.chart')].map(
  f => [f.dataset.name, [f.querySelector('text.max').textContent.split(' ')[1],
        (f.querySelector('polyline')?.getAttribute('points') || '').split(' ')
        .filter(Boolean).length]]))
"""


def shot(browser: Any, name: str) -> None:
    folder = os.environ.get("CEP_CONSOLE_SCREENSHOTS")
    if folder:
        save_screenshot(browser, Path(folder) / f"{name}.png")


def test_read_only_without_a_token(browser: Any, server: Server) -> None:
    open_console(browser, server)
    assert one(browser, "#token-state").text == "read-only"
    assert not one(browser, "#deploy").is_enabled()
    assert not one(browser, "#delete").is_enabled()
    assert one(browser, "#backtest-run").is_enabled()  # dry runs need no token
    # the token goes to sessionStorage only, never to localStorage or a cookie
    one(browser, "#token").send_keys("abc")
    one(browser, "#token-use").click()
    assert browser.execute_script("return sessionStorage.getItem('cep.token')") == "abc"
    assert browser.execute_script("return localStorage.length") == 0
    assert browser.execute_script("return document.cookie") == ""
    assert one(browser, "#deploy").is_enabled()
    one(browser, "#token-forget").click()
    assert browser.execute_script("return sessionStorage.getItem('cep.token')") is None
    assert not one(browser, "#deploy").is_enabled()


def test_write_check_backtest_deploy_and_watch_the_alert_arrive(
    browser: Any, server: Server
) -> None:
    from selenium.webdriver.common.by import By

    open_console(browser, server, token=AUTH["Authorization"].removeprefix("Bearer "))
    names = wait_for(lambda: sorted(r.text for r in css(browser, "#pattern-list a.pattern-link")))
    assert names == ["card_testing", "decline_burst", "risky_burst"]
    click(browser, '#pattern-list a[data-name="decline_burst"]')
    wait_for(lambda: "declined{5,}" in editor_text(browser), what="the source to load")
    wait_for(lambda: css(browser, "#history table"), what="the version history")

    # 1. an error while typing: the diagnostic is underlined at its line and column
    type_lines(browser, EDITED_WITH_ERROR)
    text = editor_text(browser)
    bad_line = next(i for i, line in enumerate(text.split("\n"), 1) if "> >" in line)
    bad_col = text.split("\n")[bad_line - 1].index("> >") + 3
    diag = wait_for(lambda: css(browser, "#diagnostics li.error"), what="a diagnostic")[0]
    assert (diag.get_attribute("data-line"), diag.get_attribute("data-column")) == (
        str(bad_line), str(bad_col))
    assert "unexpected `>`" in diag.text and "hint: expected an expression" in diag.text
    marks = wait_for(lambda: css(browser, ".cm-lintRange-error"), what="the underline")
    assert [m.text for m in marks] == [">"]
    line_of_mark = browser.execute_script(
        "const m = document.querySelector('.cm-lintRange-error');"
        "const lines = [...document.querySelectorAll('#editor .cm-line')];"
        "return lines.indexOf(m.closest('.cm-line')) + 1")
    assert line_of_mark == bad_line
    assert one(browser, "#validity").text == "does not compile"
    shot(browser, "editor-diagnostic")

    # completion offers functions and the stage names of the text
    content = one(browser, "#editor .cm-content")
    content.send_keys(" dist")
    options = wait_for(lambda: [o.text for o in css(browser, ".cm-tooltip-autocomplete li")],
                       what="completion")
    assert any(o.startswith("distinct_count") for o in options), options
    from selenium.webdriver.common.keys import Keys

    content.send_keys(Keys.ESCAPE)

    # 2. fixed: no diagnostics
    type_lines(browser, EDITED)
    wait_for(lambda: one(browser, "#validity").text == "compiles", what="compiles")
    assert css(browser, "#diagnostics li") == []
    assert css(browser, ".cm-lintRange-error") == []

    # 3. backtest on a generated, labelled sample; compare with deployed v1
    Select = __import__("selenium.webdriver.support.ui", fromlist=["Select"]).Select
    Select(one(browser, "#sample-kind")).select_by_value("synthetic")
    n = one(browser, "#sample-n")
    n.clear()
    n.send_keys("5000")
    one(browser, "#backtest-run").click()
    summary = wait_for(lambda: one(browser, "#backtest-summary").text, timeout=60)
    assert "from 5000 events (decline_burst)" in summary
    alerts = int(summary.split()[0])
    assert alerts > 0
    compare = one(browser, '.compare[data-pattern="decline_burst"]').text
    assert compare.startswith("deployed: ") and f"edited: {alerts};" in compare
    gained = int(compare.split("gained ")[1].split(",")[0])
    assert gained > 0  # three declines find more than five
    score_row = one(browser, "table.scores tbody tr").find_elements(By.TAG_NAME, "td")
    assert score_row[0].text == "decline_burst" and score_row[6].text.endswith("%")
    assert css(browser, "svg.timeline rect.incident")
    assert css(browser, "svg.timeline line.alert")
    assert css(browser, "table.per-key tbody tr")
    shot(browser, "backtest")

    # 4. deploy: the version diff, then v2 with v1 draining (or already drained)
    one(browser, "#deploy").click()
    wait_for(lambda: one(browser, "#deploy-diff").is_displayed())
    assert one(browser, "#deploy-diff-title").text == "Deploy decline_burst: v1 → v2"
    added = [e.text for e in css(browser, "#deploy-diff pre.diff div.add")]
    removed = [e.text for e in css(browser, "#deploy-diff pre.diff div.del")]
    assert any("declined{3,}" in a for a in added) and any("declined{5,}" in r for r in removed)
    shot(browser, "deploy-diff")
    one(browser, "#deploy-confirm").click()
    wait_for(lambda: one(browser, "#status").text.startswith("deployed decline_burst v2"))
    detail = httpx.get(server.url + "/patterns/decline_burst").json()
    assert detail["version"] == 2 and "declined{3,}" in detail["source"]
    wait_for(lambda: "runs alone" in one(browser, "#drain-status").text
             or "draining" in one(browser, "#drain-status").text)
    wait_for(lambda: [e.text for e in css(browser, "#history tbody tr td:first-child")]
             == ["v2", "v1"], what="the history to show v2")

    # 5. live alerts: post events, the alert arrives over SSE and opens to its events
    one(browser, "#tab-alerts").click()
    wait_for(lambda: one(browser, "#stream-state").text == "live", what="the SSE stream")
    events = [{"card_id": "c-live", "status": "declined", "amount": 5 + i,
               "merchant": f"m{i}", "ts": T0 + i * 1000} for i in range(3)]
    events.append({"card_id": "c-live", "status": "approved", "amount": 9, "ts": T0 + 200_000})
    r = httpx.post(server.url + "/events?stream=transactions", json=events, headers=AUTH)
    assert r.status_code == 200 and r.json()["alerts"] == 1, r.text
    item = wait_for(lambda: css(browser, '#alert-list li[data-pattern="decline_burst"]'),
                    what="the live alert")[0]
    assert "c-live" in item.text and "v2" in item.text
    click(browser, '#alert-list li[data-pattern="decline_burst"]')
    detail_text = one(browser, "#alert-detail").text
    assert "decline_burst v2 · c-live" in detail_text
    measures = {tr.find_elements(By.TAG_NAME, "td")[0].text:
                tr.find_elements(By.TAG_NAME, "td")[1].text
                for tr in css(browser, "#alert-detail table.measures tbody tr")}
    assert measures == {"card": "c-live", "declines": "3"}
    assert "Stage declined (3 events)" in detail_text
    shot(browser, "alerts")
    assert severe_logs(browser) == []


def completion_options(browser: Any, typed: str) -> list[str]:
    from selenium.webdriver.common.keys import Keys

    content = one(browser, "#editor .cm-content")
    content.send_keys(Keys.CONTROL, Keys.END)
    content.send_keys(Keys.ENTER, typed)
    options: list[str] = wait_for(
        lambda: [o.text for o in css(browser, ".cm-tooltip-autocomplete li")],
        what=f"completion of {typed!r}")
    content.send_keys(Keys.ESCAPE)
    return options


def test_completion_of_stage_names_and_fields_seen_in_recent_events(
    browser: Any, server: Server, tmp_path: Path
) -> None:
    r = httpx.post(server.url + "/events?stream=transactions", headers=AUTH, json=[
        {"card_id": "f1", "merchant_category": "5411", "ts": T0 + 5_000_000}])
    assert r.status_code == 200
    open_console(browser, server, token=AUTH["Authorization"].removeprefix("Bearer "))
    click(browser, "#pattern-new")
    wait_for(lambda: "my_pattern" in editor_text(browser))
    fields = completion_options(browser, "merchant_c")
    assert any(o.startswith("merchant_category") and "field" in o for o in fields), fields
    stages = completion_options(browser, "tin")
    assert any(o.startswith("tiny") and "stage" in o for o in stages), stages
    after_dot = completion_options(browser, "big.merchant_c")
    assert any(o.startswith("merchant_category") for o in after_dot), after_dot


def test_backtest_of_an_uploaded_events_file(
    browser: Any, server: Server, tmp_path: Path
) -> None:
    from selenium.webdriver.support.ui import Select

    events = [{"id": f"u{i}", "card_id": "u1", "type": "purchase", "amount": a,
               "ts": T0 + i * 1000, "label": "card_testing:1"}
              for i, a in enumerate([1.0, 1.5, 0.5, 900.0])]
    events.append({"id": "u9", "card_id": "u2", "type": "purchase", "amount": 3.0,
                   "ts": T0 + 9000})
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    open_console(browser, server)
    click(browser, '#pattern-list a[data-name="card_testing"]')
    # not "tiny{3,}": the new-pattern template the console opens with has it too
    wait_for(lambda: "pattern card_testing" in editor_text(browser), what="the source to load")
    Select(one(browser, "#sample-kind")).select_by_value("file")
    assert one(browser, "#sample-file").is_displayed()
    one(browser, "#sample-file").send_keys(str(path))
    one(browser, "#backtest-run").click()
    summary = wait_for(lambda: one(browser, "#backtest-summary").text, timeout=60)
    assert summary.startswith("1 alert from 5 events (card_testing)"), summary
    row = [td.text for td in one(browser, "table.scores tbody tr").find_elements(
        "css selector", "td")]
    assert row == ["card_testing", "1", "1", "100.0%", "1", "1", "100.0%"]
    # a file that is not JSON lines is refused in the browser with the line number
    path.write_text('{"a": 1}\nnot json\n')
    one(browser, "#sample-file").send_keys(str(path))
    one(browser, "#backtest-run").click()
    wait_for(lambda: "line 2 of events.jsonl is not JSON" in one(browser, "#backtest-error").text)


def test_user_text_is_never_rendered_as_html(browser: Any, server: Server) -> None:
    open_console(browser, server)
    one(browser, "#tab-alerts").click()
    wait_for(lambda: one(browser, "#stream-state").text == "live")
    evil = '<img src=x onerror="window.pwned=1">'
    events = [{"card_id": evil, "type": "purchase", "amount": a, "ts": T0 + 10_000_000 + i}
              for i, a in enumerate([1.0, 1.5, 0.5, 900.0])]
    events.append({"card_id": "z", "ts": T0 + 10_100_000})  # moves the watermark on
    r = httpx.post(server.url + "/events?stream=transactions", json=events, headers=AUTH)
    assert r.json()["alerts"] == 1, r.text
    item = wait_for(lambda: css(browser, '#alert-list li[data-pattern="card_testing"]'))[0]
    assert evil in item.text
    item.click()
    assert evil in one(browser, "#alert-detail").text
    assert css(browser, "#alert-list img, #alert-detail img") == []
    assert browser.execute_script("return window.pwned") is None
    # a malformed line becomes a dead letter, listed by reason, as text
    r = httpx.post(server.url + "/events", content=b"<b>not json</b>\n", headers=AUTH)
    assert r.json()["reasons"] == {"malformed": 1}
    one(browser, "#dead-refresh").click()
    wait_for(lambda: "<b>not json</b>" in one(browser, "#dead-letters").text)
    assert css(browser, "#dead-letters b") == []
    assert "malformed" in one(browser, "#dead-letters table.reasons").text
    shot(browser, "alerts-dead-letters")
    # filters: only card_testing alerts, the live ones too
    one(browser, "#alert-filter-pattern").send_keys("card_testing")
    one(browser, "#alert-filter-apply").click()
    wait_for(lambda: {li.get_attribute("data-pattern") for li in css(browser, "#alert-list li")}
             == {"card_testing"}, what="the filtered list")
    wait_for(lambda: one(browser, "#stream-state").text == "live")
    events = [{"card_id": f"flt-{p}", "type": "purchase", "status": "declined", "amount": a,
               "ts": T0 + 10_200_000 + i} for p in ("a",) for i, a in
              enumerate([1.0, 1.5, 0.5, 0.7, 900.0])]  # five declines: decline_burst too
    events.append({"card_id": "z", "ts": T0 + 10_300_000})
    r = httpx.post(server.url + "/events?stream=transactions", json=events, headers=AUTH)
    assert r.json()["alerts"] >= 2, r.text  # card_testing and decline_burst
    wait_for(lambda: any("flt-a" in li.text for li in css(browser, "#alert-list li")))
    assert {li.get_attribute("data-pattern") for li in css(browser, "#alert-list li")} == {
        "card_testing"}


def test_roll_back_from_the_version_history(browser: Any, server: Server) -> None:
    name = "card_testing"
    source = httpx.get(f"{server.url}/patterns/{name}").json()["source"]
    r = httpx.put(f"{server.url}/patterns/{name}", headers=AUTH,
                  content=source.replace("severity high", "severity critical"))
    assert r.status_code == 200, r.text
    v = r.json()["version"]
    open_console(browser, server, token=AUTH["Authorization"].removeprefix("Bearer "))
    click(browser, f'#pattern-list a[data-name="{name}"]')
    wait_for(lambda: "severity critical" in editor_text(browser))
    button = f'#history button.rollback[data-version="{v - 1}"]'
    assert one(browser, button).is_enabled()
    shot(browser, "patterns-history")
    click(browser, button)
    wait_for(lambda: one(browser, "#status").text.startswith(
        f"rolled {name} back to the text of v{v - 1} (now v{v + 1})"))
    detail = httpx.get(f"{server.url}/patterns/{name}").json()
    assert detail["version"] == v + 1 and detail["source"] == source
    wait_for(lambda: "severity high" in editor_text(browser))
    wait_for(lambda: one(browser, f'#pattern-list a[data-name="{name}"]').find_element(
        "xpath", "./ancestor::tr").text.startswith(f"{name} v{v + 1}"), what="the list")


def test_health_and_models_screens(browser: Any, server: Server) -> None:
    open_console(browser, server)
    one(browser, "#tab-health").click()
    want = {"events/s", "alerts/s", "watermark lag s", "live partial matches",
            "pending timers", "scoring ms/call · txn_risk"}
    t = T0 + 20_000_000
    deadline = time.monotonic() + 60
    while True:  # traffic for a few polls: purchases that risky_burst scores
        events = [{"card_id": f"h{i % 7}", "type": "purchase", "amount": 50.0 + i,
                   "status": "declined" if i % 10 == 0 else "approved",
                   "country": "FR", "home_country": "FR", "ts": t + i * 1000}
                  for i in range(50)]
        t += 50_000
        r = httpx.post(server.url + "/events?stream=transactions", json=events, headers=AUTH)
        assert r.status_code == 200, r.text
        charts = browser.execute_script(CHARTS_JS)  # {name: [max value, points]}
        points = charts.get("events/s", ["", 0])[1]
        if want <= set(charts) and points >= 4:
            break
        assert time.monotonic() < deadline, (sorted(charts), points)
        time.sleep(0.5)
    # declines wait for more declines (decline_burst): the chart saw partial matches
    assert float(charts["live partial matches"][0]) > 0, charts
    assert float(charts["events/s"][0]) > 0, charts
    shot(browser, "health")
    one(browser, "#tab-models").click()
    card = one(browser, '#model-list .model[data-name="txn_risk"]')
    assert "amount" in card.text and "hour" in card.text
    assert not one(browser, "#model-upload").is_enabled()  # read-only: no token
    shot(browser, "models")


def test_model_upload_and_a_refused_delete(browser: Any, server: Server) -> None:
    from console_server import REPO

    open_console(browser, server, token=AUTH["Authorization"].removeprefix("Bearer "))
    one(browser, "#tab-models").click()
    card = '#model-list .model[data-name="txn_risk"]'
    wait_for(lambda: "loads in this process: 1" in one(browser, card).text)
    one(browser, "#model-name").send_keys("txn_risk")
    one(browser, "#model-file").send_keys(str(REPO / "models" / "txn_risk" / "model.skops"))
    one(browser, "#model-manifest").send_keys(
        str(REPO / "models" / "txn_risk" / "manifest.json"))
    one(browser, "#model-upload").click()
    wait_for(lambda: one(browser, "#status").text == "uploaded model txn_risk")
    wait_for(lambda: "loads in this process: 2" in one(browser, card).text)
    # risky_burst scores with it: the service refuses the delete and the console says why
    click(browser, f"{card} button.danger")
    browser.switch_to.alert.accept()
    wait_for(lambda: "risky_burst" in one(browser, "#status").text
             and "error" in one(browser, "#status").get_attribute("class"))
    assert httpx.get(server.url + "/models/txn_risk").status_code == 200


def test_no_request_leaves_the_machine_and_inline_scripts_are_refused(
    browser: Any, server: Server
) -> None:
    open_console(browser, server)
    urls = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(u.startswith(server.url) for u in urls), urls
    # the Content-Security-Policy is in force: an injected inline script does not run
    ran = browser.execute_script(
        "const s = document.createElement('script'); s.textContent = 'window.inlineRan = 1';"
        "document.body.appendChild(s); return window.inlineRan === undefined")
    assert ran is True
    assert any("Content Security Policy" in e["message"] for e in severe_logs(browser))
