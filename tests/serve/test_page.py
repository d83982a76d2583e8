"""The page in headless Chromium: keyboard submit, the scores in the DOM equal the API's, the near-duplicate
side by side, errors inline, user text escaped, readable at phone width. The screenshot goes to
$DEITA_SCREENSHOT_DIR (docs/serve.png is one) or the test's folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from builders import scored_pool

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--headless", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]


def submit(page, text: str) -> None:
    page.fill("#record", text)
    page.evaluate("document.body.dataset.state = ''")
    page.focus("#record")
    page.keyboard.press("Control+Enter")
    page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)", timeout=600_000)


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="no chromium (apt-get install -y chromium)")
def test_page_scores_equal_the_api_and_show_the_near_duplicate(server, selected, tmp_path):
    from playwright.sync_api import sync_playwright

    work = selected.parent / "sel.jsonl.work"
    top = json.loads((work / "filter_stats.json").read_text())["selected"][0]
    pool = scored_pool(selected, tmp_path / "scored.jsonl").read_text().splitlines()
    record = {"conversations": json.loads(pool[top])["conversations"]}
    api = server.call("POST", "/v1/score", {"records": [record]}).body["results"][0]
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" and "status of 401"
                not in message.text else None)  # Chromium logs the 401 the page answers by asking for the key
        page.on("pageerror", lambda error: errors.append(str(error)))
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(server.url + "/")
        page.wait_for_selector("#key-row", state="visible", timeout=600_000)  # /v1/info answered 401: the page asks for the key
        page.fill("#key", server.key)
        submit(page, json.dumps(record, indent=1))
        assert page.get_attribute("body", "data-state") == "done", page.inner_text("#error")
        shown = float(page.get_attribute("#record-score", "data-value"))
        cells = page.eval_on_selector_all("td[data-column]", "cells => cells.map(c => [c.dataset.column, "
                                          "Number(c.dataset.turn), Number(c.dataset.value)])")
        assert abs(shown - api["score"]) <= 1e-9
        assert len(cells) == 2 * len(api["complexity_scores"])
        for column, turn, value in cells:
            assert abs(value - api[column][turn]) <= 1e-9
        assert page.get_attribute("#verdict", "data-duplicate") == str(top)
        assert "Would be skipped as a near-duplicate of pool record #" + str(top) in page.inner_text("#verdict")
        assert page.is_visible("#side") and page.locator("#neighbours tbody tr").count() == 5
        assert "sum over turns of complexity × quality" in page.inner_text("#aggregation")
        screenshot = Path(os.environ.get("DEITA_SCREENSHOT_DIR", tmp_path)) / "serve.png"
        page.screenshot(path=str(screenshot), full_page=True)

        submit(page, '{"conversations": [')  # the page's own check
        assert "not valid JSON" in page.inner_text("#error")
        submit(page, json.dumps({"conversations": [{"from": "gpt", "value": "no question"}]}))  # the API's
        assert "no turns: the conversation has no user message" in page.inner_text("#error")
        hostile = "<img src=x onerror=alert(1)> & <b>bold</b>"
        submit(page, json.dumps({"question": hostile, "answer": "fine"}))
        assert page.get_attribute("body", "data-state") == "done"
        assert hostile in page.inner_text("#turns") and page.locator("img, #turns b").count() == 0

        page.set_viewport_size({"width": 390, "height": 844})  # a phone
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        browser.close()
    assert errors == []
    assert all(url.startswith(server.url) for url in requests)  # nothing fetched from elsewhere
    assert screenshot.stat().st_size > 30_000
