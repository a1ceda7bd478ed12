"""Numeric arrays in a service's state as short strings.

A service's state goes through JSON every step (the runner stores it as jsonb). A window carried per machine
(steps, checks, fixes) is thousands of numbers for a large fleet, and parsing and printing numbers is what a
JSON round trip spends its time on; the same array as one base64 string of its bytes is a single token, keeps
every bit (NaN included, which JSON cannot hold), and costs a copy.
"""

from __future__ import annotations

import base64

import numpy as np


def pack(values: np.ndarray, dtype: type = np.float64) -> str:
    """``values`` as ``dtype`` (little-endian), base64."""
    return base64.b64encode(np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()).decode()


def unpack(text: str | None, dtype: type = np.float64) -> np.ndarray:
    """The array ``pack`` made (empty for None or ""), writable."""
    if not text:
        return np.zeros(0, dtype)
    return np.frombuffer(base64.b64decode(text), dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
