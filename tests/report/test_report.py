"""The selection report: contents from a real select run, bad input, and the page in a real browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from builders import scored_pool, sharegpt

from deita.errors import DeitaError
from deita.report.run import ReportConfig, reject_kind, report_file

DEITA = shutil.which("deita")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def pool(n: int) -> list[dict]:
    """Chat records in real ShareGPT shapes, from two sources, with planted near-copies."""
    records = []
    for i in range(n):
        base = i - 1 if i % 6 == 5 else i  # every sixth record copies its neighbour's text
        messages = [("gpt", "(continued)")] if i % 7 == 3 else []
        if i % 11 == 0:
            messages.insert(0, ("system", "You are terse."))
        messages += [("human", f"Explain topic {base} in depth, with examples {base % 5}. " * (1 + base % 4)),
                     ("chatgpt" if i % 4 == 1 else "gpt", f"Topic {base} works like this. " * (2 + base % 9))]
        if i % 3 == 0:
            messages += [("user", f"And why {base}?"), ("gpt", "Because. " * (1 + base % 3))]
        records.append(sharegpt(*messages, id=f"r{i}", source="alpha" if i % 3 else "beta"))
    return records


@pytest.fixture(scope="module")
def selected_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    records = pool(60)
    lines = [json.dumps(r) for r in records]
    lines.insert(10, "{not json")
    (folder / "pool.jsonl").write_text("\n".join(lines) + "\n")
    subprocess.run([DEITA, "select", folder / "pool.jsonl", "-o", folder / "sel.jsonl", "--preset", "offline",
                    "--size", "12", "--on-error", "skip", "--annotate", "-q"], check=True, capture_output=True)
    return folder


def test_select_writes_report_manifest_and_annotations(selected_run):
    html = (selected_run / "sel.jsonl.report.html").read_text()
    stats = json.loads((selected_run / "sel.jsonl.work" / "filter_stats.json").read_text())
    assert stats["funnel"]["input"] == 61 and stats["funnel"]["rejected"] == 1
    for section in ("Funnel", "Pool and selection", "Near-duplicates the diversity filter skipped",
                    "Choosing the threshold", "Five best", "Five worst", "Just below the cut", "By source (source)",
                    "Score health"):
        assert section in html
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert html.count("data:image/png;base64,") >= 7
    assert "invalid JSON" in html  # the rejected record, counted by kind
    for skip in stats["skipped"]:
        assert skip["duplicate_of"] in stats["selected"] and skip["similarity"] > stats["threshold"]
    selected = [json.loads(line) for line in (selected_run / "sel.jsonl").read_text().splitlines()]
    assert [r["deita"]["rank"] for r in selected] == list(range(1, 13))
    assert all(r["deita"]["nearest_selected"] in stats["selected"] for r in selected)
    manifest = json.loads((selected_run / "sel.jsonl.manifest.json").read_text())
    assert manifest["counts"]["selected"] == 12 and manifest["counts"]["rejected"] == 1
    assert len(manifest["input"]["sha256"]) == 64 and len(manifest["output"]["sha256"]) == 64
    assert {"deita", "torch", "transformers", "numpy"} <= set(manifest["versions"])
    assert manifest["config"]["preset"] == "offline" and manifest["seeds"]["filter"] == 42
    assert manifest["models"][0]["config_and_weights_sha256"]


def test_config_file_reproduces_the_output_byte_for_byte(selected_run, tmp_path):
    subprocess.run([DEITA, "select", selected_run / "pool.jsonl", "-o", tmp_path / "again.jsonl", "--config",
                    selected_run / "sel.jsonl.config.yaml", "-q"], check=True, capture_output=True)
    assert (tmp_path / "again.jsonl").read_bytes() == (selected_run / "sel.jsonl").read_bytes()


def test_standalone_report_without_embeddings_says_why(selected_run, tmp_path):
    work = selected_run / "sel.jsonl.work"
    out = report_file(selected_run / "sel.jsonl", scored_pool(selected_run / "sel.jsonl", tmp_path / "scored.jsonl"), tmp_path / "r.html",
                      stats_path=work / "filter_stats.json")
    html = out.read_text()
    assert "No embeddings were given (--embeddings), so the threshold curve is left out." in html
    assert "Near-duplicates the diversity filter skipped" in html


def test_selection_not_in_the_pool_names_the_first_record(selected_run, tmp_path):
    selected = (selected_run / "sel.jsonl").read_text().splitlines()
    stranger = json.dumps(sharegpt(("human", "never in the pool"), ("gpt", "x"), id="zz"))
    (tmp_path / "sel.jsonl").write_text("\n".join([selected[0], stranger, *selected[1:]]) + "\n")
    with pytest.raises(DeitaError, match=r"sel.jsonl, line 2: this selected record is not in the pool"):
        report_file(tmp_path / "sel.jsonl", scored_pool(selected_run / "sel.jsonl", tmp_path / "scored.jsonl"),
                    tmp_path / "r.html")
    result = subprocess.run([DEITA, "report", tmp_path / "sel.jsonl", "--pool",
                             tmp_path / "scored.jsonl", "-o", tmp_path / "r.html"],
                            capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.startswith("error: ") and "line 2" in result.stderr


def test_empty_selection_still_renders(selected_run, tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    out = report_file(tmp_path / "empty.jsonl", scored_pool(selected_run / "sel.jsonl", tmp_path / "scored.jsonl"),
                      tmp_path / "r.html",
                      selected_run / "sel.jsonl.work" / "embeddings.npy", config=ReportConfig(examples=3))
    assert "0 records selected" in out.read_text()


def test_score_health_flags_a_silent_default():
    from deita.report import collect
    from deita.report.run import health_warnings

    facts = collect.PoolFacts(n=10, scores=None, field_means={}, turns=None, instruction_chars=None,
                              response_chars=None, has_system=None, sources=None, source_names=[],
                              selected_index=None)
    from collections import Counter

    facts.score_values = {"quality_scores": Counter({3.0: 40, 4.2: 3, 5.1: 2})}
    warnings = health_warnings(facts, {"input": 100, "rejected": 5, "turns": 45, "truncated_turns": 9}, ("quality_scores",))
    assert any("score exactly 3.0" in w for w in warnings)
    assert any("20.0% of turns" in w for w in warnings) and any("5.0% of the input was rejected" in w for w in warnings)
    assert reject_kind("invalid JSON: Expecting ',' delimiter at column 41") == "invalid JSON"


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="no chromium (apt-get install -y chromium)")
def test_report_in_a_real_browser(selected_run, tmp_path):
    """Headless Chromium: no console errors, every image loaded, the funnel equals the stats JSON."""
    from playwright.sync_api import sync_playwright

    stats = json.loads((selected_run / "sel.jsonl.work" / "filter_stats.json").read_text())
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto((selected_run / "sel.jsonl.report.html").as_uri())
        widths = page.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
        funnel = page.evaluate("Object.fromEntries(Array.from(document.querySelectorAll('#funnel td[data-stage]'))"
                               ".map(td => [td.dataset.stage, Number(td.textContent.replace(/,/g, ''))]))")
        screenshot = Path(os.environ.get("DEITA_SCREENSHOT_DIR", tmp_path)) / "report.png"
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    assert errors == []
    assert widths and all(width > 0 for width in widths)
    cleaning = {stage: stats["funnel"][stage] for stage in ("removed as duplicates", "removed as contaminated")
                if stats["funnel"].get(stage)}  # select's dedup and decontamination stages, when they removed any
    assert funnel == {"input": stats["funnel"]["input"], "rejected": stats["funnel"]["rejected"], **cleaning,
                      "scored": stats["n_pool"], "examined": stats["n_examined"],
                      "skipped as near-duplicates": stats["n_near_duplicates"], "selected": stats["n_selected"]}
    assert screenshot.stat().st_size > 50_000


def test_turn_count_table_shares() -> None:
    """Per turn count (1, 2, 3, 4, 5–9, 10+): the share of pool and of selection; bins with no pool record left out."""
    import numpy as np

    from deita.report.run import turn_counts

    pool = np.asarray([1, 1, 1, 1, 2, 2, 3, 5, 9, 12])
    rows = turn_counts(pool, pool[[0, 4, 7, 9]])
    assert [(r["turns"], r["pool"], r["selected"]) for r in rows] == [
        ("1", 0.4, 0.25), ("2", 0.2, 0.25), ("3", 0.1, 0.0), ("5–9", 0.2, 0.25), ("10+", 0.1, 0.25)]
    assert turn_counts(pool, pool[:0])[0]["selected"] == 0.0


def test_threshold_curve_spans_the_runs_own_tau(selected_run):
    from deita.report.run import THRESHOLDS, curve_thresholds

    assert curve_thresholds(0.9) == THRESHOLDS
    taus = curve_thresholds(0.99)
    assert taus[0] == 0.8 and taus[-1] == 0.99 and 0.99 in taus and len(taus) >= 7
    assert curve_thresholds(0.5)[0] == 0.45 and 0.5 in curve_thresholds(0.5)
    html = (selected_run / "sel.jsonl.report.html").read_text()  # the offline preset runs at τ 0.99
    assert "<tr><td>0.99</td>" in html


def test_the_reject_warning_points_at_the_table_where_it_is(selected_run):
    html = (selected_run / "sel.jsonl.report.html").read_text()
    warning = html.index("see the rejected records by kind under Funnel below")
    assert warning < html.index("<h2>Funnel</h2>") < html.index("Rejected records by kind")


def test_the_offline_signals_are_shown_pool_against_selection(selected_run):
    html = (selected_run / "sel.jsonl.report.html").read_text()
    stats = json.loads((selected_run / "sel.jsonl.work" / "filter_stats.json").read_text())
    assert stats["sort_key"] == ["instruction_lengths", "response_lengths", "offline_quality_scores"]
    assert html.count("data:image/png;base64,") >= 7 + 7  # one distribution per signal besides the sort key's


def test_the_report_says_how_the_threshold_was_chosen(selected_run):
    html = (selected_run / "sel.jsonl.report.html").read_text()
    assert "How the threshold was chosen: τ = 0.99 is the offline preset&#39;s, calibrated for its static embedder" \
        in html
    assert "the probe&#39;s planted exact copies" in html and "(benchmarks/threshold.py," in html  # the figures


def test_a_log_scale_figure_of_equal_values_is_drawn():
    """A pool whose scores are all equal (a server answering alike) once crashed `deita select` in np.histogram."""
    import numpy as np

    from deita.report.figures import distribution

    png = distribution("scores", np.full(6, 3.5), np.full(2, 3.5), log=True)
    assert isinstance(png, str) and len(png) > 100
