"""A batch of telemetry rows as numpy columns, and its PostgreSQL binary COPY stream built with numpy.

Why: per-sample Python work (a datetime, a tuple, psycopg's per-value dumpers in ``write_row``) cost
more than PostgreSQL's own insert for array messages. Here the decoder checks whole columns at once
and the COPY bytes of a whole batch are laid out with a few vectorised scatters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
PG_EPOCH_UNIX = 946_684_800
_US = timedelta(microseconds=1)
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
COPY_TRAILER = b"\xff\xff"
N_COLUMNS = 14  # ROW_COLUMNS of ingest.contract
N_FLOATS = 7


def to_micros(dt: datetime) -> int:
    """Microseconds since 2000-01-01 UTC (PostgreSQL's binary timestamptz)."""
    return (dt - PG_EPOCH) // _US


def from_micros(us: int) -> datetime:
    return PG_EPOCH + timedelta(microseconds=us)


def epoch_to_micros(ts: np.ndarray) -> np.ndarray:
    """Epoch seconds (float64) to PostgreSQL microseconds, rounded exactly as ``datetime.fromtimestamp``."""
    whole = np.floor(ts)
    frac = np.rint((ts - whole) * 1e6)  # half-even, like CPython's _PyTime_ROUND_HALF_EVEN
    return (whole.astype(np.int64) - PG_EPOCH_UNIX) * 1_000_000 + frac.astype(np.int64)


_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])  # YYYY-MM-DDTHH:MM:SS
_SEPARATORS = {4: ord("-"), 7: ord("-"), 10: ord("T"), 13: ord(":"), 16: ord(":")}
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
_UTC_OFFSET = np.frombuffer(b"+00:00", np.uint8)


