"""One shift algorithm for every service: the site's shifts in its time zone, wrapping midnight."""

from __future__ import annotations

from datetime import date, time

import numpy as np
import pandas as pd

from microservices.shifts import shift_columns, shifts_at
from microservices.weight_loading.routes import assign_shifts
from sitepulse.sitefile import Shift, SiteConfig

NIGHT_FIRST = [Shift(name="night", start=time(22), end=time(6)), Shift(name="long", start=time(5), end=time(23))]


def utc(*stamps: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(list(stamps), utc=True))


def test_the_hours_after_midnight_belong_to_the_shift_that_started_the_day_before() -> None:
    # Santiago is UTC-3 in March: 02:30 UTC on the 3rd is 23:30 local on the 2nd, 08:30 UTC is 05:30 local
    names, dates = shifts_at(utc("2026-03-03T02:30Z", "2026-03-03T08:30Z", "2026-03-03T09:30Z", "2026-03-03T18:00Z"),
                             "America/Santiago", NIGHT_FIRST)
    assert names.tolist() == ["night", "night", "long", "long"]  # the first listed shift wins where they overlap
    assert pd.to_datetime(dates).date.tolist() == [date(2026, 3, 2), date(2026, 3, 2), date(2026, 3, 3),
                                                   date(2026, 3, 3)]


def test_outside_every_shift_there_is_no_name_and_the_local_date() -> None:
    names, dates = shifts_at(utc("2026-03-03T07:00Z", "2026-03-03T13:00Z"), "UTC",
                             [Shift(name="am", start=time(8), end=time(12))])
    assert names.tolist() == [None, None] and pd.to_datetime(dates).date.tolist() == [date(2026, 3, 3)] * 2


def test_each_service_keeps_its_own_columns_from_the_one_algorithm() -> None:
    site = SiteConfig(timezone="America/Santiago", shifts=NIGHT_FIRST[:1])
    ms = np.array([pd.Timestamp("2026-03-03T02:30Z").value // 10**6, pd.Timestamp("2026-03-03T15:00Z").value // 10**6])
    # positioning and traffic awareness: '' outside every shift, the local date; none at all without a site file
    day, name = shift_columns(ms, site)
    assert name.tolist() == ["night", ""] and day.tolist() == [date(2026, 3, 2), date(2026, 3, 3)]
    assert shift_columns(ms, None)[1].tolist() == ["", ""]
    # weight loading: the default day/night shifts where the site has none, no date outside every shift
    names, days = assign_shifts(pd.Series(pd.to_datetime(ms, unit="ms", utc=True)), site)
    assert names.tolist() == ["night", None] and days.iloc[0] == "2026-03-02" and pd.isna(days.iloc[1])
    names, days = assign_shifts(pd.Series(pd.to_datetime(ms, unit="ms", utc=True)), None)
    assert names.tolist() == ["night", "day"] and days.tolist() == ["2026-03-02", "2026-03-03"]
