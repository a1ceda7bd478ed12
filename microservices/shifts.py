"""Which shift an instant belongs to: the site file's shifts in the site's time zone, one algorithm for every service.

A shift is named, starts and ends at a local time of day, and may wrap midnight (an end before its start):
the hours after midnight then belong to the shift that started the evening before, so its *shift date* is
the day before. The first of the site's shifts that covers an instant wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from sitepulse.sitefile import Shift, SiteConfig

DAY = np.timedelta64(1, "D")


def shifts_at(stamps: pd.DatetimeIndex, timezone: str, shifts: Sequence[Shift]) -> tuple[np.ndarray, np.ndarray]:
    """Per UTC instant: the shift's name (None outside every shift) and its shift date (datetime64, midnight of
    the local day the shift started; outside every shift the local day itself)."""
    local = stamps.tz_convert(timezone)
    minute = np.asarray(local.hour * 60 + local.minute)
    dates = local.tz_localize(None).normalize().to_numpy()
    names = np.full(len(stamps), None, dtype=object)
    assigned = np.zeros(len(stamps), dtype=bool)
    for shift in shifts:
        start = shift.start.hour * 60 + shift.start.minute
        end = shift.end.hour * 60 + shift.end.minute
        if start < end:
            inside = (minute >= start) & (minute < end)
            after_midnight = np.zeros(len(stamps), dtype=bool)
        else:  # wraps midnight: the part after midnight belongs to the shift that started the day before
            inside = (minute >= start) | (minute < end)
            after_midnight = minute < end
        take = inside & ~assigned
        names[take] = shift.name
        dates = np.where(take & after_midnight, dates - DAY, dates)
        assigned |= take
    return names, dates


def shift_columns(minutes_ms: np.ndarray, site: SiteConfig | None) -> tuple[np.ndarray, np.ndarray]:
    """The ``shift_date`` (datetime.date) and ``shift`` ('' outside every shift) columns of rows stamped in epoch
    milliseconds, by the site file's shifts (none without a site file)."""
    stamps = pd.DatetimeIndex(pd.to_datetime(minutes_ms, unit="ms", utc=True))
    names, dates = shifts_at(stamps, site.timezone if site else "UTC", site.shifts if site else ())
    names[pd.isna(names)] = ""
    return pd.to_datetime(dates).date, names
