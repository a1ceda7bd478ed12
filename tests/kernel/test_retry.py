"""The one retry helper: exponential back-off capped, retries only the errors named, gives up when told."""

from __future__ import annotations

import pytest

from sitepulse.retry import backoff_s, retrying


def test_backoff_doubles_from_the_first_wait_up_to_the_cap() -> None:
    assert [backoff_s(n, 0.2, 1.0) for n in range(1, 6)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff_s(0, 0.5, 30) == 0.5


def test_retrying_waits_between_failures_and_returns_the_success() -> None:
    waits: list[float] = []
    seen: list[int] = []
    calls = iter([ConnectionError("down"), ConnectionError("down"), ConnectionError("down"), "stored"])

    def flaky() -> str:
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    for attempt in retrying(ConnectionError, first_s=0.1, max_s=0.3, sleep=waits.append,
                            before_sleep=lambda state: seen.append(state.attempt_number)):
        with attempt:
            result = flaky()
    assert result == "stored" and waits == [0.1, 0.2, 0.3] and seen == [1, 2, 3]


def test_other_errors_are_not_retried_and_giving_up_raises_the_last_error() -> None:
    with pytest.raises(ValueError, match="bad row"):
        for attempt in retrying(ConnectionError, sleep=lambda s: None):
            with attempt:
                raise ValueError("bad row")
    tries = []
    with pytest.raises(ConnectionError, match="still down"):
        for attempt in retrying(ConnectionError, sleep=lambda s: None, give_up=lambda state: state.attempt_number >= 3):
            with attempt:
                tries.append(1)
                raise ConnectionError("still down")
    assert len(tries) == 3
