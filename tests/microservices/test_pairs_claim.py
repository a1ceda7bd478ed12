"""Claiming pairs: a site's due pairs go to one runner, and sites another runner works on come last."""

from __future__ import annotations

import psycopg
from conftest import enable

from microservices.pairs import Pair, claim_next, release_ok, sync_pairs


def _pairs(conn: psycopg.Connection, sites: tuple[str, ...], services: list[str]) -> None:
    """Every service enabled on every site, with its pair row."""
    for site in sites:
        enable(conn, site, *services)
    sync_pairs(conn, services)


def test_a_runner_takes_a_sites_pairs_together_and_leaves_sites_another_runner_works_on(
        fresh_database_url: str) -> None:
    services = ["alpha", "beta"]
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        _pairs(conn, ("s1", "s2", "s3"), services)
        conn.execute("UPDATE service_pairs SET due_at = now() - interval '1 minute'")
        conn.execute("UPDATE service_pairs SET due_at = due_at - interval '1 second' WHERE site_id = 's3'")
        first = claim_next(conn, "runner-a", services)
        assert first is not None and first.site_id == "s3"  # due longest
        second = claim_next(conn, "runner-b", services)  # s3's other pair is due as long, but runner-a is on s3
        assert second is not None and second.site_id in {"s1", "s2"}
        other = lambda pair: next(s for s in services if s != pair.service)  # noqa: E731
        assert claim_next(conn, "runner-a", services) == Pair(other(first), "s3")  # its own site's other pair
        assert claim_next(conn, "runner-b", services) == Pair(other(second), second.site_id)
        conn.execute("UPDATE service_pairs SET runner = NULL, lease_until = NULL, due_at = '2026-01-01'"
                     " WHERE site_id = %s", (second.site_id,))  # runner-b gave its site back, due again at once
        assert claim_next(conn, "runner-a", services).site_id == second.site_id
        last = ({"s1", "s2"} - {second.site_id}).pop()
        assert claim_next(conn, "runner-b", services).site_id == last  # its old site's other pair: runner-a's


def test_a_dependant_is_taken_on_its_site_at_once_unless_it_is_backing_off_or_held(fresh_database_url: str) -> None:
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        _pairs(conn, ("s1", "s2"), ["dependant"])
        conn.execute("UPDATE service_pairs SET due_at = now() + interval '1 hour'")  # nothing woke them yet
        assert claim_next(conn, "runner-a", ["dependant"]) is None
        assert claim_next(conn, "runner-a", ["dependant"], site_id="s2") == Pair("dependant", "s2")
        assert claim_next(conn, "runner-b", ["dependant"], site_id="s2") is None  # runner-a holds it
        conn.execute("UPDATE service_pairs SET retry_at = now() + interval '1 minute' WHERE site_id = 's1'")
        assert claim_next(conn, "runner-a", ["dependant"], site_id="s1") is None  # its back-off is its own


def test_a_site_stays_with_the_runner_that_just_stepped_it(fresh_database_url: str) -> None:
    """Between two of its turns on a site a runner holds no lease there; the site is still its own for a while."""
    services = ["alpha", "beta"]
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        _pairs(conn, ("s1", "s2"), services)
        conn.execute("UPDATE service_pairs SET due_at = now() - interval '1 minute'")
        conn.execute("UPDATE service_pairs SET due_at = due_at - interval '1 second' WHERE site_id = 's1'")
        first = claim_next(conn, "runner-a", services)
        assert first is not None and first.site_id == "s1"
        release_ok(conn, "runner-a", first, None)
        assert claim_next(conn, "runner-b", services).site_id == "s2"  # s1's other pair is due longer
        assert claim_next(conn, "runner-a", services).site_id == "s1"
