"""Retry with back-off, one definition on tenacity: what every loop that waits for a database, a broker or a feed
uses (ingest's writer, the usage writer, feeds, the process supervisor, the runner).

``retrying`` is for code that blocks until it succeeds; ``backoff_s`` gives the same delays to schedulers that
do not block (the supervisor restarts a child, a feed is polled again) and keep their own failure count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception_type

log = logging.getLogger(__name__)


def backoff_s(failures: int, first_s: float, max_s: float) -> float:
    """The wait after ``failures`` consecutive failures (1 = the first): ``first_s``, doubling, at most ``max_s``."""
    return min(max_s, first_s * 2.0 ** max(0, failures - 1))


def retrying(on: type[BaseException] | tuple[type[BaseException], ...], *, first_s: float = 0.2,
             max_s: float = 5.0, give_up: Callable[[RetryCallState], bool] = lambda state: False,
             before_sleep: Callable[[RetryCallState], None] | None = None,
             sleep: Callable[[float], None] = time.sleep) -> Retrying:
    """Retry while the code raises ``on``, waiting ``backoff_s`` between attempts, until it succeeds or
    ``give_up(state)`` says stop (the last error is then raised as itself); ``before_sleep`` sees each failure
    (log it, close the connection). Use as ``for attempt in retrying(...): with attempt: ...``."""
    return Retrying(
        retry=retry_if_exception_type(on),
        wait=lambda state: backoff_s(state.attempt_number, first_s, max_s),
        stop=give_up,
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
