"""The SDK's keyset pagination: one helper for every list, database-backed or in memory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from microservices.sdk import Page, decode_cursor
from sitepulse.errors import SitePulseError

START = datetime(2026, 11, 23, 6, tzinfo=UTC)
ROWS = [{"at": START + timedelta(minutes=i // 2), "id": i, "name": f"m{i:02d}"} for i in range(7)]


def _read_after(after: tuple | None, limit: int) -> list[dict]:
    return [r for r in ROWS if after is None or (r["at"], r["id"]) > after][:limit]


def _walk(first: Page, pager) -> list[int]:
    """Every id of the list, following next_cursor page by page as a client does."""
    seen, page = [], first
    while True:
        body = pager(page)
        seen += [r["id"] for r in body["items"]]
        if body["next_cursor"] is None:
            return seen
        page = Page(first.limit, decode_cursor(body["next_cursor"]))


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 100])
def test_fetch_walks_the_whole_list_once_in_order(limit: int) -> None:
    calls: list[int] = []

    def read(after: tuple | None, n: int) -> list[dict]:
        calls.append(n)
        return _read_after(after, n)

    assert _walk(Page(limit), lambda p: p.fetch(read, at=datetime, id=int)) == list(range(7))
    assert set(calls) == {limit + 1}  # one row more than the page, to know whether another follows


def test_of_list_sorts_and_pages_an_in_memory_list() -> None:
    shuffled = [ROWS[i] for i in (4, 0, 6, 2, 1, 5, 3)]
    assert _walk(Page(3), lambda p: p.of_list(shuffled, name=str)) == list(range(7))


def test_a_cursor_of_another_list_is_refused() -> None:
    body = Page(2).fetch(_read_after, at=datetime, id=int)
    foreign = Page(2, decode_cursor(body["next_cursor"]))
    with pytest.raises(SitePulseError, match="cursor is not one this API issued"):
        foreign.of_list(ROWS, name=str)
