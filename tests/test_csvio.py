"""Tests for trainwell.csvio: read_csv's delimiter and encoding detection, errors and chunks."""

import numpy as np
import pandas as pd
import pytest

from trainwell._errors import DataError, DataFileNotFoundError
from trainwell.csvio import read_csv


def test_tabular_re_exports_read_csv():
    from trainwell import tabular

    assert tabular.read_csv is read_csv


def test_read_csv_comma(tmp_path):
    file = tmp_path / "data.csv"
    file.write_text("a,b,c\n1,2,x\n3,4,y\n", encoding="utf-8")
    df = read_csv(file)
    assert df.shape == (2, 3) and list(df.columns) == ["a", "b", "c"]
    assert df.attrs["delimiter"] == "," and df.attrs["encoding"] == "utf-8" and df.attrs["notes"] == []


def test_read_csv_missing_file_names_path_and_suggests(tmp_path):
    (tmp_path / "train.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(DataFileNotFoundError, match=r"no file at .*trian\.csv.*Did you mean 'train\.csv'"):
        read_csv(tmp_path / "trian.csv")
    with pytest.raises(FileNotFoundError):  # still catchable as the builtin
        read_csv(tmp_path / "nothing_like_it.csv")


def test_read_csv_folder(tmp_path):
    with pytest.raises(DataError, match="is a folder"):
        read_csv(tmp_path)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_read_csv_empty_file(tmp_path, content):
    file = tmp_path / "empty.csv"
    file.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match="empty.csv is empty"):
        read_csv(file)


def test_read_csv_header_only(tmp_path):
    file = tmp_path / "head.csv"
    file.write_text("a,b,c\n", encoding="utf-8")
    with pytest.raises(DataError, match="no data rows"):
        read_csv(file)


def test_read_csv_detects_semicolon_with_decimal_commas(tmp_path):
    file = tmp_path / "euro.csv"
    file.write_text("price;city;qty\n1,5;Paris;3\n2,25;Lyon;4\n", encoding="utf-8")
    df = read_csv(file)
    assert list(df.columns) == ["price", "city", "qty"]
    assert df.attrs["delimiter"] == ";"
    assert df.attrs["notes"] == ["euro.csv: detected the semicolon delimiter ';'"]
    assert df["qty"].tolist() == [3, 4]


@pytest.mark.parametrize("delimiter", ["\t", "|"])
def test_read_csv_detects_tab_and_pipe(tmp_path, delimiter):
    file = tmp_path / "other.csv"
    file.write_text(delimiter.join(["a", "b"]) + "\n" + delimiter.join(["1", "2"]) + "\n", encoding="utf-8")
    df = read_csv(file)
    assert df.attrs["delimiter"] == delimiter and df.to_numpy().tolist() == [[1, 2]]


def test_read_csv_single_column(tmp_path):
    file = tmp_path / "one.csv"
    file.write_text("a b c\n1 2 3\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"single column \('a b c'\).*allow_single_column=True"):
        read_csv(file)
    assert read_csv(file, allow_single_column=True).shape == (1, 1)


def test_read_csv_latin1_file_warns_and_decodes(tmp_path):
    file = tmp_path / "latin.csv"
    file.write_bytes("name,city\nRen\xe9,S\xe3o Paulo\n".encode("latin-1"))
    with pytest.warns(UserWarning, match=r"not valid UTF-8 \(byte 0xe9 on line 2\); read it as cp1252"):
        df = read_csv(file)
    assert df.attrs["encoding"] == "cp1252"
    assert df.loc[0, "name"] == "René" and df.loc[0, "city"] == "São Paulo"


def test_read_csv_utf8_with_bom(tmp_path):
    file = tmp_path / "bom.csv"
    file.write_bytes("\ufeffa,b\n1,2\n".encode())
    df = read_csv(file)
    assert list(df.columns) == ["a", "b"] and df.attrs["encoding"] == "utf-8-sig"


def test_read_csv_ragged_rows(tmp_path):
    file = tmp_path / "ragged.csv"
    file.write_text("a,b\n1,2\n3,4\n5,6,7\n", encoding="utf-8")
    with pytest.raises(DataError, match="cannot split .*ragged.csv.*comma"):
        read_csv(file)


def test_read_csv_chunks_equal_whole(tmp_path):
    file = tmp_path / "big.csv"
    pd.DataFrame({"a": np.arange(25), "b": list("xyzxy") * 5}).to_csv(file, sep=";", index=False)
    chunks = list(read_csv(file, chunksize=10))
    assert [len(c) for c in chunks] == [10, 10, 5]
    assert all(c.attrs["delimiter"] == ";" for c in chunks)
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), read_csv(file))
