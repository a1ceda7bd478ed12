"""A read query's rows as a DataFrame: the one reader behind ``Batch.read``, ``CardContext.read``, a route's
``ServiceRequest.frame`` and a report's ``read`` (its own module so the SDK and its FastAPI half share it without
importing each other)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

Reader = Callable[[str, Mapping[str, Any]], pd.DataFrame]  # ``read(sql, params)``: a read query's rows as a frame


def frame_reader(conn: Any) -> Reader:
    """``read(sql, params) -> DataFrame`` on a psycopg connection."""
    def read(query: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        with conn.cursor() as cur:
            cur.execute(query, params)
            return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description or []])
    return read
