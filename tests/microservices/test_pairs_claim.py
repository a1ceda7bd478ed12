"""Claiming pairs: a site's due pairs go to one runner, and sites another runner works on come last."""

from __future__ import annotations

import psycopg

from microservices.pairs import Pair, claim_next, sync_pairs


def test_a_runner_takes_a_sites_pairs_together_and_leaves_sites_another_runner_works_on(
        fresh_database_url: str) -> None:
    services = ["alpha", "beta"]
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        for site in ("s1", "s2", "s3"):
            for service in services:
                conn.execute("INSERT INTO service_enablement (site_id, service, enabled, enabled_at)"
                             " VALUES (%s, %s, true, now())", (site, service))
        sync_pairs(conn, services)
        conn.execute("UPDATE service_pairs SET due_at = now() - interval '1 minute'")
        conn.execute("UPDATE service_pairs SET due_at = due_at - interval '1 second' WHERE site_id = 's3'")
        first = claim_next(conn, "runner-a", services)
        assert first is not None and first.site_id == "s3"  # due longest
        second = claim_next(conn, "runner-b", services)  # s3's other pair is due as long, but runner-a is on s3
        assert second is not None and second.site_id == "s1"
        assert claim_next(conn, "runner-a", services) == Pair(next(s for s in services if s != first.service), "s3")
        assert claim_next(conn, "runner-b", services) == Pair(next(s for s in services if s != second.service), "s1")
        conn.execute("UPDATE service_pairs SET runner = NULL, lease_until = NULL, due_at = '2026-01-01'"
                     " WHERE site_id = 's1'")  # runner-b gave s1 back, and it is due again at once
        assert claim_next(conn, "runner-a", services).site_id == "s1"
        assert claim_next(conn, "runner-b", services).site_id == "s2"  # s1's other pair is due longer: runner-a's
