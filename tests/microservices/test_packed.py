"""Arrays packed into a service's state: every bit back through strict JSON, NaN included."""

from __future__ import annotations

import json

import numpy as np

from microservices.packed import pack, unpack


def test_packed_arrays_come_back_bit_for_bit_through_strict_json() -> None:
    floats = np.array([0.1, -2.5e300, np.nan, np.inf, 5e-324])
    ints = np.array([-1, 0, 1_700_000_000_123_456_789], np.int64)
    state = json.loads(json.dumps({"f": pack(floats), "i": pack(ints, np.int64), "b": pack([1, -1, 0], np.int8)},
                                  allow_nan=False))
    back = unpack(state["f"])
    assert back.tobytes() == floats.tobytes() and back.flags.writeable
    assert unpack(state["i"], np.int64).tolist() == ints.tolist()
    assert unpack(state["b"], np.int8).tolist() == [1, -1, 0]
    assert unpack(None).size == 0 and unpack("", np.int64).dtype == np.int64
