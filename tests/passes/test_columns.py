"""Columns round-trip: what the pass writes is what selection, report and serve read back."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deita.errors import DeitaError
from deita.passes.columns import Columns, ColumnsWriter, read_marker


def test_turn_fields_rows_and_spans_round_trip(tmp_path):
    writer = ColumnsWriter(tmp_path / "columns")
    rows = [
        (0, (0, 10), 7, {"instruction_lengths": [3.0, 4.0], "quality_scores": [0.5, None]}),
        (2, (25, 60), 0, {"instruction_lengths": [1.0], "quality_scores": [2.25]}),
        (5, (60, 61), 12, {"instruction_lengths": [8.0, 1e300, 0.1], "quality_scores": [1.0, 2.0, 3.0]}),
    ]
    for index, span, chars, fields in rows:
        writer.add_row(index, span, {"response_chars": chars}, fields)
    writer.finish({"pool": {"path": "p", "identity": [1, 2]}, "result": {"lines": []}})
    columns = Columns(tmp_path / "columns")
    assert columns.rows == 3 and columns.fields == ["instruction_lengths", "quality_scores"]
    assert columns.lists("instruction_lengths") == [[3.0, 4.0], [1.0], [8.0, 1e300, 0.1]]
    assert columns.lists("quality_scores") == [[0.5, None], [2.25], [1.0, 2.0, 3.0]]
    assert np.asarray(columns.row_index).tolist() == [0, 2, 5]
    assert np.asarray(columns.spans).tolist() == [[0, 10], [25, 60], [60, 61]]
    assert np.asarray(columns.record_column("response_chars")).tolist() == [7, 0, 12]
    values, offsets = columns.turn_arrays("quality_scores")
    assert offsets.tolist() == [0, 2, 3, 6] and math.isnan(values[1])
    assert columns.turn_arrays("instruction_lengths")[0].dtype == np.float64
    assert read_marker(tmp_path / "columns")["pool"]["identity"] == [1, 2]


def test_a_folder_without_its_marker_is_not_finished(tmp_path):
    writer = ColumnsWriter(tmp_path / "columns")
    writer.add_row(0, None, {}, {"response_lengths": [1.0]})
    assert read_marker(tmp_path / "columns") is None  # nothing written before `finish`
    with pytest.raises(DeitaError, match="columns are missing"):
        Columns(tmp_path / "columns")
    writer.finish({"result": {}})
    columns = Columns(tmp_path / "columns")
    assert columns.spans is None and columns.lists("response_lengths") == [[1.0]]
    with pytest.raises(DeitaError, match="computed no 'quality_scores'"):
        columns.lists("quality_scores")
    with pytest.raises(DeitaError, match="computed no 'response_chars' column"):
        columns.record_column("response_chars")


def test_a_column_with_missing_rows_is_refused(tmp_path):
    writer = ColumnsWriter(tmp_path / "columns")
    writer.add_row(0, None, {}, {"a": [1.0]})
    writer.add_row(1, None, {}, {"b": [1.0]})
    with pytest.raises(DeitaError, match="column a has 1 rows of 2"):
        writer.finish({})
