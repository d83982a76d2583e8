"""`deita report`: one self-contained HTML page that explains a selection against its pool.

Everything the page shows is computed here from the pool, the selection, the filter's statistics (funnel
and provenance) and, when given, the embeddings; `template.html.j2` only lays it out (jinja2 escapes
every text). Counts are exact; plots sample at most `figures.MAX_POINTS` values.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from deita import __version__
from deita.data import atomic
from deita.data.paths import check_paths, prepare_output
from deita.data.records import Record
from deita.errors import DeitaError
from deita.report import collect, figures
from deita.report.config import ReportConfig
from deita.report.probe import probe_context, read_probe
from deita.report.stats import load_stats
from deita.selection.config import AGGREGATES
from deita.selection.embeddings import open_embeddings
from deita.selection.ifd import IFD_KEY
from deita.selection.scores import resolve_sort_key

THRESHOLDS = tuple(round(0.80 + 0.025 * i, 3) for i in range(7))
"""The threshold curve's τ values for a run at a τ inside them: 0.80 to 0.95 in steps of 0.025."""


def curve_thresholds(tau: float) -> tuple[float, ...]:
    """The curve's τ values: THRESHOLDS where they hold the run's τ, else seven steps from the lower of 0.80
    and τ − 0.05 up to the higher of 0.95 and τ (at most 1), with τ itself among them: the curve always spans
    the threshold the run used (the offline preset's 0.99 included)."""
    if THRESHOLDS[0] <= tau <= THRESHOLDS[-1]:
        grid = THRESHOLDS
    else:
        low, high = min(0.80, tau - 0.05), max(0.95, min(tau, 1.0))
        grid = tuple(low + (high - low) * i / 6 for i in range(7))
    return tuple(sorted({round(value, 3) for value in (*grid, tau)}))
CURVE_CAP = 3
"""The curve's walk stops after CURVE_CAP × size candidates (at least 1,000): past that, τ is too tight."""
HEALTH_MODE_SHARE = 0.2
HEALTH_REJECT_RATE = 0.01


def _text(record: Record, limit: int) -> str:
    parts = []
    for turn in record.turns:
        parts.append(f"USER: {turn.instruction}")
        if turn.response:
            parts.append(f"ASSISTANT: {turn.response}")
    text = "\n".join(parts)
    return text if len(text) <= limit else text[:limit] + f" … ({len(text) - limit:,} more characters)"