def rfc3339_utc_to_micros(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """PostgreSQL microseconds of the usual RFC 3339 UTC shape, and which strings had it.

    ``YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|+00:00)`` is read column-wise, with the calendar checks of
    ``datetime.fromisoformat``; anything else (other offsets, other spellings) is left for the per-sample
    parser: ``ok`` is False there. Why: devices send strings, and parsing them one by one in Python was
    most of the decoder's time.
    """
    n = len(texts)
    try:
        raw = np.array(texts, dtype="S32")
    except (UnicodeEncodeError, ValueError):
        return np.zeros(n, np.int64), np.zeros(n, bool)
    b = raw.view(np.uint8).reshape(n, 32).astype(np.int64)
    length = np.fromiter(map(len, texts), np.int64, n)
    rows = np.arange(n)
    ok = (length >= 20) & (length <= 32)
    last = np.clip(length - 1, 0, 31)
    zulu = b[rows, last] == ord("Z")
    tail6 = b[rows[:, None], np.clip(length[:, None] - 6 + np.arange(6), 0, 31)]
    offset = (tail6 == _UTC_OFFSET).all(axis=1)
    body = np.where(zulu, length - 1, length - 6)  # characters before the zone
    ok &= zulu | offset
    fraction = body - 20  # digits after the '.', when there is one
    ok &= (body == 19) | ((b[:, 19] == ord(".")) & (fraction >= 1) & (fraction <= 6))
    digit = (b >= ord("0")) & (b <= ord("9"))
    ok &= digit[:, _DIGITS].all(axis=1)
    for position, char in _SEPARATORS.items():
        ok &= b[:, position] == char
    place = np.arange(20, 26)
    in_fraction = place[None, :] < (20 + fraction)[:, None]
    ok &= (digit[:, 20:26] | ~in_fraction).all(axis=1)
    d = np.where(digit, b - ord("0"), 0)
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    month, day = d[:, 5] * 10 + d[:, 6], d[:, 8] * 10 + d[:, 9]
    hour, minute, second = d[:, 11] * 10 + d[:, 12], d[:, 14] * 10 + d[:, 15], d[:, 17] * 10 + d[:, 18]
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = _MONTH_DAYS[np.clip(month, 0, 12)] + ((month == 2) & leap)
    ok &= (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
    ok &= (hour <= 23) & (minute <= 59) & (second <= 59)
    micros = (np.where(in_fraction, d[:, 20:26], 0) * 10 ** np.arange(5, -1, -1)).sum(axis=1)
    # days since 1970-01-01 from the civil date (H. Hinnant's days_from_civil)
    y = year - (month <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    seconds = days * 86400 + hour * 3600 + minute * 60 + second - PG_EPOCH_UNIX
    return np.where(ok, seconds * 1_000_000 + micros, 0), ok


def snap(value: float, step: float) -> float:
    """``value`` on the grid of ``step`` (a power of two, so exact), half to even; huge values are already on it."""
    return round(value / step) * step if abs(value) < 2.0**52 * step else value


def snap_columns(floats: np.ndarray, steps: np.ndarray) -> None:
    """:func:`snap` on every column of ``floats`` in place (NaN stays NaN), ``steps`` one per column."""
    with np.errstate(invalid="ignore", over="ignore"):
        on_grid = np.rint(floats / steps) * steps + 0.0  # + 0.0: -0.0 becomes 0.0, as round() gives it
        np.copyto(floats, on_grid, where=np.abs(floats) < 2.0**52 * steps)


@dataclass(slots=True)
class RowBlock:
    """Rows of one batch: ``key`` indexes ``keys`` ((site_id, machine_id), sorted), nulls are NaN / -1."""

    keys: list[tuple[str, str]]
    key: np.ndarray  # int64 per row
    ts: np.ndarray  # int64 microseconds since 2000
    seq: np.ndarray  # int64, -1 when absent
    received: np.ndarray  # int64 microseconds since 2000
    floats: np.ndarray  # (n, 7) float64, NaN = null
    engine_on: np.ndarray  # int8: -1 null, 0, 1
    extra: list[str | None] | None  # None when no row has extra fields
    cache: dict = field(default_factory=dict, repr=False, compare=False)  # COPY streams etc., built once

    def __len__(self) -> int:
        return len(self.key)

    @property
    def has_extra(self) -> bool:
        return self.extra is not None and any(e is not None for e in self.extra)

    def take(self, index: np.ndarray | list[int]) -> RowBlock:
        """The rows at ``index`` (a mask or positions), as a new block."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        extra = None if self.extra is None else [self.extra[i] for i in idx.tolist()]
        return RowBlock(self.keys, self.key[idx], self.ts[idx], self.seq[idx], self.received[idx],
                        self.floats[idx], self.engine_on[idx], extra)

    def row(self, i: int) -> tuple:
        """Row ``i`` as the tuple of ROW_COLUMNS (tests, tools and the rare slow paths)."""
        site, machine = self.keys[int(self.key[i])]
        floats = [None if v != v else v for v in self.floats[i].tolist()]
        on = int(self.engine_on[i])
        return (site, machine, from_micros(int(self.ts[i])), int(self.seq[i]), from_micros(int(self.received[i])),
                *floats, None if on < 0 else bool(on), None if self.extra is None else self.extra[i])

    def rows(self) -> list[tuple]:
        return [self.row(i) for i in range(len(self))]

    def ts_range(self) -> tuple[datetime, datetime]:
        found = self.cache.get("ts_range")
        if found is None:
            found = self.cache["ts_range"] = (from_micros(int(self.ts.min())), from_micros(int(self.ts.max())))
        return found

    def newest_per_machine(self) -> np.ndarray:
        """Row positions of each machine's newest row (by ts, then seq; the later one on a tie), in key order."""
        order = np.lexsort((self.seq, self.ts, self.key))  # stable: equal rows keep arrival order
        keys = self.key[order]
        last = np.ones(len(order), bool)
        last[:-1] = keys[1:] != keys[:-1]
        return order[last]

    def copy_bytes(self, jsonb_extra: bool) -> bytes:
        """The whole binary COPY stream (header, rows, trailer) of ROW_COLUMNS.

        ``jsonb_extra``: the extra column is jsonb (version byte 1 before the text) rather than text.
        Built once per block and flag (the decoding thread builds it ahead: ``ingest.writer.prepare``).
        """
        found = self.cache.get(("copy", jsonb_extra))
        if found is None:
            found = self.cache[("copy", jsonb_extra)] = self._copy_bytes(jsonb_extra)
        return found

    def _copy_bytes(self, jsonb_extra: bool) -> bytes:
        n = len(self)
        # per key: field count, then site and machine as length-prefixed text
        blobs = []
        for site, machine in self.keys:
            s, m = site.encode(), machine.encode()
            blobs.append(N_COLUMNS.to_bytes(2, "big") + len(s).to_bytes(4, "big") + s + len(m).to_bytes(4, "big") + m)
        key_len = np.fromiter(map(len, blobs), np.int64, len(blobs))
        key_off = np.zeros(len(blobs), np.int64)
        np.cumsum(key_len[:-1], out=key_off[1:])
        key_src = np.frombuffer(b"".join(blobs), np.uint8)

        fixed = np.empty(n, dtype=[("l1", ">i4"), ("ts", ">i8"), ("l2", ">i4"), ("seq", ">i8"),
                                   ("l3", ">i4"), ("rec", ">i8")])
        fixed["l1"] = fixed["l2"] = fixed["l3"] = 8
        fixed["ts"], fixed["seq"], fixed["rec"] = self.ts, self.seq, self.received
        null_f = np.isnan(self.floats)
        null_b = self.engine_on < 0
        extra_b = None
        if self.extra is not None and any(e is not None for e in self.extra):
            pre = b"\x01" if jsonb_extra else b""
            extra_b = [None if e is None else pre + e.encode() for e in self.extra]
            extra_len = np.fromiter((0 if e is None else len(e) for e in extra_b), np.int64, n)
            extra_null = np.fromiter((e is None for e in extra_b), bool, n)
        else:
            extra_len = np.zeros(n, np.int64)
            extra_null = np.ones(n, bool)

        prefix = key_len[self.key]
        sizes = prefix + 36 + 4 * N_FLOATS + 8 * (~null_f).sum(axis=1) + 4 + (~null_b) + 4 + extra_len
        starts = np.zeros(n, np.int64)
        np.cumsum(sizes[:-1], out=starts[1:])
        starts += len(COPY_HEADER)
        total = len(COPY_HEADER) + int(sizes.sum()) + len(COPY_TRAILER)
        out = np.empty(total, np.uint8)
        out[: len(COPY_HEADER)] = np.frombuffer(COPY_HEADER, np.uint8)
        out[total - 2:] = 0xFF

        _scatter_var(out, starts, key_src, key_off[self.key], prefix)
        pos = starts + prefix
        _scatter(out, pos, fixed.view(np.uint8).reshape(n, 36))
        pos = pos + 36
        four = np.arange(4)
        eight = np.arange(8)
        for j in range(N_FLOATS):
            null = null_f[:, j]
            out[pos[:, None] + four] = np.where(null, -1, 8).astype(">i4").view(np.uint8).reshape(n, 4)
            present = ~null
            if present.all():
                out[(pos + 4)[:, None] + eight] = self.floats[:, j].astype(">f8").view(np.uint8).reshape(n, 8)
            elif present.any():
                vals = self.floats[present, j].astype(">f8").view(np.uint8).reshape(-1, 8)
                out[(pos[present] + 4)[:, None] + eight] = vals
            pos = pos + 4 + 8 * present
        out[pos[:, None] + four] = np.where(null_b, -1, 1).astype(">i4").view(np.uint8).reshape(n, 4)
        present = ~null_b
        out[pos[present] + 4] = self.engine_on[present].astype(np.uint8)
        pos = pos + 4 + present
        out[pos[:, None] + four] = np.where(extra_null, -1, extra_len).astype(">i4").view(np.uint8).reshape(n, 4)
        if extra_b is not None:
            have = [i for i, e in enumerate(extra_b) if e is not None]
            src = np.frombuffer(b"".join(extra_b[i] for i in have), np.uint8)
            lens = extra_len[have]
            offs = np.zeros(len(have), np.int64)
            np.cumsum(lens[:-1], out=offs[1:])
            _scatter_var(out, pos[have] + 4, src, offs, lens)
        return out.tobytes()


def _scatter(out: np.ndarray, pos: np.ndarray, mat: np.ndarray) -> None:
    out[pos[:, None] + np.arange(mat.shape[1])] = mat


def _scatter_var(out: np.ndarray, pos: np.ndarray, src: np.ndarray, src_off: np.ndarray, lens: np.ndarray) -> None:
    """out[pos[i] : pos[i]+lens[i]] = src[src_off[i] : src_off[i]+lens[i]] for every i, in one pass."""
    total = int(lens.sum())
    if not total:
        return
    rep = np.repeat(np.arange(len(lens)), lens)
    first = np.zeros(len(lens), np.int64)
    np.cumsum(lens[:-1], out=first[1:])
    within = np.arange(total) - first[rep]
    out[pos[rep] + within] = src[src_off[rep] + within]


def empty_block() -> RowBlock:
    return RowBlock([], np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                    np.zeros((0, N_FLOATS)), np.zeros(0, np.int8), None)


def concat(blocks: list[RowBlock]) -> RowBlock:
    """One block of several (their keys merged and re-sorted, so key order stays (site, machine) order)."""
    blocks = [b for b in blocks if len(b)]
    if not blocks:
        return empty_block()
    if len(blocks) == 1:
        return blocks[0]
    keys = sorted({k for b in blocks for k in b.keys})
    where = {k: i for i, k in enumerate(keys)}
    key = np.concatenate([np.array([where[k] for k in b.keys], np.int64)[b.key] for b in blocks])
    extra = None
    if any(b.extra is not None for b in blocks):
        extra = [e for b in blocks for e in (b.extra if b.extra is not None else [None] * len(b))]
    return RowBlock(keys, key, np.concatenate([b.ts for b in blocks]), np.concatenate([b.seq for b in blocks]),
                    np.concatenate([b.received for b in blocks]), np.concatenate([b.floats for b in blocks]),
                    np.concatenate([b.engine_on for b in blocks]), extra)
