"""The contract's pagination for registry lists, with the SDK's cursors so every list behaves alike.

``Page``/``PageDep`` live in the SDK (services' routes need them too); this adds paging of
small in-memory lists such as the catalogue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from microservices.sdk import Page, PageDep, page_of

__all__ = ["Page", "PageDep", "page_list"]


def page_list(items: Iterable[dict[str, Any]], page: Page, key: Callable[[dict[str, Any]], tuple],
              *key_types: type) -> dict[str, Any]:
    """Paginate a small in-memory list (catalogues) with the same cursors as database lists."""
    after = page.key(*key_types)
    ordered = sorted(items, key=key)
    rows = [item for item in ordered if after is None or key(item) > after][: page.limit + 1]
    return page_of(rows, page.limit, key)