def reject_kind(reason: str) -> str:
    """A reject reason without its specifics, for counting by kind."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "…", reason.split(":")[0] if ":" in reason[:40] else reason)
    return " ".join(text.split()[:8])


def _reject_kinds(path: Path | None) -> Counter:
    """The rejects counted by their kind and reason ("parse: invalid JSON"); rows of older files have no kind."""
    kinds: Counter = Counter()
    if path is not None and path.exists():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
                reason = reject_kind(row["reason"])
                kinds[f"{row['kind']}: {reason}" if isinstance(row.get("kind"), str) else reason] += 1
            except (ValueError, KeyError, TypeError):
                kinds["unreadable rejects line"] += 1
    return kinds


def _curve(scores: np.ndarray, embeddings: np.ndarray, size: int, tau: float) -> list[tuple[float, int, bool]]:
    from deita.selection.deita import deita_filter

    target = len(scores) if size == -1 else min(size, len(scores))
    cap = min(len(scores), max(CURVE_CAP * target, 1000))
    points = []
    scored = np.isfinite(scores)  # records without a score (ifd: no turn below --max-ifd) are never candidates
    for threshold in curve_thresholds(tau):
        result = deita_filter(np.where(scored, scores, 0.0), embeddings, target, threshold, max_examined=cap,
                              device="cpu", selectable=scored)
        points.append((threshold, result.n_examined, len(result.indices) >= target))
    return points


def health_warnings(facts: collect.PoolFacts, funnel: dict[str, Any], sort_key: tuple[str, ...]) -> list[str]:
    """The report's score-health warnings: what in the pool's scores or the funnel a user should look at."""
    warnings = []
    for name, values in facts.score_values.items():
        total = sum(values.values())
        if total == 0:
            if name in facts.nan_scores and facts.nan_scores[name] == 0:
                warnings.append(f"'{name}' has no numeric values in the pool")
            continue
        value, count = values.most_common(1)[0]
        if len(values) == 1:
            warnings.append(f"'{name}' is constant ({value}) over all {total:,} turns: it cannot rank anything")
        elif count / total > HEALTH_MODE_SHARE:
            warnings.append(f"{count / total:.0%} of '{name}' turns score exactly {value}: a default value "
                            "(like the old toolkit's silent 3.0) looks like this")
        if facts.nan_scores.get(name):
            warnings.append(f"'{name}' has {facts.nan_scores[name]:,} NaN turn scores")
    turns = funnel.get("turns")
    truncated = funnel.get("truncated_turns")
    if turns and truncated:
        warnings.append(f"{truncated / turns:.1%} of turns ({truncated:,}) were truncated to fit the scorer's "
                        "context")
    if funnel.get("input") and funnel.get("rejected", 0) / funnel["input"] > HEALTH_REJECT_RATE:
        warnings.append(f"{funnel['rejected'] / funnel['input']:.1%} of the input was rejected "
                        f"({funnel['rejected']:,} records): see the rejected records by kind under Funnel below")
    return warnings


def build_report(selected_path: Path, pool_path: Path, embeddings_path: Path | None, stats: dict[str, Any],
                 config: ReportConfig, rejects_path: Path | None = None, probe: dict[str, Any] | None = None,
                 pool_records: Iterable[Record] | None = None, selected_rows: np.ndarray | None = None) -> str:
    """The report's HTML, from one read of the pool; with `probe` (a `deita probe` result), its section too.

    `pool_records`: the pool's scored records, when they come from elsewhere than `pool_path` (`select`'s
    columns merged into the pool's records); `selected_rows`: the selected records' positions in that
    stream, in selection order, when known (then the selection file is not read)."""
    selection, keys = collect.read_selection(selected_path) if selected_rows is None else ([], [])
    records = iter(pool_records if pool_records is not None else
                   collect.iter_records(pool_path, policy=collect.CANNOT_SKIP))
    first = next(records, None)
    if first is None:
        raise DeitaError(f"{pool_path}: the pool has no records")
    sort_key = tuple(stats.get("sort_key") or resolve_sort_key(None, first.raw))
    skipped = stats.get("skipped") or []
    rng = np.random.default_rng(config.seed)
    shown = sorted(rng.choice(len(skipped), min(config.examples, len(skipped)), replace=False).tolist()) \
        if skipped else []
    evidence_rows = [skipped[i] for i in shown]
    n_examined = int(stats.get("n_examined", len(selection)))
    source_field = collect.detect_source_field(first, config.source_field)
    aggregate = str(stats.get("aggregate") or "sum")
    if aggregate not in AGGREGATES:
        raise DeitaError(f"the filter statistics name an unknown aggregate {aggregate!r} (valid: {', '.join(AGGREGATES)})")
    facts = collect.collect_pool(itertools.chain([first], records), pool_path, selected_path, selection, keys,
                                 sort_key, {int(row["index"]) for row in evidence_rows}, n_examined, source_field,
                                 float(stats.get("max_ifd") or 1.0), selected_rows, aggregate)
    if selected_rows is not None:
        selection = [facts.kept[int(row)] for row in selected_rows]
    sel = facts.selected_index
    by_pool_index = {int(index): record for index, record in zip(sel, selection, strict=True)}
    funnel_counts = dict(stats.get("funnel") or {})
    funnel_counts.setdefault("input", facts.n + funnel_counts.get("rejected", 0))
    funnel_counts.setdefault("rejected", 0)
    kinds = _reject_kinds(rejects_path)
    n_skipped = int(stats.get("n_near_duplicates", len(skipped)))
    stages = [("input", funnel_counts["input"]), ("rejected", funnel_counts["rejected"])]
    for name in ("removed as duplicates", "removed as contaminated"):
        if funnel_counts.get(name):
            stages.append((name, funnel_counts[name]))
    stages += [("scored", facts.n), ("examined", n_examined), ("skipped as near-duplicates", n_skipped)]
    if "n_over_budget" in stats:
        stages.append(("skipped: over the token budget", int(stats["n_over_budget"])))
    if "n_group_full" in stats:
        stages.append((f"skipped: {stats.get('source_field')} group full", int(stats["n_group_full"])))
    stages.append(("selected", len(selection)))

    distributions = []
    scores = facts.scores
    if scores is not None:
        title = f"final score ({' × '.join(sort_key)}, {AGGREGATES[aggregate]})" if sort_key != (IFD_KEY,) else \
            f"mean IFD of the turns below {stats.get('max_ifd', 1.0)}"
        distributions.append(figures.distribution(title, scores, scores[sel]))
    for name, means in facts.field_means.items():
        if np.isfinite(means).any():
            distributions.append(figures.distribution(f"{name} (mean per record)", means, means[sel]))
    distributions += [
        figures.distribution("turns per record", facts.turns, facts.turns[sel], discrete=True),
        figures.distribution("instruction length (characters)", facts.instruction_chars,
                             facts.instruction_chars[sel], log=True),
        figures.distribution("response length (characters)", facts.response_chars, facts.response_chars[sel],
                             log=True),
    ]
    system_share = (float(facts.has_system.mean()), float(facts.has_system[sel].mean()) if len(sel) else 0.0)

    diversity_note = None
    curve_image = curve_rows = None
    embeddings = None
    if embeddings_path is None:
        diversity_note = "No embeddings were given (--embeddings), so the threshold curve is left out."
    elif scores is None:
        diversity_note = f"The pool's records do not carry the sort key {', '.join(sort_key)}, so no threshold curve."
    else:
        embeddings = open_embeddings(embeddings_path, facts.n, pool_path)
        size = int(stats.get("n_selected", len(selection))) or 1
        points = _curve(scores, embeddings, size, float(stats.get("threshold", 0.9)))
        curve_image = figures.threshold_curve(points, size, float(stats.get("threshold", 0.9)))
        curve_rows = [{"tau": tau, "examined": n, "reached": reached} for tau, n, reached in points]
    evidence = []
    for row in evidence_rows:
        candidate = facts.kept.get(int(row["index"]))
        kept = by_pool_index.get(int(row["duplicate_of"]))
        if candidate is not None and kept is not None:
            evidence.append({"similarity": row["similarity"], "index": row["index"], "kept_index": row["duplicate_of"],
                             "candidate": _text(candidate, config.text_chars), "kept": _text(kept, config.text_chars)})
    if not skipped:
        evidence_note = ("The statistics list no skipped candidates (none were near-duplicates at this threshold)."
                         if stats.get("skipped") is not None else
                         "No filter statistics with provenance were given (--stats), so no near-duplicate evidence.")
    else:
        evidence_note = None

    def shown_rows(positions: list[int]) -> list[dict[str, Any]]:
        return [{"rank": rank + 1, "index": int(sel[rank]),
                 "score": None if scores is None else float(scores[sel[rank]]),
                 "text": _text(selection[rank], config.text_chars)} for rank in positions]

    order = list(range(len(selection)))
    if scores is not None:
        order.sort(key=lambda rank: -scores[sel[rank]])
    best, worst = shown_rows(order[:5]), shown_rows(order[-5:][::-1] if len(order) > 5 else [])
    below = [{"index": s.index, "score": s.score, "text": _text(s.record, config.text_chars)} for s in facts.below_cut]
    sources = None
    if facts.sources is not None:
        pool_counts = np.bincount(facts.sources, minlength=len(facts.source_names))
        sel_counts = np.bincount(facts.sources[sel], minlength=len(facts.source_names)) if len(sel) else \
            np.zeros(len(facts.source_names), dtype=np.int64)
        sources = sorted(({"name": name, "pool": int(pool_counts[i]), "selected": int(sel_counts[i]),
                           "rate": sel_counts[i] / pool_counts[i] if pool_counts[i] else 0.0}
                          for i, name in enumerate(facts.source_names)), key=lambda r: -r["pool"])
    context = {
        "version": __version__, "selected_path": str(selected_path), "pool_path": str(pool_path),
        "stats": stats, "funnel": stages, "funnel_image": figures.funnel(stages),
        "reject_kinds": kinds.most_common(), "distributions": distributions, "system_share": system_share,
        "diversity_note": diversity_note, "curve_image": curve_image, "curve_rows": curve_rows,
        "evidence": evidence, "evidence_note": evidence_note, "n_skipped": n_skipped, "best": best, "worst": worst,
        "below": below, "below_note": None if below or n_examined + collect.BELOW_CUT <= collect.MAX_HELD_FOR_CUT
        else "Too many candidates were examined to keep the records below the cut.",
        "sources": sources, "source_field": source_field, "warnings": health_warnings(facts, funnel_counts, sort_key),
        "sort_key": sort_key, "n_selected": len(selection), "n_pool": facts.n,
        "turn_counts": turn_counts(facts.turns, facts.turns[sel]), "aggregate": aggregate,
        "probe": probe_context(probe) if probe is not None else None,
    }
    return _render(context)


def turn_counts(pool: np.ndarray, selected: np.ndarray) -> list[dict[str, Any]]:
    """Rows of the turn-count table: per turn count (1, 2, 3, 4, 5–9, 10+), the share of the pool and of the
    selection, so a reader sees whether the aggregate favours long conversations."""
    bins = [(1, 1), (2, 2), (3, 3), (4, 4), (5, 9), (10, None)]
    rows = []
    for low, high in bins:
        upper = np.inf if high is None else high
        in_pool, in_selection = int(((pool >= low) & (pool <= upper)).sum()), int(((selected >= low) &
                                                                                 (selected <= upper)).sum())
        if in_pool:
            rows.append({"turns": str(low) if low == high else f"{low}–{high}" if high else f"{low}+",
                         "pool": in_pool / len(pool), "selected": in_selection / len(selected) if len(selected) else 0.0})
    return rows


def _render(context: dict[str, Any]) -> str:
    import jinja2

    environment = jinja2.Environment(loader=jinja2.PackageLoader("deita.report", "."),
                                     autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)
    return environment.get_template("template.html.j2").render(**context)


def report_file(selected_path: str | Path, pool_path: str | Path, output_path: str | Path,
                embeddings_path: str | Path | None = None, stats_path: str | Path | None = None,
                config: ReportConfig = ReportConfig(), rejects_path: str | Path | None = None,
                stats: dict[str, Any] | None = None, probe_path: str | Path | None = None) -> Path:
    """Write the report for `selected_path` against `pool_path` (with the probe section when `probe_path`, a
    `deita probe` JSON, is given); returns the output path."""
    selected_path, pool_path, output_path = Path(selected_path), Path(pool_path), Path(output_path)
    check_paths({"selection": selected_path, "--pool": pool_path, "--embeddings": embeddings_path,
                 "--stats": stats_path, "--probe": probe_path}, {"--output": output_path})
    prepare_output("--output", output_path)
    for label, path in (("selection", selected_path), ("--pool", pool_path), ("--embeddings", embeddings_path),
                        ("--stats", stats_path), ("--probe", probe_path)):
        if path is not None and not Path(path).exists():
            raise DeitaError(f"{label} {path}: no such file or directory")
    if stats is None:
        stats = load_stats(stats_path) if stats_path is not None else {}
    probe = read_probe(Path(probe_path)) if probe_path is not None else None
    html = build_report(selected_path, pool_path, Path(embeddings_path) if embeddings_path else None, stats, config,
                        Path(rejects_path) if rejects_path else None, probe)
    return write_html(output_path, html)


def write_html(output_path: Path, html: str) -> Path:
    """Write the report atomically (a temporary file beside it, then a rename)."""
    output_path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(output_path, html.encode("utf-8"))
    return output_path
