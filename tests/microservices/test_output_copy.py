"""Output frames COPYed in binary store exactly what the text COPY stored; frames that do not fit go as text."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import psycopg

from microservices.output_copy import binary_columns, column_types, copy_frame

TABLE = """CREATE TABLE out.things (site_id text, run_seq bigint, machine_id text, ts timestamptz,
    value double precision, count bigint, small integer, ok boolean, day date, note jsonb, amount numeric)"""


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "machine_id": ["a", None, "c"],
        "ts": pd.to_datetime(["2026-03-02T06:00:00.1234567Z", None, "2026-03-02T06:00:01.0Z"], utc=True),
        "value": [1.5, np.nan, -0.1 + 0.2],
        "count": [1.0, np.nan, 3.0],  # integers in a float column (a merge put NaN in)
        "small": np.array([1, 2, 3], dtype=np.int64),
        "ok": [True, False, True],
        "day": [date(2026, 3, 2), None, date(2026, 3, 3)],
        "note": [{"k": [1, "x"]}, None, []],
    })


def _stored(conn: psycopg.Connection, site: str) -> list[tuple]:
    return conn.execute("SELECT machine_id, ts, value, count, small, ok, day, note, amount FROM out.things"
                        " WHERE site_id = %s ORDER BY small", (site,)).fetchall()


def test_binary_rows_equal_the_text_rows_and_frames_that_do_not_fit_go_as_text(fresh_database_url: str) -> None:
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA out")
        conn.execute(TABLE)
        frame = _frame()
        types = column_types(conn, "out.things")
        assert binary_columns(frame, list(frame.columns), types) is not None  # this frame goes in binary
        copy_frame(conn, "out", "things", {"site_id": "bin", "run_seq": 1}, frame)
        # a numeric column (not converted here): the whole table as text, which takes integers as such, not 1.0
        text = frame.assign(amount=[1, None, 2], count=pd.Series([1, None, 3], dtype=object))
        assert binary_columns(text, list(text.columns), types) is None
        copy_frame(conn, "out", "things", {"site_id": "text", "run_seq": 1}, text)
        binary, texted = _stored(conn, "bin"), _stored(conn, "text")
    assert [r[:8] for r in binary] == [r[:8] for r in texted]
    assert binary[0][1].microsecond == 123457  # rounded to the microsecond, as the server rounds text
    assert binary[1] == (None, None, None, None, 2, False, None, None, None)
    assert binary[2][2] == -0.1 + 0.2 and binary[2][3] == 3 and binary[0][7] == {"k": [1, "x"]}
    assert [r[8] for r in texted] == [1, None, 2]


def test_values_that_do_not_fit_a_column_exactly_are_not_converted() -> None:
    types = {"n": "bigint", "x": "double precision", "s": "text", "b": "boolean"}
    assert binary_columns(pd.DataFrame({"n": [1.5]}), ["n"], types) is None  # not an integer
    assert binary_columns(pd.DataFrame({"x": ["1.5"]}), ["x"], types) is None  # text in a number column
    assert binary_columns(pd.DataFrame({"s": [1]}), ["s"], types) is None  # a number in a text column
    assert binary_columns(pd.DataFrame({"b": [1]}), ["b"], types) is None
    assert binary_columns(pd.DataFrame({"n": [1]}), ["n"], {"n": "numeric"}) is None  # a type not converted here
    assert binary_columns(pd.DataFrame({"s": [None, None]}), ["s"], types)[0].tolist() == [None, None]
