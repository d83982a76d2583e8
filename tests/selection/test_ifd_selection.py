"""`filter --strategy ifd`: mean IFD below --max-ifd, highest first, the same diversity walk as deita."""

from __future__ import annotations

import json

import numpy as np
import pytest
from builders import sharegpt, write_jsonl

from deita.errors import DeitaError
from deita.selection import STRATEGIES
from deita.selection.ifd import ifd_record_scores
from deita.selection.run import FilterConfig, filter_file


def reference_selection(per_record: list[list[float | None]], embeddings: np.ndarray, size: int, max_ifd: float,
                        threshold: float) -> list[int]:
    """Plain Python: mean of each record's turns below max_ifd, records without one left out, highest first
    (ties in input order), accept a record when its cosine to every accepted one is at most the threshold."""
    means = {}
    for i, values in enumerate(per_record):
        kept = [v for v in values if v is not None and v < max_ifd]
        if kept:
            means[i] = sum(kept) / len(kept)
    order = sorted(means, key=lambda i: (-means[i], i))
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    chosen: list[int] = []
    for i in order:
        if all(float(unit[i] @ unit[j]) <= threshold for j in chosen):
            chosen.append(i)
        if len(chosen) == size:
            break
    return chosen


def random_pool(n: int, seed: int) -> tuple[list[list[float | None]], np.ndarray]:
    rng = np.random.default_rng(seed)
    per_record = []
    for _ in range(n):
        values: list[float | None] = [float(v) for v in rng.uniform(0.2, 1.3, size=int(rng.integers(1, 4)))]
        if rng.random() < 0.15:
            values[0] = None
        per_record.append(values)
    embeddings = rng.normal(size=(n, 8)).astype(np.float32)
    embeddings[5] = embeddings[3] * 2.0  # near-duplicates: only the better-ranked of each pair can be taken
    embeddings[9] = embeddings[7] + 0.01
    return per_record, embeddings


def write_pool(tmp_path, per_record, embeddings):
    records = [sharegpt(*[(role, f"{role} {i}.{t}") for t in range(len(values)) for role in ("human", "gpt")],
                        id=f"r{i}", ifd_scores=values) for i, values in enumerate(per_record)]
    data = write_jsonl(tmp_path / "pool.jsonl", records)
    np.save(tmp_path / "emb.npy", embeddings)
    return data, tmp_path / "emb.npy"


def test_strategy_table_covers_every_name():
    assert "ifd" in STRATEGIES and STRATEGIES["ifd"].embeddings


def test_record_scores_leave_out_high_and_null_turns():
    scores, selectable = ifd_record_scores([[0.5, 0.7], [0.9, 1.0, None], [1.2, None], [1.0], [0.3, 2.0]], 1.0)
    np.testing.assert_allclose(scores[selectable], [0.6, 0.9, 0.3])
    assert selectable.tolist() == [True, True, False, False, True]


@pytest.mark.parametrize(("size", "max_ifd", "threshold"), [(10, 1.0, 0.9), (-1, 1.0, 0.5), (5, 0.8, 0.95)])
def test_filter_equals_reference(tmp_path, size, max_ifd, threshold):
    per_record, embeddings = random_pool(60, seed=size + 7)
    data, emb = write_pool(tmp_path, per_record, embeddings)
    config = FilterConfig(strategy="ifd", size=size, max_ifd=max_ifd, threshold=threshold, block_size=4, device="cpu")
    report = filter_file(data, tmp_path / "out.jsonl", config, emb, stats_path=tmp_path / "stats.json")
    expected = reference_selection(per_record, embeddings, size, max_ifd, threshold)
    chosen = [int(json.loads(line)["id"][1:]) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert chosen == expected
    unselectable = [i for i, v in enumerate(per_record) if not any(x is not None and x < max_ifd for x in v)]
    assert unselectable and not set(unselectable) & set(chosen)
    assert report.n_unselectable == len(unselectable)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["n_unselectable"] == len(unselectable) and stats["max_ifd"] == max_ifd
    assert stats["n_near_duplicates"] == report.n_examined - len(chosen)
    assert f"{len(unselectable):,} records have no such turn" in report.lines()[0]


def test_records_at_or_above_max_ifd_are_never_selected(tmp_path):
    per_record = [[1.0, 1.5], [0.4], [None], [0.99, 3.0], [1.0]]
    data, emb = write_pool(tmp_path, per_record, np.eye(5, dtype=np.float32))
    report = filter_file(data, tmp_path / "out.jsonl", FilterConfig(strategy="ifd", size=-1, device="cpu"), emb)
    chosen = [json.loads(line)["id"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert chosen == ["r3", "r1"] and report.n_unselectable == 3


@pytest.mark.parametrize(("values", "message"), [
    (None, "line 1: missing 'ifd_scores'; score the data first with deita score --type ifd --model M"),
    ("0.5", "line 1: 'ifd_scores' must be a list of per-turn values, got str"),
    ([0.5, "x"], "line 1: 'ifd_scores' turn 1 is 'x', not a number or null"),
    ([0.0], "line 1: 'ifd_scores' turn 0 is 0.0; an IFD is a positive finite ratio"),
])
def test_bad_ifd_values_name_the_record(tmp_path, values, message):
    record = sharegpt(("human", "q"), ("gpt", "a"))
    if values is not None:
        record["ifd_scores"] = values
    data = write_jsonl(tmp_path / "pool.jsonl", [record])
    np.save(tmp_path / "emb.npy", np.ones((1, 4), dtype=np.float32))
    with pytest.raises(DeitaError, match=message.replace("(", r"\(").replace(")", r"\)")):
        filter_file(data, tmp_path / "out.jsonl", FilterConfig(strategy="ifd", device="cpu"), tmp_path / "emb.npy")


def test_sort_key_does_not_apply(tmp_path):
    data, emb = write_pool(tmp_path, [[0.5]], np.ones((1, 4), dtype=np.float32))
    with pytest.raises(DeitaError, match="--sort-key does not apply to --strategy ifd"):
        filter_file(data, tmp_path / "out.jsonl", FilterConfig(strategy="ifd", sort_key=("x",), device="cpu"), emb)


def test_report_of_an_ifd_selection(tmp_path):
    """`deita report` ranks an ifd selection as the filter did: records with no turn below --max-ifd (a null
    turn, or every turn at 1 or above) have no score and never enter the threshold curve's walk."""
    from deita.report.run import ReportConfig, report_file

    per_record, embeddings = random_pool(40, seed=3)
    data, emb = write_pool(tmp_path, per_record, embeddings)
    stats_path = tmp_path / "stats.json"
    filter_file(data, tmp_path / "out.jsonl", FilterConfig(strategy="ifd", size=8, device="cpu"), emb,
                stats_path=stats_path)
    html = tmp_path / "report.html"
    report_file(tmp_path / "out.jsonl", data, html, emb, config=ReportConfig(),
                stats=json.loads(stats_path.read_text()))
    text = html.read_text()
    assert "ranked by ifd_scores" in text and '<th class="n">examined</th>' in text  # the threshold curve's table
    assert "score nan" not in text.lower()  # no unscored record among the best, worst or just below the cut
