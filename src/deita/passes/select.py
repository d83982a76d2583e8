"""After the pass: selection on the columns, then the selected records fetched from the pool and written
once, in selection order, with the report, the statistics and the manifest."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deita.data import atomic
from deita.data.io import RecordWriter
from deita.manifest import write_manifest
from deita.passes.columns import GROUP_IDS, TOKEN_COSTS, Columns
from deita.passes.fetch import ScoredPool, SelectedTap
from deita.passes.run import COLUMNS, EMBEDDINGS
from deita.select_config import SelectConfig
from deita.selection.config import FilterConfig
from deita.selection.embeddings import open_embeddings
from deita.selection.ifd import IFD_KEY, ifd_record_scores
from deita.selection.quota import GroupColumn
from deita.selection.run import FilterReport, annotations, limits_of, quota_for, select_indices
from deita.selection.scores import final_scores, final_scores_flat
from deita.selection.strategies import STRATEGIES

if TYPE_CHECKING:
    from deita.workflow import SelectPaths


def select_on_columns(pool: Path, columns: Columns, config: SelectConfig, embeddings: Path
                      ) -> tuple[FilterReport, np.ndarray | None, np.ndarray | None]:
    """The configured strategy over the columns: its report, the final scores and the embeddings it read."""
    filter_config = dataclasses.replace(config.filter, sort_key=config.sort_key())
    strategy = STRATEGIES[filter_config.strategy]
    sort_key = filter_config.sort_key or ()
    n = columns.rows
    scores = lengths = vectors = selectable = None
    if strategy.scores and n:
        scores = column_scores(pool, columns, tuple(sort_key), filter_config.aggregate)
    if strategy.ifd:
        scores, selectable = ifd_record_scores(columns.lists(IFD_KEY), filter_config.max_ifd,
                                               _locations(pool, columns))
    if strategy.lengths:
        lengths = np.asarray(columns.record_column("response_chars"), dtype=np.float64)
    if strategy.embeddings:
        vectors = open_embeddings(embeddings, n, pool)
    costs, groups = limit_arrays(columns, filter_config)
    quota = quota_for(filter_config, costs, groups)
    result = select_indices(filter_config, n, scores, lengths, vectors, selectable, quota)
    unselectable = int((~selectable).sum()) if selectable is not None else 0
    report = FilterReport(n, len(result.indices), result.n_examined, filter_config.threshold,
                          filter_config.strategy, result.seconds, tuple(sort_key), Path(), result, unselectable,
                          filter_config.max_ifd if strategy.ifd else None, aggregate=filter_config.aggregate,
                          limits=limits_of(filter_config, result, groups))
    return report, scores, vectors


def _locations(pool: Path, columns: Columns) -> list[str]:
    """Each row's record named as errors name it: the pool and the record's index."""
    return [f"{pool}, record index {index}" for index in np.asarray(columns.row_index).tolist()]


def limit_arrays(columns: Columns, config: FilterConfig) -> tuple[np.ndarray | None, GroupColumn | None]:
    """The walk's limit columns the pass computed: token costs (--token-budget) and groups (--max-share)."""
    costs = np.asarray(columns.record_column(TOKEN_COSTS), dtype=np.int64) \
        if config.token_budget is not None else None
    groups = GroupColumn.restored(config.group_field(), np.asarray(columns.record_column(GROUP_IDS)),
                                  columns.group_keys) if config.max_share is not None else None
    return costs, groups


def column_scores(pool: Path, columns: Columns, sort_key: tuple[str, ...], aggregate: str = "sum") -> np.ndarray:
    """Final scores from the columns, folded over turns by `aggregate`: on the arrays where every value is
    finite and the keys agree on each record's turns (the common case), else through `final_scores`' lists,
    which names the first bad record."""
    arrays = [columns.turn_arrays(key) for key in sort_key]
    offsets = np.asarray(arrays[0][1])
    lengths = np.diff(offsets)
    if (lengths > 0).all() and all(np.array_equal(o, offsets) and np.isfinite(v).all() for v, o in arrays):
        return final_scores_flat([np.asarray(values) for values, _ in arrays], lengths, aggregate)
    return final_scores([columns.lists(key) for key in sort_key], sort_key, _locations(pool, columns), aggregate)


def write_selection(pool: Path, output: Path, paths: SelectPaths, config: SelectConfig,
                    computed: dict[str, Any], rejects: Path | None = None) -> list[str]:
    """Select, fetch, write the output once; then the statistics, report and manifest. `rejects`: the rows
    the run set aside so far, for the report."""
    columns = Columns(paths.work / COLUMNS)
    embeddings = paths.work / EMBEDDINGS
    selection, scores, vectors = select_on_columns(pool, columns, config, embeddings)
    selection.output = output
    rows = selection.result.indices if selection.result is not None else np.zeros(0, dtype=np.int64)
    lines = selection.lines()
    stats = {**selection.stats(), "funnel": computed["funnel"], "threshold_note": config.threshold_note()}
    atomic.write_bytes(paths.stats, (json.dumps(stats, indent=2) + "\n").encode("utf-8"))
    scored = ScoredPool(pool, columns, config.run.format, config.run.pairing)
    html = None
    if config.report.write:
        from deita.report.run import build_report

        # the report's one read of the pool also keeps the selected records (no fetch by offset: a third open)
        tap = SelectedTap(scored.records(), rows.tolist())
        report_config = config.report if config.report.source_field or not config.filter.source_field else \
            dataclasses.replace(config.report, source_field=config.filter.source_field)
        html = build_report(output, pool, embeddings, stats, report_config,
                            rejects if computed["rejected"] else None,
                            pool_records=tap, selected_rows=rows)
        chosen = tap.chosen()
    else:
        chosen = scored.fetch(rows.tolist())
    notes = annotations(selection.result, scores, vectors) if config.filter.annotate else None
    with RecordWriter(output) as writer:
        for rank, raw in enumerate(chosen):
            writer.write({**raw, "deita": notes[rank]} if notes is not None else raw)
    if html is not None:
        from deita.report.run import write_html

        write_html(paths.report, html)
        lines.append(f"report → {paths.report}")
    counts = {**computed["funnel"], **computed["details"], "examined": selection.n_examined,
              "skipped_near_duplicates": selection.n_near_duplicates, "selected": selection.n_selected}
    if selection.limits is not None:
        counts.update({key: value for key, value in selection.limits.stats().items()
                       if key in ("tokens_selected", "n_over_budget", "n_group_full")})
    seconds = {**computed["seconds"], "filter": selection.seconds}
    read = columns.marker.get("read")  # the pool's sha256, as the pass's reads found it: no fourth read for it
    write_manifest(paths.manifest, pool, output, counts, config.effective(), config.models_used(), seconds,
                   {"filter": config.filter.seed, "report": config.report.seed},
                   read["digest"] if read and pool.is_file() else None)
    return lines
