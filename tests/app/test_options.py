"""`curate.app.options`: the checks shared by the use cases."""

from __future__ import annotations

import pytest

from curate.app.options import (
    RequestError,
    check_parquet_output,
    check_scoring_options,
    parse_batch_size,
)


@pytest.mark.parametrize("value, parsed", [(16, 16), ("16", 16), ("auto", "auto"), (1, 1)])
def test_batch_sizes(value, parsed):
    assert parse_batch_size(value) == parsed


@pytest.mark.parametrize("value", [0, "0", -2, "-2", "1.5", "", "Auto", True, 2.0])
def test_bad_batch_sizes(value):
    with pytest.raises(RequestError, match="--batch-size must be a positive integer or 'auto'"):
        parse_batch_size(value)


def test_scoring_options():
    assert check_scoring_options("cpu", "float32", "8") == 8
    with pytest.raises(RequestError, match="Unknown dtype"):
        check_scoring_options("cpu", "int3", 8)
    with pytest.raises(RequestError, match="Unknown device"):
        check_scoring_options("tpu9", "auto", 8)


def test_parquet_outputs(tmp_path):
    assert check_parquet_output(tmp_path / "a.parquet") == str(tmp_path / "a.parquet")
    assert check_parquet_output(tmp_path / "A.PQ") == str(tmp_path / "A.PQ")
    (tmp_path / "file").write_text("x")
    cases = [
        (tmp_path / "a.csv", "-o/--output .*a.csv: curate writes Parquet files"),
        (tmp_path / "a", "name it with a .parquet extension"),
        (tmp_path / "no" / "a.parquet", "the folder .*no does not exist; create it first"),
        (tmp_path / "file" / "a.parquet", "the folder .*file is not a folder"),
        (tmp_path, "is a folder; name a Parquet file"),
    ]
    for path, message in cases:
        with pytest.raises(RequestError, match=message):
            check_parquet_output(path)
    with pytest.raises(RequestError, match="^--removed "):
        check_parquet_output(tmp_path / "r.csv", "--removed")
