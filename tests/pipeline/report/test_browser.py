"""The report in a real headless Chromium: no console errors, every plot drawn, nothing fetched from the
network, and the planted `<script>` and markup documents shown as text without running."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from gristmill.pipeline.report.render import write_report
from report_corpus import PLANTED_MARKUP, PLANTED_SCRIPT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs a chromium binary (apt-get install -y chromium)")


def write_metrics(path: Path) -> Path:
    rng = np.random.default_rng()
    records = [{"step": step, "loss": float(8 / np.sqrt(step) + rng.normal(0, 0.05)), "lr": 1e-3,
                "tokens_per_s": float(rng.uniform(4e4, 5e4)), "mfu": float(rng.uniform(0.3, 0.4))}
               for step in range(1, 101)]
    records += [{"step": step, "val_loss": float(8 / np.sqrt(step))} for step in range(20, 101, 20)]
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_page_loads_offline_draws_every_plot_and_runs_no_document_markup(report_run, tmp_path: Path) -> None:
    page_path = write_report(report_run.out, tmp_path / "report.html", write_metrics(tmp_path / "metrics.jsonl"))
    figures = page_path.read_text().count('class="plotly-graph-div"')
    assert figures >= 8

    problems, requests = [], []
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda message: message.type in ("error", "warning") and problems.append(message.text))
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(page_path.as_uri(), wait_until="load")
            drawn_plots = ("[...document.querySelectorAll('.plotly-graph-div')]"
                           ".filter(div => div.querySelector('.main-svg g.trace')).length")
            page.wait_for_function(f"{drawn_plots} >= {figures}", timeout=30_000)
            drawn = page.evaluate(drawn_plots)
            pwned = page.evaluate("window.__pwned === undefined ? null : window.__pwned")
            title = page.title()
            texts = page.evaluate("[...document.querySelectorAll('pre.doc-text')].map(pre => pre.textContent)")
            injected = page.evaluate("document.querySelectorAll('img, pre.doc-text b, .sample i').length")
        finally:
            browser.close()

    assert problems == []
    assert [url for url in requests if not url.startswith(("file:", "data:", "blob:"))] == []
    assert drawn == figures
    assert pwned is None and title.startswith("gristmill report")
    assert any(text.startswith(PLANTED_SCRIPT) for text in texts)
    assert any(text.startswith(PLANTED_MARKUP) for text in texts)
    assert injected == 0
